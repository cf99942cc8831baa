//! wrk and h2load as a cross-check of the harness's own load generator: if their figures and
//! ours disagree much, one of the two is measuring itself rather than the target.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::process::output;
use crate::tool_output::{h2load_requests_per_second, wrk_requests, wrk_requests_per_second};

/// What one wrk run measured.
pub(crate) struct WrkRun {
    pub per_second: f64,
    /// Every request it made, for what the run cost per request.
    pub requests: u64,
}

/// wrk, closed loop over `connections` HTTP/1.1 keep-alive connections.
pub(crate) async fn wrk(
    wrk: &Path,
    addr: SocketAddr,
    host: &str,
    connections: usize,
    time: Duration,
) -> Result<WrkRun> {
    let mut c = Command::new(wrk);
    c.arg("-t2")
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", time.as_secs().max(1)))
        .args(["-H", &format!("Host: {host}")])
        .arg(format!("http://{addr}/"));
    let out = output("wrk", c).await?;
    // wrk counts non-2xx answers apart; a target that fails must not look fast.
    if out.contains("Non-2xx or 3xx responses") {
        return Err(Error::Output {
            what: "wrk".into(),
            detail: "some responses were errors".into(),
        });
    }
    match (wrk_requests_per_second(&out), wrk_requests(&out)) {
        (Some(per_second), Some(requests)) => Ok(WrkRun {
            per_second,
            requests,
        }),
        _ => Err(Error::Output {
            what: "wrk".into(),
            detail: out.lines().take(3).collect::<Vec<_>>().join(" / "),
        }),
    }
}

/// h2load, gRPC unary calls over one h2c connection with `streams` in flight; calls per second.
pub(crate) async fn h2load_grpc(
    h2load: &Path,
    addr: SocketAddr,
    authority: &str,
    streams: usize,
    time: Duration,
    request_file: &Path,
) -> Result<f64> {
    let mut c = Command::new(h2load);
    c.args(["-c", "1", "-t", "1", "-m", &streams.to_string()])
        .args(["-D", &time.as_secs().max(1).to_string()])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .args(["-H", &format!(":authority: {authority}")])
        .arg("-d")
        .arg(request_file)
        .arg(format!("http://{addr}/ferry.bench.Echo/Say"));
    let out = output("h2load", c).await?;
    h2load_requests_per_second(&out).ok_or_else(|| Error::Output {
        what: "h2load".into(),
        detail: out
            .lines()
            .filter(|l| l.contains("requests:") || l.contains("finished"))
            .collect::<Vec<_>>()
            .join(" / "),
    })
}

/// The framed gRPC request h2load posts.
pub(crate) fn write_grpc_request(path: &Path) -> Result<()> {
    std::fs::write(path, [0, 0, 0, 0, 7, 0x0a, 5, b'f', b'e', b'r', b'r', b'y'])
        .map_err(Error::io(format!("writing {}", path.display())))
}
