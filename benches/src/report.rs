//! benches/RESULTS.md: the table of medians and ratios, the machine, the command.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Error, Result};
use crate::machine::Machine;
use crate::run::{metric, Outcome, CONNECTIONS, GRPC_STREAMS, HELD};
use crate::stats::ratio;

/// Which targets a row compares.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Group {
    /// direct, Ferry, HAProxy on loopback.
    Loopback,
    /// bare veth, Ferry, Nebula between namespaces.
    Bulk,
    /// Ferry and HAProxy only: there is no process to measure for "direct".
    Proxies,
}

pub(crate) struct Row {
    pub label: String,
    pub metric: &'static str,
    pub unit: &'static str,
    pub decimals: usize,
    pub group: Group,
}

fn row(
    label: impl Into<String>,
    metric: &'static str,
    unit: &'static str,
    decimals: usize,
    group: Group,
) -> Row {
    Row {
        label: label.into(),
        metric,
        unit,
        decimals,
        group,
    }
}

pub(crate) fn rows(o: &Outcome) -> Vec<Row> {
    use Group::*;
    let rate = o.open_rate;
    vec![
        row(
            format!("HTTP/1.1, {CONNECTIONS} keep-alive connections, closed loop: throughput"),
            metric::HTTP_RPS,
            "req/s",
            0,
            Loopback,
        ),
        row(
            "… the same measured by wrk (cross-check)",
            metric::HTTP_RPS_WRK,
            "req/s",
            0,
            Loopback,
        ),
        row(
            "… CPU time of the proxy pair per request, under wrk",
            metric::HTTP_CPU,
            "µs",
            1,
            Proxies,
        ),
        row(
            format!("HTTP/1.1, {CONNECTIONS} connections, fixed {rate:.0} req/s: p50"),
            metric::HTTP_P50,
            "µs",
            0,
            Loopback,
        ),
        row(
            format!("HTTP/1.1, {CONNECTIONS} connections, fixed {rate:.0} req/s: p99"),
            metric::HTTP_P99,
            "µs",
            0,
            Loopback,
        ),
        row(
            format!("HTTP/1.1, {CONNECTIONS} connections, fixed {rate:.0} req/s: p99.9"),
            metric::HTTP_P999,
            "µs",
            0,
            Loopback,
        ),
        row(
            "HTTP/1.1, one connection, sequential: p50",
            metric::SEQ_P50,
            "µs",
            0,
            Loopback,
        ),
        row(
            "HTTP/1.1, one connection, sequential: p99",
            metric::SEQ_P99,
            "µs",
            0,
            Loopback,
        ),
        row(
            "… p50 latency added over direct",
            metric::SEQ_ADDED,
            "µs",
            0,
            Proxies,
        ),
        row(
            format!("gRPC unary, one HTTP/2 connection, {GRPC_STREAMS} in flight: throughput"),
            metric::GRPC_RPS,
            "calls/s",
            0,
            Loopback,
        ),
        row(
            "… the same measured by h2load (cross-check)",
            metric::GRPC_RPS_H2LOAD,
            "calls/s",
            0,
            Loopback,
        ),
        row("gRPC unary: p50", metric::GRPC_P50, "µs", 0, Loopback),
        row("gRPC unary: p99", metric::GRPC_P99, "µs", 0, Loopback),
        row(
            "Bulk TCP, one iperf3 stream between namespaces",
            metric::BULK_GBPS,
            "Gbit/s",
            2,
            Bulk,
        ),
        row(
            "Resident memory, application-side node, idle",
            metric::RSS_IDLE,
            "MiB",
            1,
            Proxies,
        ),
        row(
            "Resident memory, service-side node, idle",
            metric::RSS_IDLE_B,
            "MiB",
            1,
            Proxies,
        ),
        row(
            format!("Resident memory, application-side node, {HELD} open TCP connections"),
            metric::RSS_HELD,
            "MiB",
            1,
            Proxies,
        ),
        row(
            format!("Resident memory, service-side node, {HELD} open TCP connections"),
            metric::RSS_HELD_B,
            "MiB",
            1,
            Proxies,
        ),
    ]
}

fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("{v:.decimals$}"))
}

fn times(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("{v:.2}×"))
}

