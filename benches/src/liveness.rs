//! A WAN link that loses packets is not given up (issue 21, point 4): two Ferry nodes linked
//! through a user-space WAN ([`Impairment`]: 50 ms each way, so 100 ms of RTT, and 1% of the
//! datagrams lost in each direction) for a long run (10 minutes; 1 with `--quick`), with an
//! opaque TCP call across the link every 100 ms. Counts what a flap would leave: links closed
//! for silence (`peer silent` in either node's log), polls of `/peers` that found the link not
//! up, and calls that failed. A node killed on a LAN is given up in about a fifth of a second
//! (`tests/liveness.rs`); this is the other side of that bargain.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use std::process::Command;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backend;
use crate::error::Result;
use crate::ferry;
use crate::impair::Impairment;
use crate::process::{output, wait_for_port};
use crate::stats::median;

/// The WAN: each way, and lost in each direction.
const DELAY: Duration = Duration::from_millis(50);
const LOSS: f64 = 0.01;
/// How often a call crosses the link, and how often `/peers` is read.
const CALL_EVERY: Duration = Duration::from_millis(100);
const POLL_EVERY: Duration = Duration::from_secs(1);

/// What a run saw.
pub(crate) struct Figures {
    duration: Duration,
    /// The link's RTT as `/peers` showed it, each poll.
    rtt_ms: Vec<f64>,
    /// Links closed because the peer fell silent, in both nodes' logs.
    silent_closes: usize,
    polls: usize,
    /// Polls that found the link not up.
    down: usize,
    calls: usize,
    failed: usize,
    /// The first failures, to say why.
    failures: Vec<String>,
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 68, last)
}

pub(crate) async fn measure(ferry_bin: &Path, dir: &Path, duration: Duration) -> Result<Figures> {
    let echo = SocketAddr::from((ip(3), 18090));
    backend::spawn_echo(backend::bind(echo).await?);
    let (mut a, b) = ferry::tcp_pair(ferry_bin, dir, "wan", (ip(1), ip(2)), echo).await?;
    let mut node_b = ferry::start(ferry_bin, &b, dir, None)?;
    wait_for_port(b.admin, &mut node_b, Duration::from_secs(10)).await?;
    // A dials B through the WAN.
    let wan = Impairment::start(b.tunnel, DELAY, LOSS).await?;
    a.peers[0].0 = wan.address;
    let entry = a.tcp_outbounds[0].0;
    let mut node_a = ferry::start(ferry_bin, &a, dir, None)?;
    ferry::wait_for_route(ferry_bin, &mut node_a, a.admin, None, "echo").await?;

    let mut figures = Figures {
        duration,
        rtt_ms: Vec::new(),
        silent_closes: 0,
        polls: 0,
        down: 0,
        calls: 0,
        failed: 0,
        failures: Vec::new(),
    };
    let start = Instant::now();
    let mut calls = tokio::time::interval(CALL_EVERY);
    let mut polls = tokio::time::interval(POLL_EVERY);
    let mut minutes = 0;
    while start.elapsed() < duration {
        tokio::select! {
            _ = calls.tick() => {
                figures.calls += 1;
                if let Err(e) = call(entry).await {
                    figures.failed += 1;
                    if figures.failures.len() < 5 {
                        figures.failures.push(format!("{:.1} s: {e}", start.elapsed().as_secs_f64()));
                    }
                }
            }
            _ = polls.tick() => {
                node_a.check_running()?;
                node_b.check_running()?;
                figures.polls += 1;
                match link(ferry_bin, a.admin).await {
                    Some(rtt) => figures.rtt_ms.push(rtt),
                    None => figures.down += 1,
                }
                if start.elapsed().as_secs() / 60 > minutes {
                    minutes = start.elapsed().as_secs() / 60;
                    println!("liveness: {minutes} min, {} calls, {} failed, {} polls found the link down",
                        figures.calls, figures.failed, figures.down);
                }
            }
        }
    }
    figures.silent_closes = [&node_a, &node_b]
        .iter()
        .map(|node| node.log_text().matches("peer silent").count())
        .sum();
    Ok(figures)
}

/// One call: 16 bytes through the TCP outbound to the echo service and back.
async fn call(entry: SocketAddr) -> std::result::Result<(), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(entry).await.map_err(|e| e.to_string())?;
        stream
            .write_all(b"0123456789abcdef")
            .await
            .map_err(|e| e.to_string())?;
        let mut back = [0u8; 16];
        stream
            .read_exact(&mut back)
            .await
            .map_err(|e| e.to_string())?;
        match &back {
            b"0123456789abcdef" => Ok(()),
            other => Err(format!("echoed {other:?}")),
        }
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .unwrap_or_else(|_| Err("no echo within 5 s".into()))
}

/// The RTT of `wan-a`'s link to `wan-b` in milliseconds, if it is up.
async fn link(ferry_bin: &Path, admin: SocketAddr) -> Option<f64> {
    let mut c = Command::new(ferry_bin);
    c.args(["peers", "--json", "--admin", &admin.to_string()]);
    let json = output("ferry peers", c).await.ok()?;
    let peers: serde_json::Value = serde_json::from_str(&json).ok()?;
    let peer = peers.as_array()?.iter().find(|p| p["name"] == "wan-b")?;
    (peer["state"] == "up").then(|| peer["rtt_ms"].as_f64())?
}

pub(crate) fn section(f: &Figures) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# A lossy WAN link is not given up\n");
    let _ = writeln!(
        md,
        "Two Ferry nodes linked through a user-space WAN: {} ms each way, {:.0}% of datagrams \
         lost in each direction; an opaque TCP call across the link every {} ms, for {:.0} \
         minutes.\n",
        DELAY.as_millis(),
        LOSS * 100.0,
        CALL_EVERY.as_millis(),
        f.duration.as_secs_f64() / 60.0
    );
    let rtt = median(&f.rtt_ms).map_or("—".into(), |r| format!("{r:.0} ms"));
    let _ = writeln!(md, "| | |\n| --- | --- |");
    let _ = writeln!(md, "| RTT of the link (median of `/peers`) | {rtt} |");
    let _ = writeln!(md, "| links closed for silence | **{}** |", f.silent_closes);
    let _ = writeln!(
        md,
        "| polls of `/peers` that found the link down | {} of {} |",
        f.down, f.polls
    );
    let _ = writeln!(md, "| calls failed | {} of {} |", f.failed, f.calls);
    for failure in &f.failures {
        let _ = writeln!(md, "\n- failed at {failure}");
    }
    md.push('\n');
    md
}
