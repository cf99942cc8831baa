//! Links to configured and discovered peers, kept up with jittered backoff, and links that others open,
//! admitted under flood control.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::session::run_link;
use super::{lock, PeerAddress, Shared};
use crate::admission::{Admission, Admissions};
use crate::identity::PublicKey;
use crate::link::Link;
use crate::Error;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub(super) async fn accept_links(shared: Arc<Shared>) {
    let admissions = Arc::new(Mutex::new(Admissions::default()));
    while let Some(incoming) = shared.transport.accept().await {
        let remote = incoming.remote_address();
        let decision = lock(&admissions).admit(
            std::time::Instant::now(),
            remote.ip(),
            incoming.remote_address_validated(),
        );
        metrics::counter!("ferry_tunnel_incoming_total", "decision" => decision.as_str())
            .increment(1);
        shared.admitted[decision as usize].fetch_add(1, Ordering::Relaxed);
        match decision {
            Admission::Accept => {}
            Admission::Retry => {
                if let Err(e) = incoming.retry() {
                    // Only a client that already echoed a token can get here, and those
                    // are validated; drop it rather than guess.
                    debug!(%remote, error = %e, "cannot send a retry");
                }
                continue;
            }
            Admission::Drop => {
                incoming.ignore();
                continue;
            }
        }
        let shared = shared.clone();
        let admissions = admissions.clone();
        tokio::spawn(async move {
            let handshake = incoming.await;
            lock(&admissions).done();
            match handshake {
                Ok(conn) => {
                    let link = Link::new(conn);
                    if let Err(e) = run_link(&shared, link, None).await {
                        debug!(%remote, error = %e, "incoming link ended");
                    }
                }
                Err(e) => debug!(%remote, error = %e, "incoming handshake failed"),
            }
        });
    }
}

/// Keeps a link to a peer, redialing with jittered exponential backoff. A configured peer's
/// loop runs for the node's life; a discovered peer's (`stop` given) until `stop` turns true,
/// when its link is closed, cleaned up as any closed link is, and the loop ends.
pub(super) async fn keep_linked(
    shared: Arc<Shared>,
    peer: PeerAddress,
    mut stop: Option<watch::Receiver<bool>>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut logged = false;
    loop {
        lock(&shared.dialed).insert(peer.address.clone(), "connecting");
        let connected = tokio::select! {
            connected = connect(&shared, &peer.address, &peer.key) => connected,
            _ = stopped(&mut stop) => break,
        };
        match connected {
            Ok(link) => {
                info!(peer = %peer.address, "link up");
                backoff = BACKOFF_MIN;
                logged = false;
                lock(&shared.dialed).insert(peer.address.clone(), "up");
                let conn = link.connection().clone();
                let run = run_link(&shared, link, Some(&peer.address));
                tokio::pin!(run);
                let result = tokio::select! {
                    result = &mut run => result,
                    _ = stopped(&mut stop) => {
                        conn.close(0u32.into(), b"peer removed");
                        run.await
                    }
                };
                lock(&shared.dialed).insert(peer.address.clone(), "down");
                match result {
                    Ok(()) => info!(peer = %peer.address, "link down"),
                    Err(e) => warn!(peer = %peer.address, error = %e, "link down"),
                }
            }
            Err(e) if !logged => {
                lock(&shared.unsettled).remove(&peer.address);
                warn!(peer = %peer.address, error = %e, "cannot reach peer; retrying");
                logged = true;
            }
            Err(e) => debug!(peer = %peer.address, error = %e, "cannot reach peer"),
        }
        tokio::select! {
            _ = tokio::time::sleep(jitter(backoff)) => {}
            _ = stopped(&mut stop) => break,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    lock(&shared.dialed).remove(&peer.address);
}

/// Resolves once a discovered peer's dial loop is told to stop; never for a configured peer.
async fn stopped(stop: &mut Option<watch::Receiver<bool>>) {
    match stop {
        // A dropped sender stops the loop too: nobody is left to want the peer.
        Some(stop) => {
            let _ = stop.wait_for(|stop| *stop).await;
        }
        None => std::future::pending().await,
    }
}

pub(super) async fn connect(
    shared: &Shared,
    address: &str,
    key: &PublicKey,
) -> Result<Link, Error> {
    let addr = tokio::net::lookup_host(address)
        .await
        .map_err(|e| Error::Connect {
            addr: address.to_owned(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| Error::Connect {
            addr: address.to_owned(),
            reason: "name has no address".into(),
        })?;
    shared.transport.connect(addr, key).await
}

/// Half to all of `backoff`, so that peers that lost each other do not redial in lockstep.
fn jitter(backoff: Duration) -> Duration {
    let random = RandomState::new().hash_one(std::time::SystemTime::now());
    let half = backoff / 2;
    half + half.mul_f64((random % 1000) as f64 / 1000.0)
}
