//! The application API (`[api] listen`): how the local application publishes.
//!
//! `POST /v1/publish/TOPIC` with the message as body answers `202 {"id": "..."}` once the
//! broker holds it; `400 bad-topic`, `413 too-large`, `429 broker-full` or
//! `503 broker-unavailable` otherwise. `POST /v1/publish-batch/TOPIC` with a CloudEvents batch
//! takes many messages at once, all or none, and answers `202 {"ids": [...]}`; a body that is
//! no batch is `400 bad-batch`.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::debug;

use super::cloudevents::read_batch;
use super::{BodyForm, Broker, Publication, PublishError};
use crate::body::{self, Body};
use crate::outbound::{accept, server_builder};

const PUBLISH: &str = "/v1/publish/";
const PUBLISH_BATCH: &str = "/v1/publish-batch/";

/// A batch's body may be this large, or twice `max_message_bytes` when that is larger: its
/// messages travel escaped or in base64 within it.
const BATCH_BODY_BYTES: usize = 16 << 20;

/// How long publishes in flight may take to finish once the node drains.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the application API on `listener` until `shutdown` turns true.
pub async fn serve_application_api(
    listener: TcpListener,
    broker: Broker,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = server_builder();
    let graceful = GracefulShutdown::new();
    while let Some((stream, remote)) = accept(&listener, &mut shutdown).await {
        let broker = broker.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let broker = broker.clone();
            async move { Ok::<_, Infallible>(handle(&broker, request).await) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(%remote, error = %e, "application API connection ended");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
}

async fn handle(broker: &Broker, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path();
    let (topic, batch) = match (path.strip_prefix(PUBLISH), path.strip_prefix(PUBLISH_BATCH)) {
        (Some(topic), _) => (topic, false),
        (_, Some(topic)) => (topic, true),
        (None, None) => {
            return answer(
                StatusCode::NOT_FOUND,
                None,
                "no such path: publish with POST /v1/publish/TOPIC or /v1/publish-batch/TOPIC"
                    .into(),
            )
        }
    };
    if request.method() != Method::POST {
        let mut response = answer(
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            "publish with POST".into(),
        );
        response
            .headers_mut()
            .insert(ALLOW, http::HeaderValue::from_static("POST"));
        return response;
    }
    // A client library percent-encodes what a URI cannot hold ('>' among them): the topic is
    // what it meant, which the broker then checks. Bad escapes make a topic no topic can be.
    let topic = percent_decoded(topic).unwrap_or_else(|| "%".to_owned());
    let message_limit = broker.max_message_bytes();
    let limit = if batch {
        BATCH_BODY_BYTES.max(message_limit.saturating_mul(2))
    } else {
        message_limit
    };
    let too_large = |limit: usize| {
        answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("too-large"),
            format!("the message is larger than the limit of {limit} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit);
    }
    let (head, incoming) = request.into_parts();
    let body: Bytes = match Limited::new(incoming, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(limit),
        Err(e) => {
            return answer(
                StatusCode::BAD_REQUEST,
                None,
                format!("the body could not be read: {e}"),
            )
        }
    };
    let traceparent = head.headers.get("traceparent");
    let published = if batch {
        let publications = match read_batch(&body, traceparent) {
            Ok(publications) => publications,
            Err(e) => return answer(StatusCode::BAD_REQUEST, Some("bad-batch"), e.to_string()),
        };
        broker.publish_batch(&topic, publications).await.map(|ids| {
            // Ids are hex digits and '-': nothing in them needs escaping.
            let quoted: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
            format!("{{\"ids\":[{}]}}", quoted.join(","))
        })
    } else {
        let publication = Publication {
            body,
            content_type: head.headers.get(CONTENT_TYPE).cloned(),
            traceparent: traceparent.cloned(),
            form: BodyForm::Bytes,
        };
        let id = broker.publish(&topic, publication).await;
        id.map(|id| format!("{{\"id\":\"{id}\"}}"))
    };
    match published {
        Ok(json) => {
            let mut response = Response::new(body::full(json));
            *response.status_mut() = StatusCode::ACCEPTED;
            response.headers_mut().insert(
                CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e @ PublishError::BadTopic(_)) => {
            answer(StatusCode::BAD_REQUEST, Some("bad-topic"), e.to_string())
        }
        Err(PublishError::TooLarge { limit }) => too_large(limit),
        Err(e @ PublishError::Unavailable(_)) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("broker-unavailable"),
            e.to_string(),
        ),
        Err(e @ PublishError::Full { .. }) => {
            let mut response = answer(
                StatusCode::TOO_MANY_REQUESTS,
                Some("broker-full"),
                e.to_string(),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, http::HeaderValue::from_static("1"));
            response
        }
    }
}

/// `text` with its `%XX` escapes decoded; `None` for a bad escape or bytes that are not UTF-8.
pub(crate) fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A refusal: its status, its `ferry-error` when it has one, and a line that says why.
fn answer(status: StatusCode, code: Option<&'static str>, line: String) -> Response<Body> {
    let mut response = Response::new(body::full(format!("{line}\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(code) = code {
        headers.insert("ferry-error", http::HeaderValue::from_static(code));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::percent_decoded;

    #[test]
    fn topics_are_percent_decoded() {
        assert_eq!(
            percent_decoded("orders.created").as_deref(),
            Some("orders.created")
        );
        assert_eq!(percent_decoded("orders.%3E").as_deref(), Some("orders.>"));
        assert_eq!(percent_decoded("a%2ab").as_deref(), Some("a*b"));
        for bad in ["%", "%4", "%zz", "%ff", "a%"] {
            assert_eq!(percent_decoded(bad), None, "{bad}");
        }
    }
}
