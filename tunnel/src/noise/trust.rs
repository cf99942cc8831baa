//! Which keys may connect to this node, and the certificates that vouch for keys.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::certificate::{self, Certificate, Kind};
use crate::identity::PublicKey;

/// The keys allowed to open links to this node:
/// - those of its configured peers, its `trust` list and its `trust_file`, replaced whole when
///   the config or the file changes;
/// - the nodes the mesh vouches for. A node is vouched for while the route table holds it: a
///   sidecar can only announce itself, so only a gateway, or the node itself over a trusted
///   link, can bring a key into the table (see `table/rules.rs`);
/// - the peers a registry discovered, added and removed one by one and left alone by a
///   replace: a config reload must not forget what the registry found;
/// - any key presenting a node certificate that one of the trusted CAs signed, valid now.
///
/// It also holds this node's own certificate, which its handshakes present. Links already up
/// stay up when a key leaves or a CA is removed.
#[derive(Debug, Default)]
pub struct Trust {
    keys: RwLock<HashSet<PublicKey>>,
    vouched: RwLock<HashSet<PublicKey>>,
    discovered: RwLock<HashSet<PublicKey>>,
    authorities: RwLock<Vec<Certificate>>,
    own: RwLock<Option<Arc<Certificate>>>,
}

/// Why a handshake was refused, as `ferry_tunnel_handshakes_total{result}` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// No list names the key and no trusted CA vouches for it.
    Untrusted,
    /// A trusted CA signed its certificate, but not for now, and no list names the key.
    Expired,
    /// A certificate that does not decode, names another key, or whose signature does not
    /// verify under the CA it names: forged or altered. Refused even for a listed key.
    BadCertificate,
}

impl Refused {
    /// The `result` label of the handshake counter.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Untrusted => "untrusted",
            Refused::Expired => "expired",
            Refused::BadCertificate => "bad-certificate",
        }
    }

    /// What the refused peer is told, in the reason of the connection's close.
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Untrusted => "untrusted key",
            Refused::Expired => "certificate expired or not yet valid",
            Refused::BadCertificate => "bad certificate",
        }
    }
}

/// Who the far end of a link is, as its handshake proved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Its key.
    pub key: PublicKey,
    /// Its certificate, when it presented one that a trusted CA signed and that is valid.
    /// What it permits (the services the node may announce, its name and datacenter) binds
    /// the node for the life of the link.
    pub certificate: Option<Arc<Certificate>>,
}

impl Trust {
    /// Trusts `keys`, from the config; the mesh and registries add others as they go.
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Trust {
        Trust {
            keys: RwLock::new(keys.into_iter().collect()),
            ..Trust::default()
        }
    }

    /// Whether a trust list (configured, vouched or discovered) names `key`.
    pub fn allows(&self, key: &PublicKey) -> bool {
        let read = |set: &RwLock<HashSet<PublicKey>>| read(set).contains(key);
        read(&self.keys) || read(&self.vouched) || read(&self.discovered)
    }

    /// Decides on a peer holding `key` that presented `presented` (a certificate's bytes) in
    /// its handshake. `dialed`: this node chose to dial that key, which trusts it as a list
    /// would. A certificate counts only when this node trusts its CA; one from a CA it does
    /// not know is as good as none.
    pub(crate) fn admit(
        &self,
        key: PublicKey,
        presented: Option<&[u8]>,
        dialed: bool,
        now: SystemTime,
    ) -> Result<PeerIdentity, Refused> {
        let listed = dialed || self.allows(&key);
        let without = |why| {
            listed
                .then_some(PeerIdentity {
                    key,
                    certificate: None,
                })
                .ok_or(why)
        };
        let authorities = read(&self.authorities);
        let Some(bytes) = presented.filter(|_| !authorities.is_empty()) else {
            return without(Refused::Untrusted);
        };
        let cert = Certificate::decode(bytes).map_err(|_| Refused::BadCertificate)?;
        if cert.subject.kind != Kind::Node || cert.subject.key != key.0 {
            return Err(Refused::BadCertificate);
        }
        let Some(ca) = authorities.iter().find(|ca| ca.subject.key == cert.issuer) else {
            return without(Refused::Untrusted);
        };
        match cert.verify(ca, now) {
            Ok(()) => Ok(PeerIdentity {
                key,
                certificate: Some(Arc::new(cert)),
            }),
            Err(certificate::Refusal::Expired(_)) => without(Refused::Expired),
            Err(_) => Err(Refused::BadCertificate),
        }
    }

    /// Records that the mesh vouches for `key` (`true`) or no longer does.
    pub(crate) fn vouch(&self, key: PublicKey, vouched: bool) {
        toggle(&self.vouched, key, vouched);
    }

    /// Replaces the configured keys; vouched and discovered ones stay.
    pub fn replace(&self, keys: impl IntoIterator<Item = PublicKey>) {
        *write(&self.keys) = keys.into_iter().collect();
    }

    /// Trusts a key a registry discovered.
    pub fn add_discovered(&self, key: PublicKey) {
        toggle(&self.discovered, key, true);
    }

    /// Stops trusting a discovered key (a configured or vouched one stays trusted).
    pub fn remove_discovered(&self, key: &PublicKey) {
        toggle(&self.discovered, *key, false);
    }

    /// Replaces the trusted CAs: the keys their certificates vouch for are trusted from the
    /// next handshake on. Only CA certificates are kept.
    pub fn set_authorities(&self, authorities: Vec<Certificate>) {
        *write(&self.authorities) = authorities
            .into_iter()
            .filter(|ca| ca.subject.kind == Kind::Ca)
            .collect();
    }

    /// The trusted CAs.
    pub fn authorities(&self) -> Vec<Certificate> {
        read(&self.authorities).clone()
    }

    /// Replaces this node's own certificate, presented from the next handshake on.
    pub fn set_certificate(&self, certificate: Option<Certificate>) {
        *write(&self.own) = certificate.map(Arc::new);
    }

    /// This node's own certificate.
    pub fn certificate(&self) -> Option<Arc<Certificate>> {
        read(&self.own).clone()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

fn toggle(set: &RwLock<HashSet<PublicKey>>, key: PublicKey, present: bool) {
    let mut set = write(set);
    if present {
        set.insert(key);
    } else {
        set.remove(&key);
    }
}

#[cfg(test)]
mod tests;
