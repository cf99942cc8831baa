//! Clients nobody on this team wrote, driven as an application would: grpcio, websockets,
//! redis-cli. Each run is bounded in time so a hang fails the test.

use super::{command_in, python_script, require_tool, run, without_proxy};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

/// How a gRPC call made by `tests/python/grpc_client.py` ended.
#[derive(Debug)]
pub(crate) struct GrpcOutcome {
    /// `OK`, or the grpc status code name (`UNAVAILABLE`, `DEADLINE_EXCEEDED`, ...).
    pub code: String,
    /// The replies received, one per message, in order.
    pub replies: Vec<String>,
    pub stderr: String,
}

/// Calls `greeter.Greeter/METHOD` through `target` with `:authority` = `authority`, a 10 s
/// client deadline, one request message per item of `messages` (see grpc_client.py).
pub(crate) fn grpc_call(
    target: SocketAddr,
    authority: &str,
    method: &str,
    messages: &[&str],
) -> GrpcOutcome {
    grpc_call_in(None, target, authority, method, messages)
}

/// [`grpc_call`] inside the network namespace `netns` when one is given.
pub(crate) fn grpc_call_in(
    netns: Option<&str>,
    target: SocketAddr,
    authority: &str,
    method: &str,
    messages: &[&str],
) -> GrpcOutcome {
    require_tool("python3");
    let ran = run(
        without_proxy(&mut command_in(netns, "python3"))
            .arg(python_script("grpc_client.py"))
            .arg(target.to_string())
            .arg(method)
            .args(["--authority", authority, "--timeout", "10"])
            .args(messages),
        Duration::from_secs(30),
    );
    let lines: Vec<String> = ran.stdout.lines().map(str::to_owned).collect();
    match ran.code {
        Some(0) => GrpcOutcome {
            code: "OK".to_owned(),
            replies: lines,
            stderr: ran.stderr,
        },
        Some(2) => GrpcOutcome {
            code: lines
                .iter()
                .find_map(|l| l.strip_prefix("STATUS "))
                .unwrap_or("UNKNOWN")
                .to_owned(),
            replies: lines
                .iter()
                .filter(|l| !l.starts_with("STATUS "))
                .cloned()
                .collect(),
            stderr: ran.stderr,
        },
        _ => panic!("grpc_client.py broke ({:?}): {}", ran.code, ran.stderr),
    }
}

/// Opens a WebSocket to `service` through the HTTP outbound, sends each message and waits for
/// its reply; `Ok(replies)` or `Err` with what went wrong.
pub(crate) fn ws_chat(
    outbound: SocketAddr,
    service: &str,
    messages: &[&str],
) -> Result<Vec<String>, String> {
    require_tool("python3");
    let ran = run(
        without_proxy(&mut Command::new("python3"))
            .arg(python_script("ws_client.py"))
            .arg(outbound.to_string())
            .arg(service)
            .args(messages),
        Duration::from_secs(30),
    );
    if ran.success() {
        Ok(ran.stdout.lines().map(str::to_owned).collect())
    } else {
        Err(format!(
            "ws_client.py exit {:?}: {}{}",
            ran.code, ran.stdout, ran.stderr
        ))
    }
}

/// `redis-cli -h HOST -p PORT ARGS...`: its trimmed output, or `Err` if it failed.
pub(crate) fn redis_cli(address: SocketAddr, args: &[&str]) -> Result<String, String> {
    redis_cli_in(None, address, args)
}

/// [`redis_cli`] inside the network namespace `netns` when one is given.
pub(crate) fn redis_cli_in(
    netns: Option<&str>,
    address: SocketAddr,
    args: &[&str],
) -> Result<String, String> {
    require_tool("redis-cli");
    let ran = run(
        command_in(netns, "redis-cli")
            .args(["-h", &address.ip().to_string()])
            .args(["-p", &address.port().to_string()])
            .args(args),
        Duration::from_secs(10),
    );
    let out = ran.stdout.trim().to_owned();
    // redis-cli prints connection and server errors but may still exit 0.
    if ran.success() && !out.starts_with("ERR") && !out.contains("Could not connect") {
        Ok(out)
    } else {
        Err(format!(
            "redis-cli {args:?} exit {:?}: {out} {}",
            ran.code,
            ran.stderr.trim()
        ))
    }
}
