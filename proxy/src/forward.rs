//! One try of a call against one endpoint.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tower::Service;
use tracing::debug;

use ferry_tunnel::{StreamHeader, StreamKind};

use crate::body::Body;
use crate::call::{Call, CallError};
use crate::client::Upstreams;
use crate::directory::{Endpoint, Target};
use crate::error::ProxyError;
use crate::remote;

/// Put in a response's extensions: the datacenter of the endpoint that answered.
#[derive(Clone, Debug)]
pub(crate) struct ServedBy(pub String);

/// The bottom of the stack: one try of a call against the endpoint the balancer picked.
#[derive(Clone)]
pub(crate) struct Forward {
    upstreams: Upstreams,
}

impl Forward {
    pub fn new(upstreams: Upstreams) -> Forward {
        Forward { upstreams }
    }
}

impl Service<(Endpoint, Call)> for Forward {
    type Response = Response<Body>;
    type Error = CallError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, CallError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (endpoint, call): (Endpoint, Call)) -> Self::Future {
        let upstreams = self.upstreams.clone();
        Box::pin(async move {
            let failed = |reason: String, unsent| CallError {
                error: ProxyError::UpstreamFailed {
                    service: call.name().to_string(),
                    reason,
                },
                unsent,
            };
            let Some(request) = call.take_request() else {
                return Err(failed(
                    "the request body went with an earlier try".into(),
                    false,
                ));
            };
            let name = call.name();
            match forward(
                &endpoint,
                &name.service,
                name.datacenter.as_deref(),
                request,
                call.take_upgrade(),
                &upstreams,
            )
            .await
            {
                Ok(mut response) => {
                    response
                        .extensions_mut()
                        .insert(ServedBy(endpoint.datacenter.clone()));
                    Ok(response)
                }
                Err(failure) => {
                    debug!(service = %name, endpoint = %endpoint.id, reason = %failure.reason, "try failed");
                    if let Some(request) = failure.request {
                        call.give_back(request);
                    }
                    Err(failed(failure.reason, failure.unsent))
                }
            }
        })
    }
}

/// A try that got no response.
pub(crate) struct Failure {
    pub reason: String,
    /// The service never saw the call (it never left this node, or the far node could not
    /// deliver it), so any call whose request can be sent again may be retried.
    pub unsent: bool,
    /// The request, when it can be sent again as it is.
    pub request: Option<Request<Body>>,
}

/// Sends `request` to `endpoint`. `upgrade` is the caller's side of a protocol switch: on a
/// `101` answer the two connections are joined.
async fn forward(
    endpoint: &Endpoint,
    service: &str,
    datacenter: Option<&str>,
    request: Request<Body>,
    upgrade: Option<OnUpgrade>,
    upstreams: &Upstreams,
) -> Result<Response<Body>, Failure> {
    match &endpoint.target {
        Target::Address(addr) => {
            let mut response = upstreams
                .send(*addr, endpoint.protocol, request)
                .await
                .map_err(|e| Failure {
                    reason: e.reason,
                    unsent: e.connect,
                    request: None,
                })?;
            if let (Some(client), StatusCode::SWITCHING_PROTOCOLS) = (upgrade, response.status()) {
                let upstream = hyper::upgrade::on(&mut response);
                tokio::spawn(async move {
                    match tokio::try_join!(client, upstream) {
                        Ok((client, upstream)) => {
                            let _ =
                                crate::splice::splice(TokioIo::new(client), TokioIo::new(upstream))
                                    .await;
                        }
                        Err(e) => debug!(error = %e, "upgrade failed"),
                    }
                });
            }
            Ok(response)
        }
        Target::Node { peer, .. } => {
            let header = StreamHeader {
                kind: StreamKind::Http,
                protocol: endpoint.protocol,
                service: service.to_owned(),
                datacenter: datacenter.unwrap_or(&endpoint.datacenter).to_owned(),
            };
            remote::send(peer, &header, request, upgrade)
                .await
                .map_err(|f| Failure {
                    reason: f.reason,
                    unsent: f.unsent.is_some() || f.undelivered,
                    request: f.unsent,
                })
        }
    }
}
