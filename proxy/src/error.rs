//! Failures: those Ferry answers itself, as the reference lists them ([`ProxyError`]); and
//! those of one try of a call, which the retry layer looks at ([`TryError`]).
//!
//! One word runs through the proxy for a request that never reached its service:
//! *unreached*. A connection or tunnel stream that could not be opened, a pooled connection
//! found closed, a serving node that could not hand the call to its service: the service
//! cannot have seen the request, so any call whose request can be sent again may be retried.

use http::{header, HeaderValue, Request, Response, StatusCode};

use crate::body::{self, Body};
use crate::target::ServiceName;

/// A call Ferry could not complete. Each maps to one status, one `ferry-error` value and, for
/// gRPC callers, one `grpc-status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// No registry and no route knows the service: `503`, `no-route`.
    #[error("no route to service {service}")]
    NoRoute {
        /// The service as the caller named it.
        service: String,
    },
    /// The service has endpoints, none of them healthy: `503`, `no-healthy-endpoint`.
    #[error("service {service} has no healthy endpoint")]
    NoHealthyEndpoint {
        /// The service as the caller named it.
        service: String,
    },
    /// Every try failed (refused, reset, cut short): `502`, `upstream-failed`.
    #[error("service {service} failed: {reason}")]
    UpstreamFailed {
        /// The service as the caller named it.
        service: String,
        /// What went wrong on the last try.
        reason: String,
    },
    /// No response started within the service's deadline: `504`, `timeout`.
    #[error("service {service} did not answer within {millis} ms")]
    Timeout {
        /// The service as the caller named it.
        service: String,
        /// The deadline.
        millis: u128,
    },
    /// A request Ferry will not forward: `400`, `bad-request`.
    #[error("bad request: {reason}")]
    BadRequest {
        /// What is wrong with it.
        reason: String,
    },
    /// The serving node's authorization policy refused the caller: `403`, `forbidden`.
    #[error("{caller} may not call service {service}")]
    Forbidden {
        /// The service called.
        service: String,
        /// Who called, as its certificate or key names it.
        caller: String,
    },
    /// The service's rate limit on the serving node is spent for now: `429`, `rate-limited`,
    /// with `retry-after`.
    #[error("service {service} is over its rate limit; retry in {retry_after} s")]
    RateLimited {
        /// The service called.
        service: String,
        /// Whole seconds until a call may pass, at least 1.
        retry_after: u64,
    },
}

/// gRPC status codes used here.
const GRPC_UNAVAILABLE: &str = "14";
const GRPC_DEADLINE_EXCEEDED: &str = "4";
const GRPC_INTERNAL: &str = "13";
const GRPC_PERMISSION_DENIED: &str = "7";
const GRPC_RESOURCE_EXHAUSTED: &str = "8";

impl ProxyError {
    /// The HTTP status the caller gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute { .. } | ProxyError::NoHealthyEndpoint { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::UpstreamFailed { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ProxyError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ProxyError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The `ferry-error` header value.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::NoRoute { .. } => "no-route",
            ProxyError::NoHealthyEndpoint { .. } => "no-healthy-endpoint",
            ProxyError::UpstreamFailed { .. } => "upstream-failed",
            ProxyError::Timeout { .. } => "timeout",
            ProxyError::BadRequest { .. } => "bad-request",
            ProxyError::Forbidden { .. } => "forbidden",
            ProxyError::RateLimited { .. } => "rate-limited",
        }
    }

    fn grpc_status(&self) -> &'static str {
        match self {
            ProxyError::Timeout { .. } => GRPC_DEADLINE_EXCEEDED,
            ProxyError::BadRequest { .. } => GRPC_INTERNAL,
            ProxyError::Forbidden { .. } => GRPC_PERMISSION_DENIED,
            ProxyError::RateLimited { .. } => GRPC_RESOURCE_EXHAUSTED,
            _ => GRPC_UNAVAILABLE,
        }
    }

    /// The answer a caller gets. gRPC callers get a trailers-only response (HTTP 200 with
    /// `grpc-status`), which is how gRPC clients expect failures to arrive.
    pub fn to_response(&self, grpc: bool) -> Response<Body> {
        let line = self.to_string();
        let mut builder = Response::builder().header("ferry-error", self.code());
        if let ProxyError::RateLimited { retry_after, .. } = self {
            builder = builder.header(header::RETRY_AFTER, *retry_after);
        }
        if grpc {
            builder = builder
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/grpc")
                .header("grpc-status", self.grpc_status())
                .header(
                    "grpc-message",
                    HeaderValue::from_str(&line).unwrap_or(HeaderValue::from_static("ferry error")),
                );
            return builder.body(body::empty()).unwrap_or_else(|_| fallback());
        }
        builder
            .status(self.status())
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body::full(format!("{line}\n")))
            .unwrap_or_else(|_| fallback())
    }
}

