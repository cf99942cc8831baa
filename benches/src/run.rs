//! One run: set everything up, go round the scenarios `runs` times alternating the targets,
//! tear everything down, write the report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bulk::{self, Bulk};
use crate::cli::{Options, Part, USAGE};
use crate::error::{Error, Result};
use crate::lab::{self, Lab};
use crate::load::{self, connect_all, Caller, Kind};
use crate::peers::{self, Peers};
use crate::stats::{rotation, Samples};
use crate::{
    broker, chart, connections, datacenters, external, ferry, identity, intercept, liveness,
    report, soak, usage,
};

/// Metric names, shared with the report.
pub(crate) mod metric {
    pub(crate) const HTTP_RPS: &str = "http_rps";
    pub(crate) const HTTP_RPS_WRK: &str = "http_rps_wrk";
    pub(crate) const HTTP_CPU: &str = "http_cpu_us_per_request";
    pub(crate) const HTTP_P50: &str = "http_open_p50_us";
    pub(crate) const HTTP_P99: &str = "http_open_p99_us";
    pub(crate) const HTTP_P999: &str = "http_open_p999_us";
    pub(crate) const SEQ_P50: &str = "seq_p50_us";
    pub(crate) const SEQ_P99: &str = "seq_p99_us";
    pub(crate) const SEQ_ADDED: &str = "seq_added_p50_us";
    pub(crate) const GRPC_RPS: &str = "grpc_rps";
    pub(crate) const GRPC_P50: &str = "grpc_p50_us";
    pub(crate) const GRPC_P99: &str = "grpc_p99_us";
    pub(crate) const GRPC_RPS_H2LOAD: &str = "grpc_rps_h2load";
    pub(crate) const BULK_GBPS: &str = "bulk_gbps";
    pub(crate) const RSS_IDLE: &str = "rss_idle_mib";
    pub(crate) const RSS_IDLE_B: &str = "rss_idle_b_mib";
    pub(crate) const RSS_HELD: &str = "rss_1000_mib";
    pub(crate) const RSS_HELD_B: &str = "rss_1000_b_mib";
    pub(crate) const ERRORS: &str = "errors";
}

/// HTTP/1.1 keep-alive connections in the throughput and fixed-rate scenarios.
pub(crate) const CONNECTIONS: usize = 32;
/// gRPC calls in flight on the one HTTP/2 connection.
pub(crate) const GRPC_STREAMS: usize = 32;
/// Connections held open for the memory figure.
pub(crate) const HELD: usize = 1000;

/// How long each measurement lasts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub warmup: Duration,
    pub measure: Duration,
}

/// Everything the report needs.
pub(crate) struct Outcome {
    pub samples: Samples,
    pub options: Options,
    pub timing: Timing,
    /// The fixed rate of the open-loop scenario, requests per second.
    pub open_rate: f64,
    pub versions: Vec<(String, String)>,
    pub notes: Vec<String>,
}

