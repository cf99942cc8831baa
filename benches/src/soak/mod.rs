//! Load held, nothing leaked (issue 21, point 5): one Ferry pair carries mixed traffic —
//! HTTP/1.1 and gRPC on connections that are replaced as they go, and opaque TCP connections
//! opened and closed continuously — for 10 minutes (2 with `--quick`), while the service's
//! node is restarted every minute (every 30 s), by SIGTERM and SIGKILL in turn. The
//! application's node is never restarted: whatever it fails to free (a connection's state, a
//! stream, a link's) shows as resident memory that grows from one minute to the next. Its
//! memory just before the first restart is the reference, taken once the traffic has run for
//! a whole interval, and the end must be within 10% of it. Failures are expected while the
//! service's node is away; any other failure is a bug, and counted apart.
//!
//! The backends are in the harness's own process (no peer needs installing), on 127.0.70.x.

mod restart;
mod traffic;

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::backend;
use crate::error::Result;
use crate::ferry;
use crate::process::{wait_for_port, Process};
use crate::stats::median;
use crate::usage;
use restart::{explained, Pair, Restart, Stop, Window};
use traffic::{Entries, Protocol, Traffic, LOADS};

/// How often the application's node's memory is read, for the highest figure.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// How often the soak looks that both nodes still run between restarts.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How far the end may be from the reference: the goal of the issue.
const WITHIN: f64 = 0.10;
/// Unexplained failures listed in the report, to say why.
const EXAMPLES: usize = 5;

/// Service names; the TCP one is [`ferry::tcp_pair`]'s.
const HTTP_SERVICE: &str = "soak-http";
const GRPC_SERVICE: &str = "soak-grpc";
const TCP_SERVICE: &str = "echo";
const SERVICES: [&str; 3] = [HTTP_SERVICE, GRPC_SERVICE, TCP_SERVICE];

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 70, last)
}

/// What a run saw.
pub(crate) struct Figures {
    duration: Duration,
    every: Duration,
    /// The application's node's resident MiB just before each restart; the first one is the
    /// reference ("after warm-up").
    before_restarts: Vec<f64>,
    /// The same at the end, and the highest reading of the run.
    end: f64,
    highest: f64,
    /// The service's node's resident MiB at the end, since its last restart.
    b_end: f64,
    /// By [`Protocol`]: calls answered, connections opened, failures a restart explains, others.
    done: [u64; 3],
    opened: [u64; 3],
    explained: [usize; 3],
    unexplained: [usize; 3],
    /// A few distinct reasons of the explained failures, and the first unexplained ones.
    explained_reasons: Vec<String>,
    unexplained_examples: Vec<String>,
    restarts: Vec<Restart>,
    pub notes: Vec<String>,
}

