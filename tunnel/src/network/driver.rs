//! The peers' driver: performs what they decide — dials configured and discovered peers when
//! their timers come due, closes links — and reports back what came of it. Also the links
//! other nodes open, admitted under flood control.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::{debug, info, warn};

use super::session;
use super::state::{now, Shared};
use crate::admission::{Admission, Admissions};
use crate::identity::PublicKey;
use crate::link::Link;
use crate::peers::{Action, Attempt, LinkKind};
use crate::Chain;

/// Performs the peers' actions as they come, and fires their timers, until the node stops.
pub(super) async fn drive(shared: Arc<Shared>) {
    while !shared.stopping() {
        let (actions, next) = {
            let mut core = shared.core();
            core.peers.handle_timeout(now());
            let actions: Vec<_> = std::iter::from_fn(|| core.peers.poll_action()).collect();
            core.peers.take_changed();
            (actions, core.peers.next_timeout())
        };
        for action in actions {
            match action {
                Action::Dial {
                    key,
                    address,
                    attempt,
                } => {
                    tokio::spawn(dial(shared.clone(), key, address, attempt));
                }
                Action::Close { link, reason } => link.close(reason.as_str()),
            }
        }
        let timer = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = timer => {}
            _ = shared.woken() => {}
        }
    }
}

/// Dials a kept peer, runs its link until it closes, and tells the peers each outcome.
async fn dial(shared: Arc<Shared>, key: PublicKey, address: String, attempt: Attempt) {
    let link = match shared.transport.dial(&address, &key).await {
        Ok(link) => link,
        Err(e) => {
            let first = shared.update(|core| core.peers.dial_failed(&key, attempt, now()));
            if first {
                warn!(peer = %address, error = %Chain(&e), "cannot reach peer; retrying");
            } else {
                debug!(peer = %address, error = %Chain(&e), "cannot reach peer");
            }
            return;
        }
    };
    let wanted = shared.update(|core| {
        core.peers
            .registered(key, link.clone(), LinkKind::Kept(attempt), None)
    });
    if !wanted {
        link.close("peer removed");
        return;
    }
    info!(peer = %address, "link up");
    match session::run(shared, link, key).await {
        Ok(()) => info!(peer = %address, "link down"),
        Err(e) => warn!(peer = %address, error = %Chain(&e), "link down"),
    }
}

fn admit(admissions: &Mutex<Admissions>) -> MutexGuard<'_, Admissions> {
    admissions.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes the links other nodes open, under flood control, and runs each until it closes.
pub(super) async fn accept_links(shared: Arc<Shared>) {
    let admissions = Arc::new(Mutex::new(Admissions::default()));
    while let Some(incoming) = shared.transport.accept().await {
        let remote = incoming.remote_address();
        let decision = admit(&admissions).admit(
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
            admit(&admissions).done();
            let link = match handshake {
                Ok(conn) => Link::new(conn),
                Err(e) => return debug!(%remote, error = %e, "incoming handshake failed"),
            };
            // The handshake proved the key; who holds it is known once its hello arrives.
            let Some(key) = link.peer_key() else {
                return link.close("no authenticated key");
            };
            shared.update(|core| {
                core.peers
                    .registered(key, link.clone(), LinkKind::Accepted, None)
            });
            if let Err(e) = session::run(shared, link, key).await {
                debug!(%remote, error = %Chain(&e), "incoming link ended");
            }
        });
    }
}
