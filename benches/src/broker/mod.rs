//! The broker scenario: issue 17's goals for publish and subscribe, beside NATS.
//!
//! 1 KiB messages, each stamped with when it left the publisher, are published and the time
//! to their delivery at a subscriber is recorded, through:
//!
//! - **direct**: POSTed straight to the subscriber, no broker: the baseline latency;
//! - **ferry**: Ferry's mesh broker in one datacenter (publisher's node → subscriber's node →
//!   the subscriber, acknowledged back);
//! - **ferry-batch**: the same pair, to a subscription that takes batches of 100: at the
//!   highest rate each publish is a CloudEvents batch of 100 messages
//!   (`/v1/publish-batch`), at the fixed rate one message (`/v1/publish`);
//! - **ferry-2dc**: the same across two datacenters, through a gateway on each side;
//! - **ferry-nats**: Ferry's `nats` broker (stored in JetStream, pulled by the subscriber's
//!   node);
//! - **nats**: core NATS, a real client publishing and a queue subscriber receiving;
//! - **nats-jetstream**: JetStream publishes, each waiting until the stream stored it (as a
//!   Ferry publish waits until the broker holds the message), to the same kind of subscriber.
//!
//! Each target is measured at a fixed rate (1,000 msg/s: publish-to-delivery p50 and p99) and
//! at the highest rate it sustains (32 publishing connections back to back; NATS's client is
//! one connection, publishing without waiting: messages delivered within the window per
//! second). Targets alternate round by round.

mod targets;
mod traffic;

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::stats::{ratio, rotation, Samples};

use targets::{Targets, BATCH, BATCH_TOPIC, TOPIC};
use traffic::{publish, Pace, Publish};

/// The fixed rate, messages per second.
pub(crate) const RATE: f64 = 1000.0;
/// Publishing connections at the highest rate.
const CONNECTIONS: usize = 32;

const TARGETS: [&str; 7] = [
    "direct",
    "ferry",
    "ferry-batch",
    "ferry-2dc",
    "ferry-nats",
    "nats",
    "nats-jetstream",
];

mod metric {
    pub(super) const P50: &str = "p50_us";
    pub(super) const P99: &str = "p99_us";
    pub(super) const LOST: &str = "lost";
    pub(super) const MAX_RATE: &str = "max_rate";
}

/// What the report shows.
pub(crate) struct Figures {
    samples: Samples,
    rounds: usize,
    measure: Duration,
    pub notes: Vec<String>,
}

/// Runs `rounds` rounds of every target, each measurement lasting `measure`.
pub(crate) async fn measure(
    ferry_bin: &Path,
    dir: &Path,
    rounds: usize,
    measure: Duration,
) -> Result<Figures> {
    let base = Instant::now();
    let targets = Targets::start(ferry_bin, dir, base).await?;
    let client = async_nats::connect(targets.nats_url.as_str())
        .await
        .map_err(|e| Error::Output {
            what: "a NATS connection".into(),
            detail: e.to_string(),
        })?;
    let nats_arrivals = traffic::Arrivals::new(base);
    let subject = format!("core.{TOPIC}");
    let _subscriber =
        traffic::nats_subscriber(client.clone(), subject.clone(), nats_arrivals.clone()).await?;
    let js_arrivals = traffic::Arrivals::new(base);
    let js_subject = format!("stored.{TOPIC}");
    let context = async_nats::jetstream::new(client.clone());
    context
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: "BENCH".into(),
            subjects: vec![js_subject.clone()],
            max_messages: 100_000,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::Output {
            what: "the JetStream stream".into(),
            detail: e.to_string(),
        })?;
    let _js_subscriber =
        traffic::nats_subscriber(client.clone(), js_subject.clone(), js_arrivals.clone()).await?;
    let publish_path = format!("/v1/publish/{TOPIC}");
    let http = |address| Publish::Http {
        address,
        path: publish_path.clone(),
    };
    let plan = [
        (
            Publish::Http {
                address: targets.direct.address,
                path: "/events".into(),
            },
            &targets.direct.arrivals,
        ),
        (http(targets.ferry.0), &targets.ferry.1.arrivals),
        (
            Publish::HttpBatch {
                address: targets.ferry_batch.0,
                path: format!("/v1/publish/{BATCH_TOPIC}"),
                batch_path: format!("/v1/publish-batch/{BATCH_TOPIC}"),
                size: BATCH,
            },
            &targets.ferry_batch.1.arrivals,
        ),
        (http(targets.ferry_2dc.0), &targets.ferry_2dc.1.arrivals),
        (http(targets.ferry_nats.0), &targets.ferry_nats.1.arrivals),
        (Publish::Nats { client, subject }, &nats_arrivals),
        (
            Publish::JetStream {
                context,
                subject: js_subject,
            },
            &js_arrivals,
        ),
    ];
    let mut figures = Figures {
        samples: Samples::default(),
        rounds,
        measure,
        notes: Vec::new(),
    };
    for round in 0..rounds {
        for i in rotation(TARGETS.len(), round) {
            let (to, arrivals) = &plan[i];
            let target = TARGETS[i];
            println!("round {} of {rounds}: {target}", round + 1);
            let lanes = if matches!(to, Publish::Nats { .. }) {
                1
            } else {
                CONNECTIONS
            };
            // Warm up (connections, pools, the route to the subscriber), then measure.
            publish(
                to,
                Pace::Rate(RATE),
                lanes,
                Duration::from_millis(500),
                arrivals,
            )
            .await?;
            settle(arrivals).await;
            arrivals.reset();
            let failed = publish(to, Pace::Rate(RATE), lanes, measure, arrivals).await?;
            settle(arrivals).await;
            let sent = (RATE * measure.as_secs_f64()).round();
            let arrived = arrivals.count() as f64;
            figures
                .samples
                .record(metric::P50, target, arrivals.quantile_us(0.5));
            figures
                .samples
                .record(metric::P99, target, arrivals.quantile_us(0.99));
            figures
                .samples
                .record(metric::LOST, target, (sent - arrived).max(0.0));
            if failed > 0 {
                figures.notes.push(format!(
                    "{target}, round {}: {failed} publishes refused at {RATE} msg/s",
                    round + 1
                ));
            }

            arrivals.reset();
            let flat = publish(to, Pace::Flat, lanes, measure, arrivals);
            let failed = flat.await?;
            let rate = arrivals.count() as f64 / measure.as_secs_f64();
            figures.samples.record(metric::MAX_RATE, target, rate);
            if failed > 0 {
                figures.notes.push(format!(
                    "{target}, round {}: {failed} publishes refused at the highest rate",
                    round + 1
                ));
            }
            settle(arrivals).await;
        }
    }
    Ok(figures)
}

