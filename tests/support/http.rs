//! HTTP as a user sends it: the real `curl` for normal requests, raw bytes over a TcpStream only
//! for input no well-behaved client would send.

use super::{command_in, require_tool, run, without_proxy, Ran};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// One HTTP response as curl saw it (the last one, after any 1xx or CONNECT answers).
#[derive(Debug, Clone)]
pub(crate) struct Response {
    /// `1.1` or `2`, from the status line.
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first value of a header, by case-insensitive name.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Runs `curl -sS -D - --max-time 20 ARGS` (no proxy from the environment) and returns how it
/// ended; `Ran::response` reads the response out of it.
pub(crate) fn curl_ran(args: &[&str]) -> Ran {
    curl_ran_in(None, args)
}

/// [`curl_ran`] inside the network namespace `netns` when one is given.
pub(crate) fn curl_ran_in(netns: Option<&str>, args: &[&str]) -> Ran {
    require_tool("curl");
    run(
        without_proxy(
            command_in(netns, "curl")
                .args(["-sS", "-D", "-", "--max-time", "20"])
                .args(args),
        ),
        Duration::from_secs(30),
    )
}

/// Runs curl like [`curl_ran`] and panics unless it got a whole response.
pub(crate) fn curl(args: &[&str]) -> Response {
    curl_in(None, args)
}

/// [`curl`] inside the network namespace `netns` when one is given.
pub(crate) fn curl_in(netns: Option<&str>, args: &[&str]) -> Response {
    curl_ran_in(netns, args)
        .response()
        .unwrap_or_else(|e| panic!("curl {args:?} (netns {netns:?}): {e}"))
}

/// `GET http://OUTBOUND/PATH` with `Host: HOST`; `Err` when curl gets no whole response.
pub(crate) fn get(outbound: SocketAddr, host: &str, path: &str) -> Result<Response, String> {
    get_in(None, outbound, host, path)
}

/// [`get`] inside the network namespace `netns` when one is given.
pub(crate) fn get_in(
    netns: Option<&str>,
    outbound: SocketAddr,
    host: &str,
    path: &str,
) -> Result<Response, String> {
    let url = format!("http://{outbound}{path}");
    curl_ran_in(netns, &[&url, "-H", &format!("Host: {host}")]).response()
}

impl Ran {
    /// The response in curl's `-D -` output; `Err` when curl failed.
    pub(crate) fn response(&self) -> Result<Response, String> {
        if !self.success() {
            return Err(format!(
                "curl exit {:?}{}: {}",
                self.code,
                if self.timed_out { " (timed out)" } else { "" },
                self.stderr.trim()
            ));
        }
        parse_response(&self.stdout)
    }
}

/// Splits curl's `-D -` output: header blocks (interim 1xx, a proxy's CONNECT answer, then the
/// final response), then the body.
fn parse_response(output: &str) -> Result<Response, String> {
    let mut rest = output;
    let mut last_head = None;
    while rest.starts_with("HTTP/") {
        let end = rest
            .find("\r\n\r\n")
            .ok_or_else(|| format!("unterminated headers in curl output: {output:?}"))?;
        last_head = Some(&rest[..end]);
        rest = &rest[end + 4..];
    }
    let head = last_head.ok_or_else(|| format!("no HTTP status in curl output: {output:?}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.split_whitespace();
    let version = words
        .next()
        .and_then(|v| v.strip_prefix("HTTP/"))
        .unwrap_or_default()
        .to_owned();
    let status = words
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    Ok(Response {
        version,
        status,
        headers,
        body: rest.to_owned(),
    })
}

/// Sends raw bytes on a fresh connection and returns everything read back until the peer
/// closes or `within` passes. Write errors are ignored: a server may close before reading all.
pub(crate) fn raw_exchange(address: SocketAddr, request: &[u8], within: Duration) -> String {
    let mut stream =
        TcpStream::connect(address).unwrap_or_else(|e| panic!("cannot connect to {address}: {e}"));
    let _ = stream.write_all(request);
    read_until_close(&mut stream, within)
}

/// Reads until EOF, a reset, or `within` passes.
pub(crate) fn read_until_close(stream: &mut TcpStream, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut received = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let _ = stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// The status code of the first response in raw bytes read back, if any.
pub(crate) fn first_status(raw: &str) -> Option<u16> {
    let line = raw.lines().next()?;
    let mut words = line.split_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/"))?;
    words.next()?.parse().ok()
}

/// Asserts that Ferry itself answered with the reference's error shape: `status`, `ferry-error: KIND`,
/// and a one-line body that names `service`.
pub(crate) fn assert_ferry_error(response: &Response, status: u16, kind: &str, service: &str) {
    assert_eq!(response.status, status, "unexpected status: {response:?}");
    assert_eq!(
        response.header("ferry-error"),
        Some(kind),
        "ferry-error header: {response:?}"
    );
    let body = response.body.trim_end();
    assert!(
        !body.is_empty() && !body.contains('\n'),
        "body is not one line: {body:?}"
    );
    assert!(
        body.contains(service),
        "body does not name {service}: {body:?}"
    );
}

/// Streams `GET /sse` (`Host: HOST`) through `outbound` with `curl -N` and returns when each
/// `data:` line arrived and when the stream ended, both measured from the request's start.
pub(crate) fn sse_timings(outbound: SocketAddr, host: &str) -> (Vec<Duration>, Duration) {
    use std::io::BufRead;
    use std::process::Stdio;
    require_tool("curl");
    let url = format!("http://{outbound}/sse");
    let mut child = without_proxy(&mut Command::new("curl"))
        .args([
            "-sSN",
            "--max-time",
            "20",
            "-H",
            &format!("Host: {host}"),
            &url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl starts");
    let started = Instant::now();
    let stdout = child.stdout.take().expect("stdout is piped");
    let events = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .filter(|line| line.starts_with("data: "))
        .map(|_| started.elapsed())
        .collect();
    let ended = started.elapsed();
    let _ = child.wait();
    (events, ended)
}

/// Asserts that the five events of the backend's /sse (one every 300 ms) arrived as they were
/// sent: a proxy that buffers the stream delivers the first one only when the last is sent.
pub(crate) fn assert_sse_streamed(outbound: SocketAddr, host: &str) {
    let (events, ended) = sse_timings(outbound, host);
    assert_eq!(
        events.len(),
        5,
        "events received at {events:?}, stream ended at {ended:?}"
    );
    assert!(
        ended - events[0] >= Duration::from_millis(800),
        "first event at {:?}, stream ended at {ended:?}: the stream was buffered",
        events[0]
    );
}

/// Waits (10 s at most) until a call to `host` through `outbound` fails the way a dead
/// workload makes it fail: `503 no-healthy-endpoint` once health checks noticed, or `502
/// upstream-failed` before, each answer coming promptly rather than after a hang. Then
/// checks the answer is one of Ferry's, naming the service.
pub(crate) fn wait_upstream_error(outbound: SocketAddr, host: &str) -> Response {
    let response = super::eventually(Duration::from_secs(10), || {
        let started = std::time::Instant::now();
        let response = get(outbound, host, "/hello")?;
        if started.elapsed() > Duration::from_secs(10) {
            return Err(format!("answer took {:?}", started.elapsed()));
        }
        match (response.status, response.header("ferry-error")) {
            (503, Some("no-healthy-endpoint")) | (502, Some("upstream-failed")) => Ok(response),
            _ => Err(format!("not yet an upstream error: {response:?}")),
        }
    });
    let kind = response
        .header("ferry-error")
        .unwrap_or_default()
        .to_owned();
    assert_ferry_error(&response, response.status, &kind, host);
    response
}