/// The table of medians and ratios, in Markdown.
pub(crate) fn table(o: &Outcome) -> String {
    let s = &o.samples;
    let mut t = String::from(
        "| measurement | unit | direct / bare veth | Ferry | HAProxy pair | HAProxy h2 pair | Nebula | Ferry/HAProxy | Ferry/HAProxy h2 | Ferry/direct | Ferry/Nebula |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in rows(o) {
        let m = |target: &str| s.median(r.metric, target);
        let ferry = m("ferry");
        let (base, haproxy, nebula) = match r.group {
            Group::Loopback => (m("direct"), [m("haproxy"), m("haproxy-h2")], None),
            Group::Bulk => (m("veth"), [None, None], m("nebula")),
            Group::Proxies => (None, [m("haproxy"), m("haproxy-h2")], None),
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            r.unit,
            cell(base, r.decimals),
            cell(ferry, r.decimals),
            cell(haproxy[0], r.decimals),
            cell(haproxy[1], r.decimals),
            cell(nebula, r.decimals),
            times(ratio(ferry, haproxy[0])),
            times(ratio(ferry, haproxy[1])),
            times(ratio(ferry, base)),
            times(ratio(ferry, nebula)),
        );
    }
    t
}

/// What the harness prints at the end.
pub(crate) fn summary(o: &Outcome) -> String {
    let mut s = table(o);
    for note in &o.notes {
        let _ = writeln!(s, "note: {note}");
    }
    s
}

pub(crate) fn write(o: &Outcome, path: &Path) -> Result<()> {
    let machine = Machine::read();
    let mut md = String::new();
    let command = if o.options.quick {
        format!(
            "cargo run --release -p ferry-benches --bin harness -- --quick --runs {}",
            o.options.runs
        )
    } else {
        format!(
            "cargo run --release -p ferry-benches --bin harness -- --runs {}",
            o.options.runs
        )
    };
    let _ = writeln!(md, "# Ferry beside its peers\n");
    let _ = writeln!(
        md,
        "Written by the benchmark harness on {} (UTC). Every figure is the **median of {} round(s)**; \
         in each round every target ran every scenario, the targets taking turns in a rotated order \
         so that drift hits them all alike. Each measurement: {:.1} s warm-up, then {:.1} s measured \
         (bulk TCP: {} s per iperf3 run).\n",
        utc_now(),
        o.options.runs,
        o.timing.warmup.as_secs_f64(),
        o.timing.measure.as_secs_f64(),
        if o.options.quick { 1 } else { 5 },
    );
    let _ = writeln!(md, "![medians as a chart](results.png)\n");
    let _ = writeln!(md, "## Reproduce\n\n```sh\n{command}\n```\n\n(as root: it installs missing peers with apt-get and makes network namespaces)\n");
    let _ = writeln!(md, "## Results\n\n{}", table(o));
    let _ = writeln!(
        md,
        "Ratios are Ferry's median over the other's. For throughput, above 1 is better for Ferry; \
         for latency, memory and CPU time, below 1 is. \"Ferry/direct\" for bulk TCP is Ferry over the bare veth.\n"
    );
    md.push_str(&micro_section());
    let _ = writeln!(md, "## The machine\n");
    let _ = writeln!(
        md,
        "- CPU: {} × {}\n- memory: {:.1} GiB\n- kernel: Linux {}",
        machine.cpus, machine.model, machine.memory_gib, machine.kernel
    );
    for (name, version) in &o.versions {
        let _ = writeln!(md, "- {name}: {version}");
    }
    let _ = writeln!(
        md,
        "\n{}",
        METHOD.replace("{rate}", &format!("{:.0}", o.open_rate))
    );
    if !o.notes.is_empty() {
        let _ = writeln!(md, "## What did not go to plan in this run\n");
        for note in &o.notes {
            let _ = writeln!(md, "- {note}");
        }
        let _ = writeln!(md);
    }
    let errors: Vec<String> = crate::lab::TARGETS
        .iter()
        .filter_map(|t| {
            let n = o.samples.median(metric::ERRORS, t)?;
            (n > 0.0).then(|| format!("{t}: median {n:.0} failed requests per measurement"))
        })
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(
            md,
            "Failed requests (not counted in throughput): {}\n",
            errors.join("; ")
        );
    }
    // The parts' sections an earlier run put in the page stay in it.
    if let Ok(old) = std::fs::read_to_string(path) {
        md = crate::parts::carry_over(&old, &md);
    }
    std::fs::write(path, md).map_err(Error::io(format!("writing {}", path.display())))
}