/// Waits until deliveries stop arriving (at most 5 s), so one measurement's stragglers do
/// not count in the next.
async fn settle(arrivals: &traffic::Arrivals) {
    let start = Instant::now();
    let mut last = arrivals.count();
    while start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = arrivals.count();
        if now == last {
            return;
        }
        last = now;
    }
}

/// BROKER.md: the medians of every target, and the goals.
pub(crate) fn section(f: &Figures) -> String {
    let m = |metric: &str, target: &str| f.samples.median(metric, target);
    let fmt = |v: Option<f64>, unit: &str| match v {
        Some(v) if unit == "ms" => format!("{:.2} ms", v / 1000.0),
        Some(v) => format!("{v:.0}{unit}"),
        None => "—".into(),
    };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Publish and subscribe\n\n1 KiB messages; {} rounds, targets alternating; each \
         measurement {:?}. Latency is from when a message left the publisher to its arrival \
         at the subscriber, at {RATE:.0} msg/s. The highest rate is messages \
         delivered within the window per second, with {CONNECTIONS} publishing connections \
         back to back (core NATS: one client publishing without waiting; JetStream: 32 publishes \
         awaiting their acknowledgement; ferry-batch: each publish a batch of {BATCH} to a \
         subscription that takes up to {BATCH} a delivery, and one message a publish at the fixed \
         rate). A publisher answered 429 (the broker's queue is full) waits {} ms before it \
         publishes again. Medians of the rounds.\n",
        f.rounds,
        f.measure,
        traffic::FULL_BACKOFF.as_millis()
    );
    md.push_str("| target | p50 | p99 | p99 added over direct | lost at the fixed rate | highest rate, msg/s | × core NATS |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    let direct_p99 = m(metric::P99, "direct");
    let nats_rate = m(metric::MAX_RATE, "nats");
    for target in TARGETS {
        let p99 = m(metric::P99, target);
        let added = p99.zip(direct_p99).map(|(a, b)| a - b);
        let _ = writeln!(
            md,
            "| {target} | {} | {} | {} | {} | {} | {} |",
            fmt(m(metric::P50, target), "ms"),
            fmt(p99, "ms"),
            if target == "direct" {
                "—".into()
            } else {
                fmt(added, "ms")
            },
            fmt(m(metric::LOST, target), ""),
            fmt(m(metric::MAX_RATE, target), ""),
            ratio(m(metric::MAX_RATE, target), nats_rate)
                .map_or("—".into(), |r| format!("{r:.2}×")),
        );
    }
    let added = m(metric::P99, "ferry").zip(direct_p99).map(|(a, b)| a - b);
    // The rate goal is judged on the better way to publish within one datacenter.
    let best = ["ferry", "ferry-batch"]
        .into_iter()
        .filter_map(|t| m(metric::MAX_RATE, t))
        .fold(None, |best: Option<f64>, r| {
            Some(best.map_or(r, |b| b.max(r)))
        });
    let share = ratio(best, nats_rate);
    let _ = writeln!(
        md,
        "\nGoals (issue 17): p99 added over direct under 1 ms at {RATE:.0} msg/s in one \
         datacenter: **{}** ({}); at least half of core NATS's highest rate (the better of ferry and \
         ferry-batch): **{}** ({}).",
        fmt(added, "ms"),
        if added.is_some_and(|a| a < 1000.0) {
            "met"
        } else {
            "not met"
        },
        share.map_or("—".into(), |r| format!("{r:.2}×")),
        if share.is_some_and(|r| r >= 0.5) {
            "met"
        } else {
            "not met"
        },
    );
    let spread: Vec<String> = TARGETS
        .iter()
        .map(|t| {
            let v = f.samples.values(metric::MAX_RATE, t);
            format!(
                "{t} {}",
                v.iter()
                    .map(|x| format!("{x:.0}"))
                    .collect::<Vec<_>>()
                    .join("/")
            )
        })
        .collect();
    let _ = writeln!(md, "\nHighest rate in each round: {}.", spread.join("; "));
    md
}
