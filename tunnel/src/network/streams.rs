//! The streams peers open, handed to the proxy's [`StreamHandler`] once it is ready for them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::debug;

use crate::header::StreamHeader;
use crate::identity::PublicKey;
use crate::link::{Link, TunnelStream};
use crate::noise::PeerIdentity;

/// A peer can take this long to send a stream's header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the streams peers open: the proxy's inbound side. Each stream is handed over on the
/// task that read its header, so a call costs no extra task or channel hop.
pub type StreamHandler =
    Arc<dyn Fn(IncomingStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A stream a peer opened, with its header read.
#[derive(Debug)]
pub struct IncomingStream {
    /// What the stream is for.
    pub header: StreamHeader,
    /// The stream itself, past its header.
    pub stream: TunnelStream,
    /// The node that opened it, as its link's handshake proved: its key, and its
    /// certificate when a trusted CA vouched for it. Through gateways, still the node that
    /// opened it: a relayed session's handshake is end to end.
    pub peer: PeerIdentity,
}

/// Where the streams of every link go: to the handler, once one is set.
pub(super) struct Streams {
    handler: watch::Sender<Option<StreamHandler>>,
}

impl Streams {
    pub(super) fn new() -> Streams {
        Streams {
            handler: watch::channel(None).0,
        }
    }

    /// Starts serving streams with `handler`.
    pub(super) fn serve_with(&self, handler: StreamHandler) {
        self.handler.send_replace(Some(handler));
    }

    /// Hands each stream `peer` opens on `link` to the handler until the link closes. Streams
    /// that come before there is a handler wait in quinn, bounded by its stream limit.
    pub(super) async fn accept(&self, link: Link, key: PublicKey) {
        let peer = link.peer().unwrap_or(PeerIdentity {
            key,
            certificate: None,
        });
        let mut handler = self.handler.subscribe();
        let handler = match handler.wait_for(Option::is_some).await {
            Ok(ready) => ready.clone(),
            Err(_) => return,
        };
        let Some(handler) = handler else {
            return;
        };
        while let Ok(mut stream) = link.accept().await {
            let (handler, peer) = (handler.clone(), peer.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HEADER_TIMEOUT, stream.read_header()).await {
                    Ok(Ok(header)) => {
                        handler(IncomingStream {
                            header,
                            stream,
                            peer,
                        })
                        .await
                    }
                    Ok(Err(e)) => {
                        debug!(error = %e, "bad stream header");
                        stream.reset();
                    }
                    Err(_) => stream.reset(),
                }
            });
        }
    }
}
