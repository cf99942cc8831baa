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
            let tried = call.tried();
            let eligible = candidates(directory.as_ref(), call.name(), &tried).await?;
            if !tried.is_empty() && eligible.iter().all(|e| tried.contains(&e.id)) {
                if let Some(reason) = call.given_up() {
                    return Err(ProxyError::UpstreamFailed {
                        service: call.name().to_string(),
                        reason,
                    }
                    .into());
                }
            }
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use ferry_tunnel::Protocol;
    use tower::retry::Retry;

    use super::*;
    use crate::call::TcpCall;
    use crate::directory::{EndpointId, Resolution};
    use crate::retry::RetryPolicy;
    use crate::target::ServiceName;

    /// Endpoints at `ports`, all healthy, in dc1.
    struct Fixed(Vec<u16>);

    impl Directory for Fixed {
        fn resolve(&self, _: &ServiceName) -> Resolution {
            Resolution::Endpoints(
                self.0
                    .iter()
                    .map(|port| {
                        let addr = SocketAddr::from(([127, 0, 0, 1], *port));
                        Endpoint {
                            id: EndpointId::Address(addr),
                            target: Target::Address(addr),
                            protocol: Protocol::Tcp,
                            datacenter: "dc1".into(),
                            healthy: true,
                        }
                    })
                    .collect(),
            )
        }
        fn local_service(&self, _: &str) -> Option<(SocketAddr, Protocol)> {
            None
        }
        fn datacenter(&self) -> &str {
            "dc1"
        }
    }

    /// Fails every try, as an endpoint that refuses connections, counting them.
    #[derive(Clone, Default)]
    struct Refusing(Arc<AtomicUsize>);

    impl Service<(Endpoint, TcpCall)> for Refusing {
        type Response = ();
        type Error = CallError;
        type Future = std::future::Ready<Result<(), CallError>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, (endpoint, call): (Endpoint, TcpCall)) -> Self::Future {
            self.0.fetch_add(1, Ordering::Relaxed);
            let reason = format!("connect to {}: refused", endpoint.id);
            call.failed(&reason);
            std::future::ready(Err(TryError::unreached(reason).into()))
        }
    }

    #[tokio::test]
    async fn a_tcp_connection_tries_each_endpoint_once_then_gives_the_last_reason() {
        for ports in [vec![1], vec![1, 2]] {
            let tries = Refusing::default();
            let stack = Retry::new(
                RetryPolicy::new(),
                Balance::new(
                    Arc::new(Fixed(ports.clone())),
                    PeakEwma::default(),
                    tries.clone(),
                ),
            );
            let name = ServiceName::from_authority("redis").expect("a name");
            let Err(CallError::Answer(ProxyError::UpstreamFailed { reason, .. })) =
                stack.oneshot(TcpCall::new(name)).await
            else {
                panic!("every endpoint refused: the connection fails");
            };
            assert_eq!(tries.0.load(Ordering::Relaxed), ports.len(), "one try each");
            assert!(reason.ends_with("refused"), "{reason}");
        }
    }
}
