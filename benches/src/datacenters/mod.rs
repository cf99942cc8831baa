//! The datacenters scenario: issue 4's goals, measured on a mesh a user would run.
//!
//! Three datacenters on loopback, each with two gateways and a sidecar fronting a `greeter`;
//! dc1 also has `app`, the sidecar whose HTTP outbound the calls go through. Every trial
//! measures, from the moment something happens to the moment a user of the mesh sees it:
//!
//! - **failover**: dc1's greeter killed → the first call through app answered by another
//!   datacenter (and how many calls failed in between);
//! - **failback**: the greeter back → the first call answered by dc1 again;
//! - **node failover**: the sidecar in front of dc1's greeter killed (`kill -9`) → the first
//!   call answered elsewhere, which waits for the tunnel to find the node dead;
//! - **convergence**: a service added to dc3's sidecar (config reload) → a healthy route to it
//!   in app's table, two gateways and a WAN hop away; removed → the route gone;
//! - **join**: a new sidecar in dc1 started → it has a route to every datacenter's greeter.
//!
//! Health checks run at Ferry's default interval (1 s), as the goals say. There is no peer to
//! run beside: go-micro's network, which Ferry replaces, gossiped routes every 10 s.

mod mesh;

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::error::Result;
use crate::stats::median;

use mesh::Mesh;

/// How often the trials look: well under the figures they measure.
const POLL: Duration = Duration::from_millis(2);

/// What the report shows: each measurement's samples, in ms (calls: a count).
#[derive(Default)]
pub(crate) struct Figures {
    pub failover_ms: Vec<f64>,
    pub failed_calls: Vec<f64>,
    pub failback_ms: Vec<f64>,
    pub node_failover_ms: Vec<f64>,
    pub node_failed_calls: Vec<f64>,
    pub announce_ms: Vec<f64>,
    pub withdraw_ms: Vec<f64>,
    pub join_ms: Vec<f64>,
    pub notes: Vec<String>,
}

/// Runs `trials` of each measurement on a fresh mesh.
pub(crate) async fn measure(ferry_bin: &Path, dir: &Path, trials: usize) -> Result<Figures> {
    let mut mesh = Mesh::start(ferry_bin, dir).await?;
    let mut figures = Figures::default();
    for trial in 0..trials {
        println!("trial {} of {trials} (datacenters)", trial + 1);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        match mesh.failover_trial().await {
            Ok((failover, failed, failback)) => {
                figures.failover_ms.push(ms(failover));
                figures.failed_calls.push(failed as f64);
                figures.failback_ms.push(ms(failback));
            }
            Err(e) => figures
                .notes
                .push(format!("failover trial {}: {e}", trial + 1)),
        }
        match mesh.node_failover_trial().await {
            Ok((failover, failed)) => {
                figures.node_failover_ms.push(ms(failover));
                figures.node_failed_calls.push(failed as f64);
            }
            Err(e) => figures
                .notes
                .push(format!("node failover trial {}: {e}", trial + 1)),
        }
        match mesh.convergence_trial(trial).await {
            Ok((announced, withdrawn)) => {
                figures.announce_ms.push(ms(announced));
                figures.withdraw_ms.push(ms(withdrawn));
            }
            Err(e) => figures
                .notes
                .push(format!("convergence trial {}: {e}", trial + 1)),
        }
        match mesh.join_trial().await {
            Ok(joined) => figures.join_ms.push(ms(joined)),
            Err(e) => figures.notes.push(format!("join trial {}: {e}", trial + 1)),
        }
        mesh.check_running()?;
    }
    Ok(figures)
}

/// The section of RESULTS.md: median, range and goal of each measurement.
pub(crate) fn section(f: &Figures, trials: usize) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Datacenters\n\nThree datacenters on loopback, two gateways each, health checks every 1 s \
         (Ferry's default); {trials} trials. Times run from the event to the moment a user of the \
         mesh sees its effect, polled every {} ms.\n",
        POLL.as_millis()
    );
    md.push_str("| measurement | median | min | max | trials | goal |\n| --- | ---: | ---: | ---: | ---: | --- |\n");
    let rows: [(&str, &Vec<f64>, &str, &str); 8] = [
        (
            "failover: dc1's greeter killed → first call answered by another datacenter",
            &f.failover_ms,
            "ms",
            "≤ 1,000 ms",
        ),
        ("… calls that failed meanwhile", &f.failed_calls, "", "—"),
        (
            "failback: greeter restarted → first call answered by dc1",
            &f.failback_ms,
            "ms",
            "—",
        ),
        (
            "node failover: greeter's sidecar killed (-9) → first call answered elsewhere",
            &f.node_failover_ms,
            "ms",
            "—",
        ),
        (
            "… calls that failed meanwhile",
            &f.node_failed_calls,
            "",
            "—",
        ),
        (
            "convergence: service added in dc3 → healthy route in dc1's app",
            &f.announce_ms,
            "ms",
            "≤ 1,000 ms",
        ),
        (
            "convergence: service removed in dc3 → route gone in dc1's app",
            &f.withdraw_ms,
            "ms",
            "≤ 1,000 ms",
        ),
        (
            "join: new dc1 sidecar started → routes to all three datacenters",
            &f.join_ms,
            "ms",
            "≤ 1,000 ms",
        ),
    ];
    for (label, values, unit, goal) in rows {
        let fmt =
            |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.1} {unit}").trim().to_owned());
        let min = values.iter().copied().reduce(f64::min);
        let max = values.iter().copied().reduce(f64::max);
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {goal} |",
            fmt(median(values)),
            fmt(min),
            fmt(max),
            values.len()
        );
    }
    md.push('\n');
    md
}
