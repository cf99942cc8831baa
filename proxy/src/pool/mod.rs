//! Connections to upstream addresses, kept and reused across calls: keep-alive HTTP/1.1
//! connections, one call at a time each ([`Http1Pool`]), and one multiplexed HTTP/2
//! connection per address for gRPC ([`Http2Pool`]). Both find connections by the upstream's
//! `SocketAddr`, and both close what has sat unused for [`IDLE_TIMEOUT`].

mod http1;
mod http2;

use std::time::Duration;

use http::Request;
use hyper::client::conn::TrySendError;

pub(crate) use http1::Http1Pool;
pub(crate) use http2::Http2Pool;

use crate::client::{error_chain, UpstreamError};

/// How long an upstream connection may sit unused before it is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A request that a connection did not take. When the connection came from the pool it may
/// have closed while idle: the request is handed back, to go out on another one. Otherwise the
/// call fails, as a connect failure (which may be retried) if the request never left.
fn resend_or_fail<B>(
    mut e: TrySendError<Request<B>>,
    reused: bool,
) -> Result<Request<B>, UpstreamError> {
    match e.take_message() {
        Some(unsent) if reused => Ok(unsent),
        unsent => Err(UpstreamError {
            connect: unsent.is_some(),
            reason: error_chain(e.error()),
        }),
    }
}
