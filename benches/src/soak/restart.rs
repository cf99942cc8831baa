//! Restarting the service's node, as an orchestrator does (SIGTERM: it drains) and as a crash
//! does (SIGKILL), in turn; and which failures a restart explains.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::ferry::{self, NodeSpec};
use crate::process::{output, wait_for_port, Process};

/// How a restart stops the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    Term,
    Kill,
}

impl Stop {
    /// The signal's name, for the report.
    pub(crate) fn signal(self) -> &'static str {
        match self {
            Stop::Term => "SIGTERM",
            Stop::Kill => "SIGKILL",
        }
    }

    /// Restart `n` (from 1) stops with SIGTERM when odd, with SIGKILL when even.
    pub(crate) fn nth(n: usize) -> Stop {
        if n % 2 == 1 {
            Stop::Term
        } else {
            Stop::Kill
        }
    }
}

/// How long a drained node may take to exit: Ferry's drain ends within 12 s of the signal.
const TERM_PATIENCE: Duration = Duration::from_secs(20);
/// How long the application's node may keep the old node's routes after it is gone.
const FORGET_PATIENCE: Duration = Duration::from_secs(10);
/// How often a wait here looks again.
const POLL: Duration = Duration::from_millis(100);
/// After the routes are back, how long failures still count as the restart's: a call that
/// set off just before may only then end.
pub(crate) const GRACE: Duration = Duration::from_secs(2);
/// How many times a route's 20-second wait may run out before the soak gives up.
const ROUTE_TRIES: usize = 3;

/// When failures are a restart's, from the start of the soak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    /// The stop's signal.
    pub from: Duration,
    /// Every route back at the application's node, plus [`GRACE`].
    pub to: Duration,
}

/// Whether a call under way from `from` to `to` overlaps one of `windows`.
pub(crate) fn explained(from: Duration, to: Duration, windows: &[Window]) -> bool {
    windows.iter().any(|w| from <= w.to && to >= w.from)
}

/// One restart as it went.
pub(crate) struct Restart {
    pub stop: Stop,
    pub window: Window,
    /// From the signal to the process gone.
    pub stopped_in: Duration,
    /// From the signal to every route back at the application's node.
    pub back_in: Duration,
}

/// The nodes a restart touches.
pub(crate) struct Pair<'a> {
    pub ferry_bin: &'a Path,
    pub dir: &'a Path,
    /// The service's node, started again from this with the same key and config.
    pub b: &'a NodeSpec,
    /// The application's node: its routes say when the restart is over.
    pub a: &'a mut Process,
    pub a_admin: SocketAddr,
    pub services: &'a [&'a str],
}

/// Stops `old` with `stop`, starts the service's node again, and waits for the application's
/// node to route to every service again. Returns the new process; what went unexpectedly
/// (a drain that did not end, routes that lingered) goes into `notes`.
pub(crate) async fn restart(
    pair: &mut Pair<'_>,
    old: Process,
    stop: Stop,
    soak_start: Instant,
    notes: &mut Vec<String>,
) -> Result<(Process, Restart)> {
    let signalled = Instant::now();
    let from = signalled.duration_since(soak_start);
    match stop {
        // Dropping the handle kills the process and reaps it.
        Stop::Kill => drop(old),
        Stop::Term => terminate(old, notes).await?,
    }
    let stopped_in = signalled.elapsed();
    // The old routes must be gone first, or they would count as back at once.
    let forgotten = Instant::now();
    while any_route(pair).await {
        pair.a.check_running()?;
        if forgotten.elapsed() > FORGET_PATIENCE {
            notes.push(format!(
                "{:.0} s: the application's node still routed to the stopped node after {} s",
                from.as_secs_f64(),
                FORGET_PATIENCE.as_secs()
            ));
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let mut node = ferry::start(pair.ferry_bin, pair.b, pair.dir, None)?;
    wait_for_port(pair.b.admin, &mut node, Duration::from_secs(10)).await?;
    for service in pair.services {
        wait_for_route(pair, &mut node, service, from, notes).await?;
    }
    let back_in = signalled.elapsed();
    let window = Window {
        from,
        to: from + back_in + GRACE,
    };
    let restart = Restart {
        stop,
        window,
        stopped_in,
        back_in,
    };
    Ok((node, restart))
}

/// SIGTERM, then waits for the node to drain and exit (killed after [`TERM_PATIENCE`]).
async fn terminate(mut node: Process, notes: &mut Vec<String>) -> Result<()> {
    let mut kill = Command::new("kill");
    kill.args(["-TERM", &node.pid().to_string()]);
    output("kill -TERM", kill).await?;
    let signalled = Instant::now();
    loop {
        match node.check_running() {
            Ok(()) if signalled.elapsed() > TERM_PATIENCE => {
                notes.push(format!(
                    "the service's node had not exited {} s after SIGTERM; it was killed",
                    TERM_PATIENCE.as_secs()
                ));
                return Ok(());
            }
            Ok(()) => tokio::time::sleep(POLL).await,
            Err(Error::Exited { status, .. }) => {
                if !status.contains("status: 0") {
                    notes.push(format!(
                        "the service's node exited after SIGTERM with {status}"
                    ));
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether the application's node still has a healthy route to any of the services.
async fn any_route(pair: &Pair<'_>) -> bool {
    for service in pair.services {
        if ferry::has_route(pair.ferry_bin, pair.a_admin, None, service).await {
            return true;
        }
    }
    false
}

/// [`ferry::wait_for_route`], tried again when it runs out (noted), up to [`ROUTE_TRIES`]
/// times; the new service node dying ends the soak.
async fn wait_for_route(
    pair: &mut Pair<'_>,
    node: &mut Process,
    service: &str,
    from: Duration,
    notes: &mut Vec<String>,
) -> Result<()> {
    let mut tries = 1;
    loop {
        node.check_running()?;
        match ferry::wait_for_route(pair.ferry_bin, pair.a, pair.a_admin, None, service).await {
            Err(Error::Timeout { .. }) if tries < ROUTE_TRIES => {
                notes.push(format!(
                    "{:.0} s: the route to {service} was not back within {tries}×20 s of the restart",
                    from.as_secs_f64()
                ));
                tries += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn a_failure_overlapping_a_window_is_explained() {
        let windows = [
            Window {
                from: s(60),
                to: s(64),
            },
            Window {
                from: s(120),
                to: s(123),
            },
        ];
        // Started before the stop, failed inside; inside; ended right at the window's end.
        assert!(explained(s(59), s(61), &windows));
        assert!(explained(s(121), s(121), &windows));
        assert!(explained(s(64), s(64), &windows));
        // Before, between and after the windows.
        assert!(!explained(s(10), s(11), &windows));
        assert!(!explained(s(65), s(70), &windows));
        assert!(!explained(s(124), s(130), &windows));
        assert!(!explained(s(1), s(2), &[]));
    }

    #[test]
    fn restarts_alternate_term_and_kill() {
        let stops: Vec<Stop> = (1..=4).map(Stop::nth).collect();
        assert_eq!(stops, [Stop::Term, Stop::Kill, Stop::Term, Stop::Kill]);
    }
}