pub(crate) async fn measure(
    ferry_bin: &Path,
    dir: &Path,
    duration: Duration,
    every: Duration,
) -> Result<Figures> {
    let (http, grpc, echo) = (
        SocketAddr::from((ip(3), 18081)),
        SocketAddr::from((ip(3), 18082)),
        SocketAddr::from((ip(3), 18083)),
    );
    backend::spawn_http(backend::bind(http).await?);
    backend::spawn_grpc(backend::bind(grpc).await?);
    backend::spawn_echo(backend::bind(echo).await?);

    let (mut a, mut b) = ferry::tcp_pair(ferry_bin, dir, "soak", (ip(1), ip(2)), echo).await?;
    b.services.push((HTTP_SERVICE.into(), http, "http"));
    b.services.push((GRPC_SERVICE.into(), grpc, "grpc"));
    let http_outbound = SocketAddr::from((ip(1), 17701));
    a.http_outbound = Some(http_outbound);
    let mut node_b = ferry::start(ferry_bin, &b, dir, None)?;
    wait_for_port(b.admin, &mut node_b, Duration::from_secs(10)).await?;
    let mut node_a = ferry::start(ferry_bin, &a, dir, None)?;
    wait_for_port(http_outbound, &mut node_a, Duration::from_secs(10)).await?;
    for service in SERVICES {
        ferry::wait_for_route(ferry_bin, &mut node_a, a.admin, None, service).await?;
    }

    let entries = Entries {
        http: http_outbound,
        http_host: HTTP_SERVICE,
        grpc_authority: GRPC_SERVICE,
        tcp: a.tcp_outbounds[0].0,
    };
    let start = Instant::now();
    let end = start + duration;
    let traffic = Traffic::start(&entries, start, end);
    let sampler = tokio::spawn(sample(node_a.pid(), end));
    let mut pair = Pair {
        ferry_bin,
        dir,
        b: &b,
        a: &mut node_a,
        a_admin: a.admin,
        services: &SERVICES,
    };
    let mut restarts = Vec::new();
    let mut before_restarts = Vec::new();
    let mut notes = Vec::new();
    for n in 1.. {
        let at = start + every * n;
        if at >= end {
            break;
        }
        hold(at, pair.a, &mut node_b).await?;
        let rss = usage::rss_mib(pair.a.pid())?;
        before_restarts.push(rss);
        let stop = Stop::nth(n as usize);
        progress(
            start,
            rss,
            &traffic,
            &format!("restart {n} ({})", stop.signal()),
        );
        let (new_b, done) = restart::restart(&mut pair, node_b, stop, start, &mut notes).await?;
        node_b = new_b;
        restarts.push(done);
    }
    hold(end, pair.a, &mut node_b).await?;
    let end_rss = usage::rss_mib(pair.a.pid())?;
    let b_end = usage::rss_mib(node_b.pid())?;
    progress(start, end_rss, &traffic, "end");
    let tally = traffic.finish().await;
    let samples = sampler.await.unwrap_or_default();
    pair.a.check_running()?;

    let mut figures = Figures {
        duration,
        every,
        highest: samples
            .iter()
            .chain(&before_restarts)
            .fold(end_rss, |a, &b| a.max(b)),
        before_restarts,
        end: end_rss,
        b_end,
        done: tally.done,
        opened: tally.opened,
        explained: [0; 3],
        unexplained: [0; 3],
        explained_reasons: Vec::new(),
        unexplained_examples: Vec::new(),
        restarts,
        notes,
    };
    let windows: Vec<Window> = figures.restarts.iter().map(|r| r.window).collect();
    for f in &tally.failures {
        let i = f.protocol.index();
        if explained(f.from, f.to, &windows) {
            figures.explained[i] += 1;
            let reason = format!("{}: {}", f.protocol.name(), f.why);
            if figures.explained_reasons.len() < EXAMPLES
                && !figures.explained_reasons.contains(&reason)
            {
                figures.explained_reasons.push(reason);
            }
        } else {
            figures.unexplained[i] += 1;
            if figures.unexplained_examples.len() < EXAMPLES {
                figures.unexplained_examples.push(format!(
                    "{}, {:.1}–{:.1} s: {}",
                    f.protocol.name(),
                    f.from.as_secs_f64(),
                    f.to.as_secs_f64(),
                    f.why
                ));
            }
        }
    }
    Ok(figures)
}

/// Waits until `until`, failing as soon as either node has died.
async fn hold(until: Instant, a: &mut Process, b: &mut Process) -> Result<()> {
    loop {
        a.check_running()?;
        b.check_running()?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        tokio::time::sleep(left.min(CHECK_EVERY)).await;
    }
}

/// Reads `pid`'s resident memory every [`SAMPLE_EVERY`] until `end` (or it is gone).
async fn sample(pid: u32, end: Instant) -> Vec<f64> {
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    while ticks.tick().await.into_std() < end {
        match usage::rss_mib(pid) {
            Ok(mib) => samples.push(mib),
            Err(_) => break,
        }
    }
    samples
}

fn progress(start: Instant, rss: f64, traffic: &Traffic, next: &str) {
    let (done, failed) = traffic.counts();
    println!(
        "soak: {:.0} s, application node {rss:.1} MiB; {} HTTP/1.1, {} gRPC, {} TCP done, {failed} failed; {next}",
        start.elapsed().as_secs_f64(),
        done[0],
        done[1],
        done[2]
    );
}

