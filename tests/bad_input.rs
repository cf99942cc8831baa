//! Bad input on the outbound gets a clear answer and leaves the node serving (issue 2, point 8).
//! Raw bytes over a TcpStream, since no well-behaved client sends these. Needs no root.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::http::first_status;
use support::{curl, curl_ran, get, greeter_node, raw_exchange};

/// The node still routes a normal request: bad input did not break it.
fn assert_still_serving(outbound: SocketAddr) {
    let response = get(outbound, "greeter", "/hello").expect("the node still answers");
    assert_eq!(response.status, 200, "after bad input: {response:?}");
    assert!(response.body.contains("hello from greeter-backend"));
}

#[test]
fn malformed_request_lines_get_400() {
    let (_backend, node) = greeter_node("");
    for request in [
        &b"THIS IS NOT HTTP\r\n\r\n"[..],
        &b"G\x01T /hello HTTP/1.1\r\nHost: greeter\r\n\r\n"[..],
    ] {
        let reply = raw_exchange(node.outbound, request, Duration::from_secs(10));
        assert_eq!(first_status(&reply), Some(400), "{request:?} got {reply:?}");
    }
    assert_still_serving(node.outbound);
}

#[test]
fn headers_over_64_kib_get_431() {
    let (_backend, node) = greeter_node("");
    let big = "a".repeat(70 * 1024);
    let request = format!("GET /hello HTTP/1.1\r\nHost: greeter\r\nX-Big: {big}\r\n\r\n");
    let reply = raw_exchange(node.outbound, request.as_bytes(), Duration::from_secs(10));
    assert_eq!(
        first_status(&reply),
        Some(431),
        "70 KiB of headers got {reply:?}"
    );
    // The limit is not set so low that ordinary large headers fail.
    let url = format!("http://{}/hello", node.outbound);
    let medium = format!("X-Medium: {}", "m".repeat(16 * 1024));
    let response = curl(&[&url, "-H", "Host: greeter", "-H", &medium]);
    assert_eq!(response.status, 200, "16 KiB of headers: {response:?}");
    assert_still_serving(node.outbound);
}

#[test]
fn content_length_with_transfer_encoding_gets_400_and_smuggles_nothing() {
    let (backend, node) = greeter_node("");
    // Read by Content-Length the body is "0\r\n\r", read as chunked it is empty and
    // "GET /smuggled" follows: the classic CL.TE request-smuggling shape.
    let request = b"POST / HTTP/1.1\r\nHost: greeter\r\nContent-Length: 4\r\n\
                    Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
                    GET /smuggled HTTP/1.1\r\nHost: greeter\r\n\r\n";
    let reply = raw_exchange(node.outbound, request, Duration::from_secs(10));
    assert_eq!(first_status(&reply), Some(400), "CL+TE got {reply:?}");
    assert_eq!(
        reply.matches("HTTP/1.1 ").count(),
        1,
        "more than one response: {reply:?}"
    );
    assert_still_serving(node.outbound);
    let seen = get(backend.address, "direct", "/seen").unwrap().body;
    assert!(
        !seen.contains("/smuggled"),
        "the backend saw a smuggled request:\n{seen}"
    );
}

#[test]
fn client_that_stalls_mid_header_is_closed() {
    let (_backend, node) = greeter_node("");
    let mut stream = TcpStream::connect(node.outbound).unwrap();
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: gre")
        .unwrap();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(20);
    let mut buffer = [0u8; 4096];
    let closed = loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break false;
        };
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut buffer) {
            Ok(0) => break true,
            Ok(_) => continue, // a 408 is a fine goodbye; the close must still follow
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break true, // reset: closed too
        }
    };
    assert!(
        closed,
        "a client stuck in its headers was still connected after 20 s"
    );
    assert_still_serving(node.outbound);
}

#[test]
fn upstream_reset_mid_body_fails_the_request_visibly() {
    let (_backend, node) = greeter_node("");
    let url = format!("http://{}/reset", node.outbound);
    // The backend promises 1000 bytes, sends 10, then resets: the client must not be told the
    // response was complete.
    let ran = curl_ran(&[&url, "-H", "Host: greeter"]);
    assert!(
        !ran.timed_out && ran.code != Some(28),
        "the client hung: {ran:?}"
    );
    if let Ok(response) = ran.response() {
        assert_eq!(
            response.status, 502,
            "a reset upstream looked like success: {response:?}"
        );
    }
    assert_still_serving(node.outbound);
}
