//! The balancer layer, the same for HTTP calls and TCP connections: resolves the call's
//! service in the [`Directory`], keeps the eligible endpoints (healthy, nearest datacenter
//! first, not yet tried by this call while others are left), picks one by the load figures of
//! [`PeakEwma`], and times the try for them.

mod peak_ewma;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Service, ServiceExt};

use crate::call::Routed;
use crate::directory::{candidates, Directory, Endpoint};
use crate::error::{CallError, ProxyError, TryError};
use crate::target::Target;

pub use peak_ewma::{InFlight, PeakEwma};

/// Picks the endpoint each try goes to, then hands the try to `inner`.
#[derive(Clone)]
pub(crate) struct Balance<S> {
    directory: Arc<dyn Directory>,
    loads: PeakEwma,
    inner: S,
}

impl<S> Balance<S> {
    pub(crate) fn new(directory: Arc<dyn Directory>, loads: PeakEwma, inner: S) -> Self {
        Balance {
            directory,
            loads,
            inner,
        }
    }
}

impl<C, S> Service<C> for Balance<S>
where
    C: Routed,
    S: Service<(Endpoint, C), Error = CallError> + Clone + Send + 'static,
    S::Response: Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = CallError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, CallError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: C) -> Self::Future {
        let directory = self.directory.clone();
        let loads = self.loads.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            let eligible = candidates(directory.as_ref(), call.name(), &call.tried()).await?;
            let endpoint =
                loads
                    .pick_owned(eligible)
                    .ok_or_else(|| ProxyError::NoHealthyEndpoint {
                        service: call.name().to_string(),
                    })?;
            call.trying(endpoint.id);
            let in_flight = loads.start(endpoint.id);
            // A second handle on the call (one `Arc`), for its name once the try has it.
            let same_call = call.clone();
            let address = match endpoint.target {
                Target::Address(address) => Some(address),
                Target::Node { .. } => None,
            };
            let result = inner.oneshot((endpoint, call)).await;
            match (&result, address) {
                (Ok(_), _) => in_flight.done(),
                // A plain address that could not be reached: maybe one of this node's own
                // services, whose health check should look now.
                (Err(CallError::Try(TryError::Unreached { .. })), Some(address)) => {
                    directory.unreachable(&same_call.name().service, address)
                }
                _ => {}
            }
            result
        })
    }
}
