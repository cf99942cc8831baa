//! Per-call metrics, named as the reference (`docs/reference.md`) lists them. The node installs the recorder.

use std::cell::RefCell;
use std::time::Duration;

// Looked up on every call: foldhash, not SipHash.
use foldhash::HashMap;
use metrics::{counter, histogram, Counter, Histogram};

/// Which side of the node a call passed through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
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

/// One service's request series on one thread, found in the registry once and then kept:
/// building a label set and looking it up cost more than the increment itself.
#[derive(Default)]
struct ServiceSeries {
    /// `ferry_request_duration_seconds`, outbound and inbound.
    durations: [Option<Histogram>; 2],
    /// `ferry_requests_total`, one per datacenter, code and direction seen.
    requests: Vec<(String, u16, Direction, Counter)>,
}

/// Past this many services a thread starts its cache afresh, so names that come and go (a
/// caller probing for services that do not exist) cannot grow it for ever.
const MAX_CACHED_SERVICES: usize = 1024;

thread_local! {
    static SERIES: RefCell<HashMap<String, ServiceSeries>> = RefCell::new(HashMap::default());
}

pub(crate) fn request(
    service: &str,
    datacenter: &str,
    code: u16,
    direction: Direction,
    elapsed: Duration,
) {
    SERIES.with_borrow_mut(|cache| {
        if cache.len() >= MAX_CACHED_SERVICES && !cache.contains_key(service) {
            cache.clear();
        }
        let series = match cache.get_mut(service) {
            Some(series) => series,
            None => cache.entry(service.to_owned()).or_default(),
        };
        let duration = series.durations[direction as usize].get_or_insert_with(|| {
            histogram!(
                "ferry_request_duration_seconds",
                "service" => service.to_owned(),
                "direction" => direction.as_str()
            )
        });
        duration.record(elapsed.as_secs_f64());
        let known = series
            .requests
            .iter()
            .find(|(dc, c, d, _)| *c == code && *d == direction && dc == datacenter);
        match known {
            Some((.., counter)) => counter.increment(1),
            None => {
                let labels = [
                    ("service", service.to_owned()),
                    ("datacenter", datacenter.to_owned()),
                    ("code", code.to_string()),
                    ("direction", direction.as_str().to_owned()),
                ];
                let counter = counter!("ferry_requests_total", &labels);
                counter.increment(1);
                series
                    .requests
                    .push((datacenter.to_owned(), code, direction, counter));
            }
        }
    });
}

pub(crate) fn tcp_connection(service: &str, direction: Direction) {
    counter!(
        "ferry_tcp_connections_total",
        "service" => service.to_owned(),
        "direction" => direction.as_str()
    )
    .increment(1);
}

/// Bytes spliced through a TCP connection: `sent` toward the service, `received` from it.
pub(crate) fn tcp_bytes(sent: u64, received: u64) {
    counter!("ferry_bytes_total", "direction" => "sent").increment(sent);
    counter!("ferry_bytes_total", "direction" => "received").increment(received);
}