/// Why one try of a call got no response.
#[derive(Debug)]
pub enum TryError {
    /// The request never reached the service. `request` gives it back, whole, when it never
    /// left this node, so that the next try can send it, body and all (boxed: failures are
    /// rare, and a request is large).
    Unreached {
        /// Why, in a line.
        reason: String,
        /// The request, when it can go again as it is.
        request: Option<Box<Request<Body>>>,
    },
    /// The request may have reached the service, whose answer did not come.
    Unanswered {
        /// Why, in a line.
        reason: String,
    },
}

impl TryError {
    /// An unreached try whose request is gone (a TCP connection has none to give back).
    pub(crate) fn unreached(reason: impl Into<String>) -> TryError {
        TryError::Unreached {
            reason: reason.into(),
            request: None,
        }
    }

    /// What went wrong, in a line.
    pub fn reason(&self) -> &str {
        match self {
            TryError::Unreached { reason, .. } | TryError::Unanswered { reason } => reason,
        }
    }
}

/// Why a call failed, as the layers of the outbound stacks pass it up.
#[derive(Debug)]
pub(crate) enum CallError {
    /// Ferry answers for the service: no route, no healthy endpoint, a timeout. Never retried.
    Answer(ProxyError),
    /// The last try failed.
    Try(TryError),
}

impl CallError {
    /// The answer the caller of `service` gets.
    pub(crate) fn into_proxy_error(self, service: &ServiceName) -> ProxyError {
        match self {
            CallError::Answer(error) => error,
            CallError::Try(error) => ProxyError::UpstreamFailed {
                service: service.to_string(),
                reason: error.reason().to_owned(),
            },
        }
    }
}

impl From<ProxyError> for CallError {
    fn from(error: ProxyError) -> Self {
        CallError::Answer(error)
    }
}

impl From<TryError> for CallError {
    fn from(error: TryError) -> Self {
        CallError::Try(error)
    }
}

/// Only reached if a header above were invalid, which they are not; still, never panic.
fn fallback() -> Response<Body> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

/// Whether a request is a gRPC call, so that errors can be answered in gRPC's terms.
pub(crate) fn is_grpc<B>(request: &http::Request<B>) -> bool {
    is_grpc_headers(request.headers())
}

/// [`is_grpc`] for a request's headers alone (a request head read from the tunnel).
pub(crate) fn is_grpc_headers(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_documented_statuses_and_codes() {
        let s = || "greeter".to_string();
        let cases = [
            (ProxyError::NoRoute { service: s() }, 503, "no-route"),
            (
                ProxyError::NoHealthyEndpoint { service: s() },
                503,
                "no-healthy-endpoint",
            ),
            (
                ProxyError::UpstreamFailed {
                    service: s(),
                    reason: "reset".into(),
                },
                502,
                "upstream-failed",
            ),
            (
                ProxyError::Timeout {
                    service: s(),
                    millis: 10,
                },
                504,
                "timeout",
            ),
            (
                ProxyError::Forbidden {
                    service: s(),
                    caller: "web-1".into(),
                },
                403,
                "forbidden",
            ),
            (
                ProxyError::RateLimited {
                    service: s(),
                    retry_after: 1,
                },
                429,
                "rate-limited",
            ),
        ];
        for (error, status, code) in cases {
            let response = error.to_response(false);
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.headers()["ferry-error"], code);
            assert!(error.to_string().contains("greeter"));
        }
    }

    #[test]
    fn grpc_callers_get_unavailable_or_deadline_exceeded() {
        let r = ProxyError::NoRoute {
            service: "g".into(),
        }
        .to_response(true);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "14");
        let r = ProxyError::Timeout {
            service: "g".into(),
            millis: 1,
        }
        .to_response(true);
        assert_eq!(r.headers()["grpc-status"], "4");
    }

    #[test]
    fn refused_callers_get_permission_denied_or_resource_exhausted() {
        let forbidden = ProxyError::Forbidden {
            service: "billing".into(),
            caller: "web-1".into(),
        };
        assert_eq!(forbidden.to_response(true).headers()["grpc-status"], "7");
        let limited = ProxyError::RateLimited {
            service: "billing".into(),
            retry_after: 3,
        };
        let grpc = limited.to_response(true);
        assert_eq!(grpc.headers()["grpc-status"], "8");
        assert_eq!(grpc.headers()["retry-after"], "3");
        assert_eq!(limited.to_response(false).headers()["retry-after"], "3");
    }
}
