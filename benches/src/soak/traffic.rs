//! The soak's mixed traffic: HTTP/1.1 requests and gRPC calls on connections replaced every so
//! many calls, and opaque TCP connections opened, echoed and closed, each worker at a fixed
//! rate whatever the proxy does (open loop: a slow answer does not slow the load down, and a
//! tick missed while a call hung is skipped, not made up in a burst). Every failure is kept
//! with when its call was under way, so that it can be set against the restarts afterwards.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{timeout, MissedTickBehavior};

use crate::load::{Caller, Kind};

/// The three kinds of traffic, in the order of the tallies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    Grpc,
    Tcp,
}

impl Protocol {
    pub(crate) const ALL: [Protocol; 3] = [Protocol::Http1, Protocol::Grpc, Protocol::Tcp];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::Grpc => "gRPC",
            Protocol::Tcp => "TCP",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// How much of one protocol: `workers` side by side, each making `rate` calls a second, each
/// connection carrying `churn` calls before it is closed and another opened.
pub(crate) struct Load {
    pub protocol: Protocol,
    pub workers: usize,
    pub rate: f64,
    pub churn: u32,
}

/// Well under what this 2-core machine serves (tens of thousands of requests a second): the
/// soak looks for what accumulates, not for the ceiling, and shares the machine.
pub(crate) const LOADS: [Load; 3] = [
    Load {
        protocol: Protocol::Http1,
        workers: 8,
        rate: 25.0,
        churn: 50,
    },
    Load {
        protocol: Protocol::Grpc,
        workers: 4,
        rate: 50.0,
        churn: 500,
    },
    Load {
        protocol: Protocol::Tcp,
        workers: 4,
        rate: 25.0,
        churn: 1,
    },
];

/// How long a call (or a connection's opening) may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// What each TCP connection sends and expects back.
const ECHOED: &[u8] = &[0x5a; 1024];

/// Where the application sends each kind, and the names it calls.
pub(crate) struct Entries {
    /// The HTTP outbound, for HTTP/1.1 and gRPC alike.
    pub http: SocketAddr,
    pub http_host: &'static str,
    pub grpc_authority: &'static str,
    /// The TCP outbound.
    pub tcp: SocketAddr,
}

/// One failed call: while it was under way (from the start of the soak), and why.
pub(crate) struct Failure {
    pub protocol: Protocol,
    pub from: Duration,
    pub to: Duration,
    pub why: String,
}

/// What all the workers did so far.
#[derive(Default)]
pub(crate) struct Tally {
    /// Calls answered in full and checked, by [`Protocol`].
    pub done: [u64; 3],
    /// Connections opened to the application's node, by [`Protocol`] (a caller's own redial
    /// after a failure not counted).
    pub opened: [u64; 3],
    pub failures: Vec<Failure>,
}

/// The traffic, running until the `end` it was started with.
pub(crate) struct Traffic {
    tally: Arc<Mutex<Tally>>,
    workers: Vec<JoinHandle<()>>,
}

impl Traffic {
    /// Starts every worker of [`LOADS`]; times are counted from `start`.
    pub(crate) fn start(entries: &Entries, start: Instant, end: Instant) -> Traffic {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let mut workers = Vec::new();
        for load in &LOADS {
            for i in 0..load.workers {
                let (addr, work) = match load.protocol {
                    Protocol::Http1 => (
                        entries.http,
                        Work::calls(Kind::Http1 {
                            host: entries.http_host.to_string(),
                        }),
                    ),
                    Protocol::Grpc => (
                        entries.http,
                        Work::calls(Kind::Grpc {
                            authority: entries.grpc_authority.to_string(),
                        }),
                    ),
                    Protocol::Tcp => (entries.tcp, Work::Echo),
                };
                let worker = Worker {
                    addr,
                    churn: load.churn,
                    work,
                };
                let period = Duration::from_secs_f64(1.0 / load.rate);
                // Staggered, so that the workers' calls are spread over each period.
                let first = start + period.mul_f64(i as f64 / load.workers as f64);
                let run = run(
                    worker,
                    load.protocol,
                    (first, period, end),
                    start,
                    tally.clone(),
                );
                workers.push(tokio::spawn(run));
            }
        }
        Traffic { tally, workers }
    }