/// The criterion figures of the last `cargo bench`, if there was one.
fn micro_section() -> String {
    let (results, newest) = crate::micro::read(&crate::micro::criterion_dir());
    let mut md = String::from("## Micro-benchmarks\n\n");
    if results.is_empty() {
        md.push_str("No criterion results found: run `cargo bench -p ferry-benches` before the harness to include them.\n\n");
        return md;
    }
    let when = newest.map_or_else(|| "an unknown time".to_string(), utc);
    let _ = writeln!(
        md,
        "From the last `cargo bench -p ferry-benches` ({when} UTC), criterion's median per iteration, on the same machine:\n\n\
         | benchmark | median | throughput |\n| --- | ---: | ---: |"
    );
    for r in results {
        let throughput = r.bytes.map_or_else(String::new, |b| {
            format!("{:.2} Gbit/s", b as f64 * 8.0 / r.median_ns)
        });
        let _ = writeln!(
            md,
            "| `{}` | {} | {throughput} |",
            r.id,
            crate::micro::format_ns(r.median_ns)
        );
    }
    md.push('\n');
    md
}

const METHOD: &str = "## How it measures

- **direct**: the load generator talks to the backend itself. **Ferry**: application → Ferry A's
  outbound listener → QUIC tunnel → Ferry B → backend; two `ferry run` processes on 127.0.66.x,
  keys from `ferry keygen`. **HAProxy pair**: HAProxy A (plain HTTP, h2c or TCP in) → TLS 1.3 →
  HAProxy B → backend, the sidecar pair a user would build without a mesh; its hop carries
  HTTP/1.1 as HTTP/1.1. **HAProxy h2 pair**: the same, but its hop carries HTTP/1.1 over HTTP/2
  too, with `http-reuse always` (calls of many connections share few TLS connections, as
  Ferry's tunnel does) and one thread per process (`nbthread 1`, as Ferry runs).
- Backends: nginx (one worker) answering a 35-byte body; a gRPC server inside the harness (h2c,
  one framed message and `grpc-status: 0`); a TCP echo server for the held connections.
- Load: the harness's own generator (hyper; latencies in an HDR histogram). *Closed loop* for
  throughput: each connection sends as soon as its last answer arrived. *Open loop* for the
  latency percentiles: requests fall due at a fixed {rate} req/s (half what the slowest target
  served in round one) whatever the target does, and a request delayed because its connection
  was still waiting on the target is timed from when it fell due, so stalls are not hidden
  (coordinated omission). wrk and h2load rerun the throughput scenarios as a cross-check.
- Bulk TCP: two network namespaces joined by a veth pair (10.99.0.0/25; Nebula's overlay on
  10.99.0.128/25), one iperf3 stream from the first to the second: over the bare veth; through
  Ferry (iperf3 → Ferry's TCP outbound → tunnel → Ferry → iperf3 on the far loopback); over
  Nebula (a static host map, no lighthouse, tun devices).
- Memory: VmRSS from /proc of each node of a pair, idle right after start (before any traffic),
  and with 1,000 TCP connections open through the pair, each checked end to end with an echo.

## Limits of these figures

- The machine has 2 cores, shared with other work: the load generator, both proxies of a pair
  and the backend all run on them at once. Absolute figures are far below what each would do
  on its own cores; the ratios, taken under the same conditions in the same run, are the point.
- The load generator competes for the same two cores. Against a fast target (direct above
  all) it is itself the bottleneck, which is why wrk and h2load, leaner clients, report more
  there: \"Ferry/direct\" understates how much slower than direct Ferry is, while the proxies'
  ratios to each other are less affected.
- Loopback has no real latency, loss or bandwidth limit: this compares the CPU cost of each
  path, not behaviour over a WAN.
- The tunnel is QUIC whose handshake is Noise IK; the handshake is not on these paths (one per
  pair), packet protection (AES-GCM) is.

## The other parts

Each part of the harness writes its own file beside this one (`--only PART`, or all of them in
a full run), with the notes of its run, and puts its section above: the datacenters and failover in [`DATACENTERS.md`](DATACENTERS.md), publish and
subscribe beside NATS in [`BROKER.md`](BROKER.md), certificates and authorization in
[`IDENTITY.md`](IDENTITY.md), interception in [`INTERCEPT.md`](INTERCEPT.md), liveness over a
lossy WAN in [`LIVENESS.md`](LIVENESS.md), 10,000 held connections in
[`CONNECTIONS.md`](CONNECTIONS.md), and the 10-minute soak with restarts in
[`SOAK.md`](SOAK.md).
";

pub(crate) fn utc_now() -> String {
    utc(std::time::SystemTime::now())
}

/// `YYYY-MM-DD HH:MM`, without a date crate (civil-from-days, H. Hinnant's algorithm).
fn utc(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_dates() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(utc(t), "2023-11-14 22:13");
        assert_eq!(utc(std::time::UNIX_EPOCH), "1970-01-01 00:00");
    }
}
