//! The broker's metrics, named as the reference lists them, and a log of lost messages that
//! cannot flood the node's output.

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use tracing::warn;

use crate::throttle::Throttle;

/// `ferry_broker_published_total{topic,result}`, for `n` messages.
pub(super) fn published(topic: &str, result: &'static str, n: u64) {
    counter!("ferry_broker_published_total", "topic" => topic.to_owned(), "result" => result)
        .increment(n);
}

/// `ferry_broker_deliveries_total{topic,group,result}`, for `n` messages.
pub(super) fn delivery(topic: &str, group: &str, result: &'static str, n: u64) {
    counter!(
        "ferry_broker_deliveries_total",
        "topic" => topic.to_owned(),
        "group" => group.to_owned(),
        "result" => result
    )
    .increment(n);
}

/// A message acknowledged, `since_publish` after it was taken (`delivered` is counted with
/// [`delivery`]).
pub(super) fn delivered(since_publish: Duration) {
    histogram!("ferry_broker_delivery_seconds").record(since_publish.as_secs_f64());
}

/// `ferry_broker_queued_bytes`.
pub(super) fn queued(bytes: usize) {
    gauge!("ferry_broker_queued_bytes").set(bytes as f64);
}

/// Logs lost messages at most once a second, with the count of those not logged since:
/// a subscriber that fails every message must not fill the disk with the same line.
#[derive(Default)]
pub(super) struct LossLog {
    throttle: Throttle,
}

impl LossLog {
    /// `n` messages on `topic` are dropped, for `reason` (a metric label) and `detail`.
    pub(super) fn lost(&self, topic: &str, reason: &'static str, detail: &str, n: u64) {
        counter!("ferry_broker_dropped_total", "reason" => reason).increment(n);
        if let Some(unlogged) = self.throttle.pass() {
            warn!(
                topic,
                reason,
                detail,
                unlogged_since_last = unlogged,
                "message dropped"
            );
        }
    }
}