    /// The counts so far (not the failures).
    pub(crate) fn counts(&self) -> ([u64; 3], usize) {
        let tally = lock(&self.tally);
        (tally.done, tally.failures.len())
    }

    /// Waits for every worker to pass the end (a call under way finishes or times out first).
    pub(crate) async fn finish(self) -> Tally {
        for worker in self.workers {
            // A worker that panicked leaves its counts so far in the tally.
            let _ = worker.await;
        }
        std::mem::take(&mut *lock(&self.tally))
    }
}

fn lock(tally: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
    // A worker that panicked holding the lock left the counts whole: each update is one step.
    tally.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One worker: a call at each tick from `first`, every `period`, until `end`.
async fn run(
    mut worker: Worker,
    protocol: Protocol,
    (first, period, end): (Instant, Duration, Instant),
    start: Instant,
    tally: Arc<Mutex<Tally>>,
) {
    let mut ticks = tokio::time::interval_at(first.into(), period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        if ticks.tick().await.into_std() >= end {
            return;
        }
        let from = start.elapsed();
        let (opened, result) = worker.once().await;
        let to = start.elapsed();
        let mut tally = lock(&tally);
        tally.opened[protocol.index()] += u64::from(opened);
        match result {
            Ok(()) => tally.done[protocol.index()] += 1,
            Err(why) => tally.failures.push(Failure {
                protocol,
                from,
                to,
                why,
            }),
        }
    }
}

struct Worker {
    addr: SocketAddr,
    churn: u32,
    work: Work,
}

enum Work {
    /// HTTP/1.1 or gRPC on a connection of its own, replaced every `churn` calls.
    Calls {
        kind: Kind,
        caller: Option<Caller>,
        used: u32,
    },
    /// A TCP connection per call: open, echo, close.
    Echo,
}

impl Work {
    fn calls(kind: Kind) -> Work {
        Work::Calls {
            kind,
            caller: None,
            used: 0,
        }
    }
}

impl Worker {
    /// One call; whether it opened a connection, and how it went.
    async fn once(&mut self) -> (bool, Result<(), String>) {
        let (kind, caller, used) = match &mut self.work {
            Work::Echo => return (true, echo(self.addr).await),
            Work::Calls { kind, caller, used } => (kind, caller, used),
        };
        let mut opened = false;
        if caller.is_none() || *used >= self.churn {
            // The old connection closes before the new one opens, as a client's pool would.
            *caller = None;
            *used = 0;
            opened = true;
            match timeout(CALL_TIMEOUT, Caller::connect(self.addr, kind.clone())).await {
                Ok(Ok(c)) => *caller = Some(c),
                Ok(Err(e)) => return (opened, Err(format!("connecting: {}", e.0))),
                Err(_) => return (opened, Err("connecting: no connection within 5 s".into())),
            }
        }
        let Some(c) = caller.as_mut() else {
            return (opened, Err("not connected".into()));
        };
        *used += 1;
        match timeout(CALL_TIMEOUT, c.call()).await {
            Ok(Ok(())) => (opened, Ok(())),
            Ok(Err(e)) => (opened, Err(e.0)),
            Err(_) => {
                // Abandoned halfway, the connection is of no more use.
                *caller = None;
                (opened, Err("no answer within 5 s".into()))
            }
        }
    }
}

/// Opens a connection to `addr`, sends [`ECHOED`], reads it back, closes.
async fn echo(addr: SocketAddr) -> Result<(), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        let (mut r, mut w) = stream.split();
        let mut back = vec![0u8; ECHOED.len()];
        // Written and read at once: the echo may start before the last byte is sent.
        let (written, read) = tokio::join!(w.write_all(ECHOED), r.read_exact(&mut back));
        written.map_err(|e| format!("sending: {e}"))?;
        read.map_err(|e| format!("reading the echo: {e}"))?;
        if back != ECHOED {
            return Err("the echo differs from what was sent".into());
        }
        Ok(())
    };
    timeout(CALL_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err("no echo within 5 s".into()))
}
