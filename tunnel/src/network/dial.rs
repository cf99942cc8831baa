//! Links to configured peers, kept up with jittered backoff, and links that others open,
//! admitted under flood control.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// Keeps a link to a configured peer, redialing with jittered exponential backoff.
pub(super) async fn keep_linked(shared: Arc<Shared>, peer: PeerAddress) {
    let mut backoff = BACKOFF_MIN;
    let mut logged = false;
    loop {
        lock(&shared.dialed).insert(peer.address.clone(), "connecting");
        match connect(&shared, &peer.address, &peer.key).await {
            Ok(link) => {
                info!(peer = %peer.address, "link up");
                backoff = BACKOFF_MIN;
                logged = false;
                lock(&shared.dialed).insert(peer.address.clone(), "up");
                let result = run_link(&shared, link, Some(&peer.address)).await;
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
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
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