/// The harness's entry point: parses arguments, runs, reports; Ctrl-C or SIGTERM cleans up.
pub fn main() -> std::process::ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("harness: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("harness: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Dropping the run future on a signal drops every process and namespace handle in it,
    // which is what cleans up.
    let result = runtime.block_on(async {
        tokio::select! {
            r = run(options) => r,
            _ = interrupted() => Err(Error::Interrupted),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("harness: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        // Without signal handling the run can still finish; it just cannot clean up on ^C.
        _ => std::future::pending().await,
    }
}

async fn run(options: Options) -> Result<()> {
    let timing = if options.quick {
        Timing {
            warmup: Duration::from_millis(300),
            measure: Duration::from_secs(1),
        }
    } else {
        Timing {
            warmup: Duration::from_secs(1),
            measure: Duration::from_secs(4),
        }
    };
    let out_dir = options
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    std::fs::create_dir_all(&out_dir)
        .map_err(Error::io(format!("creating {}", out_dir.display())))?;
    let ferry_bin = ferry::binary().await?;
    let work = WorkDir::create()?;
    let dir = work.0.as_path();
    if options.runs_part(Part::Peers) {
        beside_peers(&options, timing, &ferry_bin, dir, &out_dir).await?;
    }
    if options.runs_part(Part::Datacenters) {
        let trials = if options.quick { 3 } else { 10 };
        println!("starting three datacenters on loopback");
        let figures = datacenters::measure(&ferry_bin, dir, trials).await?;
        let md = datacenters::section(&figures, trials);
        write_part(
            &options,
            &out_dir,
            "DATACENTERS.md",
            "datacenters",
            md,
            &figures.notes,
        )?;
    }
    if options.runs_part(Part::Identity) {
        let peers = peers::ensure().await?;
        println!("starting the identity targets on loopback");
        let timing = (timing.warmup, timing.measure);
        let figures =
            identity::measure(&ferry_bin, &peers.nginx, dir, options.runs, timing).await?;
        let md = identity::section(&figures);
        write_part(
            &options,
            &out_dir,
            "IDENTITY.md",
            "identity",
            md,
            &figures.comparison.notes,
        )?;
    }
    if options.runs_part(Part::Intercept) {
        let peers = peers::ensure().await?;
        println!("starting the interception targets on loopback (rules in this machine's nat table for the run)");
        let timing = (timing.warmup, timing.measure);
        let figures =
            intercept::measure(&ferry_bin, &peers.nginx, dir, options.runs, timing).await?;
        let md = intercept::section(&figures);
        write_part(
            &options,
            &out_dir,
            "INTERCEPT.md",
            "intercept",
            md,
            &figures.comparison.notes,
        )?;
    }
    if options.runs_part(Part::Liveness) {
        let minutes = options
            .minutes
            .unwrap_or(if options.quick { 1 } else { 10 });
        println!("holding a link over a lossy WAN for {minutes} minutes");
        let duration = Duration::from_secs(60 * minutes);
        let figures = liveness::measure(&ferry_bin, dir, duration).await?;
        write_part(
            &options,
            &out_dir,
            "LIVENESS.md",
            "liveness",
            liveness::section(&figures),
            &[],
        )?;
    }
    if options.runs_part(Part::Connections) {
        println!(
            "holding {} connections through one Ferry pair",
            connections::HELD
        );
        let figures = connections::measure(&ferry_bin, dir).await?;
        write_part(
            &options,
            &out_dir,
            "CONNECTIONS.md",
            "connections",
            connections::section(&figures),
            &[],
        )?;
    }
    if options.runs_part(Part::Soak) {
        let (minutes, every) = if options.quick { (2, 30) } else { (10, 60) };
        let minutes = options.minutes.unwrap_or(minutes);
        println!(
            "soaking one Ferry pair with mixed traffic for {minutes} minutes, its service node restarted every {every} s"
        );
        let duration = Duration::from_secs(60 * minutes);
        let every = Duration::from_secs(every);
        let figures = soak::measure(&ferry_bin, dir, duration, every).await?;
        write_part(
            &options,
            &out_dir,
            "SOAK.md",
            "soak",
            soak::section(&figures),
            &figures.notes,
        )?;
    }
    if options.runs_part(Part::Broker) {
        let rounds = options.runs;
        println!("starting the broker targets and nats-server on loopback");
        let figures = broker::measure(&ferry_bin, dir, rounds, timing.measure).await?;
        let md = broker::section(&figures);
        write_part(
            &options,
            &out_dir,
            "BROKER.md",
            "broker",
            md,
            &figures.notes,
        )?;
    }
    Ok(())
}

/// Writes a part's report `file`: its section `md`, its notes, and how to run it again.
fn write_part(
    options: &Options,
    out_dir: &Path,
    file: &str,
    part: &str,
    mut md: String,
    notes: &[String],
) -> Result<()> {
    let results = out_dir.join("RESULTS.md");
    if let Ok(page) = std::fs::read_to_string(&results) {
        let page = crate::parts::splice(&page, part, file, &md);
        std::fs::write(&results, page)
            .map_err(Error::io(format!("writing {}", results.display())))?;
    }
    for note in notes {
        md.push_str(&format!("- {note}\n"));
    }
    md.push_str(&format!(
        "\nReproduce: `cargo run --release -p ferry-benches --bin harness -- --only {part}{}{}` (written {} UTC).\n",
        if options.quick { " --quick" } else { "" },
        options
            .minutes
            .map_or(String::new(), |m| format!(" --minutes {m}")),
        report::utc_now()
    ));
    let report = out_dir.join(file);
    std::fs::write(&report, &md).map_err(Error::io(format!("writing {}", report.display())))?;
    println!("{md}");
    println!("wrote {}", report.display());
    Ok(())
}

/// Ferry beside its peers: the loopback scenarios, then bulk TCP between namespaces; writes
/// RESULTS.md and results.png.
async fn beside_peers(
    options: &Options,
    timing: Timing,
    ferry_bin: &Path,
    dir: &Path,
    out_dir: &Path,
) -> Result<()> {
    let peers = peers::ensure().await?;
    let ferry_bin = ferry_bin.to_owned();
    let grpc_request = dir.join("grpc-request.bin");
    external::write_grpc_request(&grpc_request)?;

    let mut outcome = Outcome {
        samples: Samples::default(),
        options: options.clone(),
        timing,
        open_rate: 0.0,
        versions: versions(&peers).await,
        notes: Vec::new(),
    };

    println!(
        "starting the loopback targets (work files in {})",
        dir.display()
    );
    {
        let mut lab = Lab::start(&peers, &ferry_bin, dir).await?;
        // Idle: measured once, fresh, before any traffic.
        record_rss(
            &mut outcome.samples,
            &lab,
            metric::RSS_IDLE,
            metric::RSS_IDLE_B,
        )?;
        for round in 0..options.runs {
            println!("round {} of {} (loopback)", round + 1, options.runs);
            let result = loopback_round(&mut outcome, &mut lab, &peers, round, &grpc_request).await;
            // A target that died explains a failed round better than the failure itself.
            lab.check_running()?;
            result?;
        }
    }

    println!("starting the namespaces for bulk TCP");
    match Bulk::start(&peers, &ferry_bin, dir).await {
        Ok(bulk) => {
            let time = Duration::from_secs(if options.quick { 1 } else { 5 });
            for round in 0..options.runs {
                println!("round {} of {} (bulk TCP)", round + 1, options.runs);
                for i in rotation(bulk::TARGETS.len(), round) {
                    let target = bulk::TARGETS[i];
                    match bulk.throughput(target, time).await {
                        Ok(bps) => outcome.samples.record(metric::BULK_GBPS, target, bps / 1e9),
                        Err(e) => outcome
                            .notes
                            .push(format!("bulk TCP over {target}, round {}: {e}", round + 1)),
                    }
                }
            }
        }
        Err(e) => outcome
            .notes
            .push(format!("bulk TCP was not measured: {e}")),
    }

    let results = out_dir.join("RESULTS.md");
    let png = out_dir.join("results.png");
    report::write(&outcome, &results)?;
    if let Err(e) = chart::draw(&outcome, &png) {
        outcome
            .notes
            .push(format!("the chart could not be drawn: {e}"));
        report::write(&outcome, &results)?;
    }
    println!("{}", report::summary(&outcome));
    println!("wrote {} and {}", results.display(), png.display());
    Ok(())
}

async fn loopback_round(
    o: &mut Outcome,
    lab: &mut Lab,
    peers: &Peers,
    round: usize,
    grpc_request: &Path,
) -> Result<()> {
    let t = o.timing;
    let order: Vec<&str> = rotation(lab::TARGETS.len(), round)
        .into_iter()
        .map(|i| lab::TARGETS[i])
        .collect();
    let http = |target: &str| {
        let kind = Kind::Http1 {
            host: lab::HTTP_SERVICE.to_string(),
        };
        (Lab::entry(target).http, kind)
    };

    // Throughput: 32 keep-alive connections, closed loop.
    for &target in &order {
        let (addr, kind) = http(target);
        let callers = connect_all(addr, &kind, CONNECTIONS).await?;
        let r = load::closed_loop(callers, t.warmup, t.measure).await;
        o.samples.record(metric::HTTP_RPS, target, r.per_second());
        o.samples.record(metric::ERRORS, target, r.errors as f64);
        if let Some(wrk) = &peers.wrk {
            // What the pair spends on each request: req/s on a shared 2-core machine also
            // reflects where the kernel puts the processes, CPU time does much less.
            let pair = lab.pair(target);
            let before = pair.map(pair_cpu_time).transpose()?;
            match external::wrk(wrk, addr, lab::HTTP_SERVICE, CONNECTIONS, t.measure).await {
                Ok(run) => {
                    o.samples
                        .record(metric::HTTP_RPS_WRK, target, run.per_second);
                    if let (Some(pair), Some(before)) = (pair, before) {
                        let used = pair_cpu_time(pair)?.saturating_sub(before);
                        let micros = used.as_secs_f64() * 1e6 / run.requests.max(1) as f64;
                        o.samples.record(metric::HTTP_CPU, target, micros);
                    }
                }
                Err(e) => o.notes.push(format!("wrk against {target}: {e}")),
            }
        }
    }

    // Latency under the same fixed load for every target: half what the slowest target served
    // in the first round, so that none of them is saturated.
    if o.open_rate == 0.0 {
        let slowest = lab::TARGETS
            .iter()
            .filter_map(|target| o.samples.median(metric::HTTP_RPS, target))
            .fold(f64::INFINITY, f64::min);
        o.open_rate = ((slowest * 0.5 / 100.0).floor() * 100.0).max(100.0);
    }
    for &target in &order {
        let (addr, kind) = http(target);
        let callers = connect_all(addr, &kind, CONNECTIONS).await?;
        let r = load::open_loop(callers, o.open_rate, t.warmup, t.measure).await;
        o.samples.record(metric::HTTP_P50, target, r.micros(0.5));
        o.samples.record(metric::HTTP_P99, target, r.micros(0.99));
        o.samples.record(metric::HTTP_P999, target, r.micros(0.999));
        o.samples.record(metric::ERRORS, target, r.errors as f64);
    }

    // One connection, one request at a time: the latency each hop adds.
    let mut p50 = Vec::new();
    for &target in &order {
        let (addr, kind) = http(target);
        let callers = connect_all(addr, &kind, 1).await?;
        let r = load::closed_loop(callers, t.warmup, t.measure).await;
        o.samples.record(metric::SEQ_P50, target, r.micros(0.5));
        o.samples.record(metric::SEQ_P99, target, r.micros(0.99));
        o.samples.record(metric::ERRORS, target, r.errors as f64);
        p50.push((target, r.micros(0.5)));
    }
    if let Some(&(_, direct)) = p50.iter().find(|(t, _)| *t == "direct") {
        for &(target, v) in p50.iter().filter(|(t, _)| *t != "direct") {
            o.samples.record(metric::SEQ_ADDED, target, v - direct);
        }
    }

    // gRPC unary: one HTTP/2 connection, 32 calls in flight.
    for &target in &order {
        let addr = Lab::entry(target).grpc;
        let callers = Caller::grpc_channel(addr, lab::GRPC_SERVICE, GRPC_STREAMS)
            .await
            .map_err(|e| Error::Command {
                what: format!("connecting to {target} for gRPC at {addr}"),
                detail: e.0,
            })?;
        let r = load::closed_loop(callers, t.warmup, t.measure).await;
        o.samples.record(metric::GRPC_RPS, target, r.per_second());
        o.samples.record(metric::GRPC_P50, target, r.micros(0.5));
        o.samples.record(metric::GRPC_P99, target, r.micros(0.99));
        o.samples.record(metric::ERRORS, target, r.errors as f64);
        if let Some(h2load) = &peers.h2load {
            match external::h2load_grpc(
                h2load,
                addr,
                lab::GRPC_SERVICE,
                GRPC_STREAMS,
                t.measure,
                grpc_request,
            )
            .await
            {
                Ok(rps) => o.samples.record(metric::GRPC_RPS_H2LOAD, target, rps),
                Err(e) => o.notes.push(format!("h2load against {target}: {e}")),
            }
        }
    }

    // Memory with 1,000 proxied connections open (proxies only: direct has no proxy).
    for &target in &order {
        let Some((a, b)) = lab.pair(target) else {
            continue;
        };
        let held = load::hold_connections(Lab::entry(target).tcp, HELD).await?;
        // Let the proxies settle (buffers allocated on first read) before reading /proc.
        tokio::time::sleep(Duration::from_secs(1)).await;
        o.samples
            .record(metric::RSS_HELD, target, usage::rss_mib(a)?);
        o.samples
            .record(metric::RSS_HELD_B, target, usage::rss_mib(b)?);
        drop(held);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// The CPU time both processes of a proxy pair have used so far.
fn pair_cpu_time((a, b): (u32, u32)) -> Result<Duration> {
    Ok(usage::cpu_time(a)? + usage::cpu_time(b)?)
}

fn record_rss(samples: &mut Samples, lab: &Lab, a_metric: &str, b_metric: &str) -> Result<()> {
    for target in lab::TARGETS {
        let Some((a, b)) = lab.pair(target) else {
            continue;
        };
        samples.record(a_metric, target, usage::rss_mib(a)?);
        samples.record(b_metric, target, usage::rss_mib(b)?);
    }
    Ok(())
}

async fn versions(peers: &Peers) -> Vec<(String, String)> {
    let mut v = vec![
        ("ferry".to_string(), commit().await),
        (
            "haproxy".to_string(),
            peers::version(&peers.haproxy, "-v").await,
        ),
        (
            "nginx".to_string(),
            peers::version(&peers.nginx, "-v").await,
        ),
        (
            "nebula".to_string(),
            peers::version(&peers.nebula, "-version").await,
        ),
        (
            "iperf3".to_string(),
            peers::version(&peers.iperf3, "--version").await,
        ),
    ];
    if let Some(wrk) = &peers.wrk {
        v.push(("wrk".into(), peers::version(wrk, "-v").await));
    }
    if let Some(h2load) = &peers.h2load {
        v.push(("h2load".into(), peers::version(h2load, "--version").await));
    }
    v
}

/// The commit the Ferry binary was built from, as far as the work tree says: with local
/// changes only when Ferry's own crates differ from it (a harness change does not change Ferry).
async fn commit() -> String {
    let root = ferry::workspace_root().display().to_string();
    let mut head = std::process::Command::new("git");
    head.args(["-C", &root, "rev-parse", "--short", "HEAD"]);
    let mut status = std::process::Command::new("git");
    status.args([
        "-C",
        &root,
        "status",
        "--porcelain",
        "--",
        "tunnel",
        "proxy",
        "control",
        "Cargo.lock",
    ]);
    let output = crate::process::output;
    match (
        output("git rev-parse", head).await,
        output("git status", status).await,
    ) {
        (Ok(head), Ok(status)) if status.trim().is_empty() => format!("commit {}", head.trim()),
        (Ok(head), Ok(_)) => format!("commit {} with local changes to Ferry", head.trim()),
        _ => "commit unknown".into(),
    }
}

/// A scratch directory for configs, keys and logs, removed at the end.
struct WorkDir(PathBuf);

impl WorkDir {
    fn create() -> Result<WorkDir> {
        let dir = std::env::temp_dir().join(format!("ferry-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // Kept when asked for, to read the logs of a run that went wrong.
        if std::env::var_os("FERRY_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
