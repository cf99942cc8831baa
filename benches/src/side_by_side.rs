//! Two ways into one Ferry pair, measured alike and alternating round by round: HTTP/1.1
//! requests a second on 32 connections (closed loop), the pair's CPU time per request, and
//! latency at a fixed rate (open loop), half what the slower way served in the first round.
//! The identity and interception parts compare their two sides this way.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use crate::error::Result;
use crate::load::{self, connect_all, Kind};
use crate::stats::{ratio, rotation, Samples};
use crate::usage;

pub(crate) const RPS: &str = "HTTP/1.1 req/s, 32 connections";
const P50: &str = "p50 µs at a fixed rate";
const P99: &str = "p99 µs at a fixed rate";
const CPU: &str = "pair CPU µs per request";
const CONNECTIONS: usize = 32;

/// One way in: where the load connects, and the two processes of the pair it goes through.
pub(crate) struct Side {
    pub name: &'static str,
    pub entry: SocketAddr,
    pub pids: [u32; 2],
}

/// The samples of every round, and the fixed rate the first round set.
#[derive(Default)]
pub(crate) struct Comparison {
    pub samples: Samples,
    pub notes: Vec<String>,
    fixed_rate: f64,
}

impl Comparison {
    /// Runs one round of every measurement on both sides, in an order that turns each round.
    pub(crate) async fn round(
        &mut self,
        sides: &[Side; 2],
        round: usize,
        (warmup, measure): (Duration, Duration),
    ) -> Result<()> {
        for i in rotation(2, round) {
            let side = &sides[i];
            let before = cpu_time(side)?;
            let r = load::closed_loop(callers(side).await?, warmup, measure).await;
            let used = cpu_time(side)?.saturating_sub(before);
            self.samples.record(RPS, side.name, r.per_second());
            // Warm-up requests used CPU too: count them at the measured rate.
            let requests = r.per_second() * (warmup + measure).as_secs_f64();
            let micros = used.as_secs_f64() * 1e6 / requests.max(1.0);
            self.samples.record(CPU, side.name, micros);
            if r.errors > 0 {
                let (name, errors) = (side.name, r.errors);
                self.notes.push(format!(
                    "{name}, round {}: {errors} failed requests",
                    round + 1
                ));
            }
        }
        if self.fixed_rate == 0.0 {
            let slowest = sides
                .iter()
                .filter_map(|side| self.samples.median(RPS, side.name))
                .fold(f64::INFINITY, f64::min);
            self.fixed_rate = ((slowest * 0.5 / 100.0).floor() * 100.0).max(100.0);
            self.notes.push(format!(
                "Latency at a fixed rate: {:.0} requests a second, half what the slower side served in the first round.",
                self.fixed_rate
            ));
        }
        for i in rotation(2, round) {
            let side = &sides[i];
            let r = load::open_loop(callers(side).await?, self.fixed_rate, warmup, measure).await;
            self.samples.record(P50, side.name, r.micros(0.5));
            self.samples.record(P99, side.name, r.micros(0.99));
        }
        Ok(())
    }

    /// Table rows, `| measure (label) | first | second | second/first |`, of the medians.
    pub(crate) fn rows(&self, [first, second]: [&str; 2], label: &str) -> String {
        let mut md = String::new();
        for metric in [RPS, P50, P99, CPU] {
            let (a, b) = (
                self.samples.median(metric, first),
                self.samples.median(metric, second),
            );
            let fmt = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.0}"));
            let r = ratio(b, a).map_or("—".into(), |v| format!("{v:.3}×"));
            let _ = writeln!(md, "| {metric}{label} | {} | {} | {r} |", fmt(a), fmt(b));
        }
        md
    }
}

async fn callers(side: &Side) -> Result<Vec<load::Caller>> {
    let kind = Kind::Http1 {
        host: crate::lab::HTTP_SERVICE.to_string(),
    };
    connect_all(side.entry, &kind, CONNECTIONS).await
}

fn cpu_time(side: &Side) -> Result<Duration> {
    let [a, b] = side.pids;
    Ok(usage::cpu_time(a)? + usage::cpu_time(b)?)
}
