//! The deadline layer: how long a call may wait for its response to start.
//!
//! Only the head is timed. A body may stream for as long as both ends want: gRPC streams,
//! server-sent events and WebSockets live for hours. The deadline spans every try, so retries
//! cannot stretch a call past it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use http::Response;
use tower::Service;

use crate::body::Body;
use crate::call::{Call, Routed};
use crate::error::{CallError, ProxyError};
use crate::outbound::OutboundSettings;

/// Applies the per-service deadline from the (reloadable) settings.
#[derive(Clone)]
pub(crate) struct Deadline<S> {
    settings: Arc<RwLock<Arc<OutboundSettings>>>,
    inner: S,
}

impl<S> Deadline<S> {
    pub(crate) fn new(settings: Arc<RwLock<Arc<OutboundSettings>>>, inner: S) -> Self {
        Deadline { settings, inner }
    }
}

impl<S> Service<Call> for Deadline<S>
where
    S: Service<Call, Response = Response<Body>, Error = CallError> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = CallError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, CallError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let settings = self
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let deadline = settings.deadline_for(&call.name().service);
        let same_call = call.clone();
        let future = self.inner.call(call);
        Box::pin(async move {
            match tokio::time::timeout(deadline, future).await {
                Ok(result) => result,
                Err(_) => Err(CallError::from(ProxyError::Timeout {
                    service: same_call.name().to_string(),
                    millis: deadline.as_millis(),
                })),
            }
        })
    }
}