pub(crate) fn section(f: &Figures) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Load held, nothing leaked\n");
    let mix: Vec<String> = LOADS
        .iter()
        .map(|l| {
            let rate = l.rate * l.workers as f64;
            match l.protocol {
                Protocol::Tcp => format!(
                    "opaque TCP at {rate:.0} connections/s (each opened, 1 KiB echoed, closed)"
                ),
                p => {
                    let unit = if p == Protocol::Http1 { "requests" } else { "calls" };
                    format!(
                        "{} at {rate:.0} {unit}/s from {} connections, each replaced every {} {unit}",
                        p.name(),
                        l.workers,
                        l.churn
                    )
                }
            }
        })
        .collect();
    let _ = writeln!(
        md,
        "One Ferry pair on loopback for {:.0} minutes: the application's node carries {} to an \
         HTTP/1.1 server, a gRPC server and an echo server behind the service's node. The \
         service's node is restarted every {} s, by SIGTERM (it drains) and SIGKILL in turn, \
         then started again with the same key and config. The application's node is never \
         restarted; its resident memory is read every {} s and just before each restart. \
         *After warm-up* is the reading just before the first restart, after {} s of traffic. \
         A failure is explained when its call was under way between a restart's signal and \
         {} s after every route was back at the application's node.\n",
        f.duration.as_secs_f64() / 60.0,
        mix.join("; "),
        f.every.as_secs(),
        SAMPLE_EVERY.as_secs(),
        f.every.as_secs(),
        restart::GRACE.as_secs()
    );
    let warm = f.before_restarts.first().copied();
    let ratio = warm.map(|w| f.end / w);
    let within = ratio.map(|r| (r - 1.0).abs() <= WITHIN);
    let mib = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.1} MiB"));
    let _ = writeln!(md, "| | |\n| --- | --- |");
    let _ = writeln!(md, "| application node, after warm-up | {} |", mib(warm));
    let _ = writeln!(
        md,
        "| application node, at the end | {} |",
        mib(Some(f.end))
    );
    let _ = writeln!(
        md,
        "| application node, highest | {} |",
        mib(Some(f.highest))
    );
    let _ = writeln!(
        md,
        "| end / after warm-up | {} |",
        ratio.map_or("—".into(), |r| format!("{r:.3}"))
    );
    let _ = writeln!(
        md,
        "| within {:.0}%: | **{}** |",
        WITHIN * 100.0,
        match within {
            Some(true) => "yes",
            Some(false) => "no",
            None => "— (no restart, so no reading after warm-up)",
        }
    );
    let before: Vec<String> = f
        .before_restarts
        .iter()
        .map(|v| format!("{v:.1}"))
        .collect();
    let _ = writeln!(
        md,
        "| application node before each restart (MiB) | {} |",
        before.join(", ")
    );
    let _ = writeln!(
        md,
        "| service node at the end, since its last restart | {} |",
        mib(Some(f.b_end))
    );
    for p in Protocol::ALL {
        let i = p.index();
        let row = match p {
            Protocol::Http1 => "HTTP/1.1 requests answered",
            Protocol::Grpc => "gRPC calls answered",
            Protocol::Tcp => "TCP connections opened, echoed and closed",
        };
        let on = match p {
            Protocol::Tcp => String::new(),
            _ => format!(" on {} connections", f.opened[i]),
        };
        let _ = writeln!(md, "| {row} | {}{on} |", f.done[i]);
    }
    let terms = f.restarts.iter().filter(|r| r.stop == Stop::Term).count();
    let _ = writeln!(
        md,
        "| restarts done | {} ({terms} SIGTERM, {} SIGKILL) |",
        f.restarts.len(),
        f.restarts.len() - terms
    );
    let secs = |v: Vec<f64>| match (median(&v), v.iter().copied().reduce(f64::max)) {
        (Some(m), Some(max)) => format!("median {m:.1} s, at most {max:.1} s"),
        _ => "—".into(),
    };
    let drained = f.restarts.iter().filter(|r| r.stop == Stop::Term);
    let _ = writeln!(
        md,
        "| SIGTERM to exit (the drain) | {} |",
        secs(drained.map(|r| r.stopped_in.as_secs_f64()).collect())
    );
    let _ = writeln!(
        md,
        "| signal to every route back | {} |",
        secs(f.restarts.iter().map(|r| r.back_in.as_secs_f64()).collect())
    );
    let by = |counts: &[usize; 3]| {
        let total: usize = counts.iter().sum();
        let parts: Vec<String> = Protocol::ALL
            .iter()
            .map(|p| format!("{} {}", p.name(), counts[p.index()]))
            .collect();
        format!("{total} ({})", parts.join(", "))
    };
    let _ = writeln!(
        md,
        "| errors explained by restarts | {} |",
        by(&f.explained)
    );
    let unexplained: usize = f.unexplained.iter().sum();
    let _ = writeln!(
        md,
        "| unexplained errors: | **{unexplained}**{} |",
        if unexplained == 0 {
            String::new()
        } else {
            format!(" — {}", by(&f.unexplained))
        }
    );
    md.push('\n');
    if !f.explained_reasons.is_empty() {
        let _ = writeln!(md, "Explained errors were, among others:\n");
        for reason in &f.explained_reasons {
            let _ = writeln!(md, "- {reason}");
        }
        md.push('\n');
    }
    for example in &f.unexplained_examples {
        let _ = writeln!(md, "- unexplained: {example}");
    }
    if !f.unexplained_examples.is_empty() {
        md.push('\n');
    }
    md
}
