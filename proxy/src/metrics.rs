//! Per-call metrics, named as SPEC lists them. The node installs the recorder.

use std::time::Duration;

use metrics::{counter, histogram};

/// Which side of the node a call passed through.
#[derive(Clone, Copy, Debug)]
pub enum Direction {
    /// From the local application, out to a service.
    Outbound,
    /// From a peer, in to a local service.
    Inbound,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

pub fn request(
    service: &str,
    datacenter: &str,
    code: u16,
    direction: Direction,
    elapsed: Duration,
) {
    let labels = [
        ("service", service.to_owned()),
        ("datacenter", datacenter.to_owned()),
        ("code", code.to_string()),
        ("direction", direction.as_str().to_owned()),
    ];
    counter!("ferry_requests_total", &labels).increment(1);
    histogram!(
        "ferry_request_duration_seconds",
        "service" => service.to_owned(),
        "direction" => direction.as_str()
    )
    .record(elapsed.as_secs_f64());
}

pub fn tcp_connection(service: &str, direction: Direction) {
    counter!(
        "ferry_tcp_connections_total",
        "service" => service.to_owned(),
        "direction" => direction.as_str()
    )
    .increment(1);
}

/// Bytes spliced through a TCP connection: `sent` toward the service, `received` from it.
pub fn tcp_bytes(sent: u64, received: u64) {
    counter!("ferry_bytes_total", "direction" => "sent").increment(sent);
    counter!("ferry_bytes_total", "direction" => "received").increment(received);
}
