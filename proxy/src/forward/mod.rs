//! The bottom of the outbound stacks: one try of a call against the endpoint the balancer
//! picked. An HTTP call goes to a plain address through the upstream pools, or to a node over
//! a tunnel stream (`node.rs`); a TCP connection opens a byte stream to either (`tcp.rs`).

mod node;
mod tcp;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use tower::Service;
use tracing::debug;

use ferry_tunnel::{StreamHeader, StreamKind};

use crate::body::Body;
use crate::call::{Call, Routed};
use crate::directory::Endpoint;
use crate::error::{CallError, TryError};
use crate::pool::Upstreams;
use crate::splice;
use crate::target::Target;

pub(crate) use tcp::{OpenTcp, Upstream};

/// Put in a response's extensions: the datacenter of the endpoint that answered.
#[derive(Clone, Debug)]
pub(crate) struct ServedBy(pub String);

/// One try of an HTTP call against one endpoint.
#[derive(Clone)]
pub(crate) struct Forward {
    upstreams: Upstreams,
}

impl Forward {
    pub(crate) fn new(upstreams: Upstreams) -> Forward {
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
            let Some(request) = call.take_request() else {
                return Err(TryError::Unanswered {
                    reason: "the request body went with an earlier try".into(),
                }
                .into());
            };
            let name = call.name();
            let sent = forward(
                &endpoint,
                name.datacenter.as_deref(),
                request,
                call.take_upgrade(),
                &upstreams,
                &name.service,
            )
            .await;
            match sent {
                Ok(mut response) => {
                    response
                        .extensions_mut()
                        .insert(ServedBy(endpoint.datacenter.clone()));
                    Ok(response)
                }
                Err(mut failure) => {
                    debug!(service = %name, endpoint = %endpoint.id, reason = failure.reason(), "try failed");
                    // A request that never left goes back to the call, for the next try.
                    if let TryError::Unreached { request, .. } = &mut failure {
                        if let Some(request) = request.take() {
                            call.give_back(*request);
                        }
                    }
                    Err(failure.into())
                }
            }
        })
    }
}

/// Sends `request` to `endpoint`. `upgrade` is the caller's side of a protocol switch: on a
/// `101` answer the two connections are joined.
pub(crate) async fn forward(
    endpoint: &Endpoint,
    datacenter: Option<&str>,
    request: Request<Body>,
    upgrade: Option<OnUpgrade>,
    upstreams: &Upstreams,
    service: &str,
) -> Result<Response<Body>, TryError> {
    match &endpoint.target {
        Target::Address(addr) => {
            let mut response = upstreams.send(*addr, endpoint.protocol, request).await?;
            if let (Some(client), StatusCode::SWITCHING_PROTOCOLS) = (upgrade, response.status()) {
                let upstream = hyper::upgrade::on(&mut response);
                tokio::spawn(async move {
                    let joined = splice::join(splice::upgraded(client), splice::upgraded(upstream));
                    if let Err(e) = joined.await {
                        debug!(error = %e, "upgraded connection ended with an error");
                    }
                });
            }
            Ok(response)
        }
        Target::Node { remote, .. } => {
            let header = StreamHeader {
                kind: StreamKind::Http,
                protocol: endpoint.protocol,
                service: service.to_owned(),
                datacenter: datacenter.unwrap_or(&endpoint.datacenter).to_owned(),
            };
            node::send(remote, &header, request, upgrade).await
        }
    }
}
