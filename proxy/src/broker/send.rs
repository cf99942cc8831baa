//! One try to hand messages to a member: a `POST` to the member's service, through the same
//! forwarding as calls (a pooled connection to this node's own service, a tunnel stream to
//! another node's). One message goes in CloudEvents 1.0 binary mode (the body as published,
//! the attributes as headers); a subscription that takes batches gets a CloudEvents batch.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request};
use http_body_util::BodyExt;

use super::cloudevents::{write_batch, BATCH_CONTENT_TYPE};
use super::delivery::Outcome;
use super::members::Member;
use super::Message;
use crate::body;
use crate::forward::forward;
use crate::pool::Upstreams;

/// At most this much of a service's answer to a delivery is read (and thrown away) so that
/// its connection can serve the next one.
const ANSWER_READ_LIMIT: usize = 64 * 1024;

/// Delivers `messages` to `member` in one request, as try number `attempt`, giving up after
/// `deadline`. More than one message needs a subscription that takes batches.
pub(crate) async fn deliver(
    messages: &[Arc<Message>],
    member: &Member,
    attempt: u8,
    deadline: Duration,
    upstreams: &Upstreams,
) -> Outcome {
    let built = match messages {
        [message] if member.subscription.batch <= 1 => request(message, member, attempt),
        _ => batch_request(messages, member, attempt),
    };
    let request = match built {
        Ok(request) => request,
        // Only a path announced by a node of another version could get here.
        Err(e) => return Outcome::Failed(format!("cannot build the delivery: {e}")),
    };
    let service = &member.subscription.service;
    let sent = forward(&member.endpoint, None, request, None, upstreams, service);
    match tokio::time::timeout(deadline, sent).await {
        Err(_) => Outcome::Failed(format!("no answer within {deadline:?}")),
        Ok(Err(failure)) => Outcome::Failed(failure.reason().to_owned()),
        Ok(Ok(response)) => {
            let status = response.status().as_u16();
            let mut answer = response.into_body();
            let mut read = 0;
            // Read what little an acknowledgement says, within the deadline, so that the
            // connection goes back to its pool.
            let drained = tokio::time::timeout(deadline, async {
                while let Some(Ok(frame)) = answer.frame().await {
                    read += frame.data_ref().map_or(0, Bytes::len);
                    if read > ANSWER_READ_LIMIT {
                        break;
                    }
                }
            });
            let _ = drained.await;
            Outcome::Answered(status)
        }
    }
}

/// Many messages in one `POST`, as a CloudEvents batch.
fn batch_request(
    messages: &[Arc<Message>],
    member: &Member,
    attempt: u8,
) -> Result<Request<body::Body>, http::Error> {
    let batch = write_batch(messages, attempt);
    Request::builder()
        .method(Method::POST)
        .uri(member.subscription.path.as_str())
        .header(HOST, member.subscription.service.as_str())
        .header(CONTENT_TYPE, BATCH_CONTENT_TYPE)
        .header(CONTENT_LENGTH, HeaderValue::from(batch.len()))
        .body(body::full(batch))
}

/// One message in binary mode.
fn request(
    message: &Message,
    member: &Member,
    attempt: u8,
) -> Result<Request<body::Body>, http::Error> {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(member.subscription.path.as_str())
        .header(HOST, member.subscription.service.as_str())
        .header("ce-specversion", "1.0")
        .header("ce-id", message.id.as_str())
        .header("ce-source", &*message.source)
        .header("ce-type", "ferry.message")
        .header("ce-time", &*message.time)
        .header("ferry-topic", message.topic.as_str())
        .header("ferry-attempt", HeaderValue::from(u16::from(attempt)))
        // Said outright: a request that crosses the tunnel would otherwise reach the service
        // chunked, which many small HTTP servers cannot read.
        .header(CONTENT_LENGTH, HeaderValue::from(message.body.len()));
    if let Some(content_type) = &message.content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    if let Some(traceparent) = &message.traceparent {
        request = request.header("traceparent", traceparent);
    }
    if let Some((topic, reason)) = &message.dead_letter_of {
        request = request
            .header("ferry-dead-letter-topic", topic.as_str())
            .header("ferry-dead-letter-reason", reason);
    }
    request.body(body::full(message.body.clone()))
}

/// `time` as RFC 3339 in UTC with milliseconds, as `ce-time` wants it.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = ferry_tunnel::rfc3339(since.as_secs());
    let whole = seconds.trim_end_matches('Z');
    format!("{whole}.{:03}Z", since.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_in_utc() {
        let at = |secs: u64, millis: u64| {
            rfc3339(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_796_386_245, 123), "2026-12-04T12:10:45.123Z");
        assert_eq!(at(4_107_542_399, 999), "2100-02-28T23:59:59.999Z");
    }
}
