//! The harness's own load generator.
//!
//! Two modes, each a set of callers (one connection each for HTTP/1.1; one stream each over a
//! shared connection for gRPC) running side by side:
//!
//! - **closed loop**: each caller sends its next request as soon as the last one is answered.
//!   This finds the most a target can serve, but its latencies hide stalls: while the server
//!   stalls, the caller sends nothing, so the requests it *would* have sent are never timed
//!   (coordinated omission).
//! - **open loop**: requests are due at a fixed rate whatever the server does. A request that
//!   is late because the server is still busy with the previous one is timed from when it was
//!   due, so a stall shows up in the percentiles as every user behind it would feel it.

mod caller;
mod hold;

pub(crate) use caller::{Caller, Kind};
pub(crate) use hold::hold_connections;

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// The latencies and counts of one measurement.
pub(crate) struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub measured: Duration,
    /// Nanoseconds.
    pub latency: Histogram<u64>,
}

impl LoadResult {
    pub(crate) fn per_second(&self) -> f64 {
        self.requests as f64 / self.measured.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) of latency, in microseconds.
    pub(crate) fn micros(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

fn histogram() -> Histogram<u64> {
    // 1 ns to 60 s at 3 significant digits: a few hundred KB, fine per caller.
    Histogram::new_with_bounds(1, 60_000_000_000, 3)
        .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid"))
}

/// One caller's share of a measurement.
struct Share {
    requests: u64,
    errors: u64,
    latency: Histogram<u64>,
}

fn merge(shares: Vec<Share>, measured: Duration) -> LoadResult {
    let mut latency = histogram();
    let (mut requests, mut errors) = (0, 0);
    for share in shares {
        requests += share.requests;
        errors += share.errors;
        // Same bounds on both sides: adding cannot fail.
        let _ = latency.add(&share.latency);
    }
    LoadResult {
        requests,
        errors,
        measured,
        latency,
    }
}

/// Each caller sends back to back for `warmup + measure`; only requests sent after the warmup
/// count.
pub(crate) async fn closed_loop(
    callers: Vec<Caller>,
    warmup: Duration,
    measure: Duration,
) -> LoadResult {
    let start = Instant::now();
    let counted_from = start + warmup;
    let end = counted_from + measure;
    let tasks: Vec<_> = callers
        .into_iter()
        .map(|mut caller| {
            tokio::spawn(async move {
                let mut share = Share {
                    requests: 0,
                    errors: 0,
                    latency: histogram(),
                };
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let ok = caller.call().await;
                    if sent < counted_from {
                        continue;
                    }
                    match ok {
                        Ok(()) => {
                            share.requests += 1;
                            let _ = share.latency.record(sent.elapsed().as_nanos() as u64);
                        }
                        Err(_) => share.errors += 1,
                    }
                }
                share
            })
        })
        .collect();
    gather(tasks, measure).await
}

/// Waits for every caller's share (a caller that panicked contributes nothing) and merges them.
async fn gather(tasks: Vec<tokio::task::JoinHandle<Share>>, measure: Duration) -> LoadResult {
    let mut shares = Vec::new();
    for task in tasks {
        if let Ok(share) = task.await {
            shares.push(share);
        }
    }
    merge(shares, measure)
}

/// Requests are due at `rate` per second in all, spread evenly over the callers.
pub(crate) async fn open_loop(
    callers: Vec<Caller>,
    rate: f64,
    warmup: Duration,
    measure: Duration,
) -> LoadResult {
    let n = callers.len().max(1) as f64;
    let interval = Duration::from_secs_f64(n / rate.max(1.0));
    let start = Instant::now() + Duration::from_millis(10);
    let counted_from = start + warmup;
    let end = counted_from + measure;
    let tasks: Vec<_> = callers
        .into_iter()
        .enumerate()
        .map(|(i, mut caller)| {
            // Stagger the callers so the requests are due evenly, not in bursts of n.
            let first = start + interval.mul_f64(i as f64 / n);
            tokio::spawn(async move {
                let mut share = Share {
                    requests: 0,
                    errors: 0,
                    latency: histogram(),
                };
                let mut due = first;
                let mut free_at = Instant::now();
                while due < end {
                    // Was this caller still busy when the request fell due? Then the server
                    // made it late, and the wait counts. If not, any lateness is our timer's
                    // (tokio's resolution is a millisecond) and must not count.
                    let late_by_server = free_at > due;
                    if !late_by_server {
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let sent = Instant::now();
                    let ok = caller.call().await;
                    free_at = Instant::now();
                    let from = if late_by_server { due } else { sent };
                    if due >= counted_from {
                        match ok {
                            Ok(()) => {
                                share.requests += 1;
                                let _ = share.latency.record((free_at - from).as_nanos() as u64);
                            }
                            Err(_) => share.errors += 1,
                        }
                    }
                    due += interval;
                }
                share
            })
        })
        .collect();
    gather(tasks, measure).await
}

/// `n` callers of `kind`, each with its own connection to `addr`.
pub(crate) async fn connect_all(
    addr: std::net::SocketAddr,
    kind: &Kind,
    n: usize,
) -> crate::error::Result<Vec<Caller>> {
    let mut callers = Vec::with_capacity(n);
    for _ in 0..n {
        let caller = Caller::connect(addr, kind.clone()).await.map_err(|e| {
            crate::error::Error::Command {
                what: format!("connecting to {addr}"),
                detail: e.0,
            }
        })?;
        callers.push(caller);
    }
    Ok(callers)
}
