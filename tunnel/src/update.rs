//! What nodes tell each other about routes. Each side of a link writes its updates to one
//! unidirectional stream: QUIC delivers them reliably and in order, so an update can be a
//! change (an announcement or a withdrawal) rather than the whole table, as in BGP. When a
//! link comes up, each side sends everything it exports to the other, then `Synced`.
//!
//! Layout of one update:
//!
//! ```text
//! u32  length of what follows
//! u8   kind            1 = announce, 2 = withdraw, 3 = synced
//! announce: u32 metric (µs), u8 n, n × u8+ datacenter (the path: origin first), catalog
//! withdraw: [32] the key of the node whose routes are withdrawn
//! synced:   nothing
//! ```

use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use crate::catalog::Catalog;
use crate::identity::PublicKey;
use crate::wire::{put_bytes8, Reader};
use crate::Error;

/// The largest update a node accepts from a peer.
pub(crate) const MAX_UPDATE_LEN: usize = 1 << 20;

const ANNOUNCE: u8 = 1;
const WITHDRAW: u8 = 2;
const SYNCED: u8 = 3;

/// A route to one node: its catalog, the datacenters the announcement crossed (the node's
/// own first), and its cost from the sender in microseconds of round-trip time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    /// The node the route leads to, and what it fronts.
    pub catalog: Arc<Catalog>,
    /// The datacenters the announcement crossed, the node's own first.
    pub path: Vec<String>,
    /// Microseconds of round-trip time from the sender to the node.
    pub metric: u32,
}

/// One message on a link's update stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// A route to a node, new or changed; a node's first announcement on a link is its hello.
    Announce(Advert),
    /// The sender no longer has a route to the node with this key.
    Withdraw(PublicKey),
    /// Everything the sender exports has been sent once.
    Synced,
}

impl Update {
    /// Appends the update, prefixed by its u32 length, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u32(0);
        match self {
            Update::Announce(advert) => {
                out.put_u8(ANNOUNCE);
                out.put_u32(advert.metric);
                out.put_u8(advert.path.len().min(u8::MAX as usize) as u8);
                for dc in advert.path.iter().take(u8::MAX as usize) {
                    put_bytes8(out, dc.as_bytes());
                }
                advert.catalog.write(out);
            }
            Update::Withdraw(key) => {
                out.put_u8(WITHDRAW);
                out.put_slice(&key.0);
            }
            Update::Synced => out.put_u8(SYNCED),
        }
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// Decodes an update body (without its length prefix).
    pub fn decode(buf: &[u8]) -> Result<Update, Error> {
        if buf.len() > MAX_UPDATE_LEN {
            return Err(Error::Malformed("update too long"));
        }
        let mut r = Reader::new(buf);
        let update = match r.u8()? {
            ANNOUNCE => {
                let metric = r.u32()?;
                let hops = r.u8()? as usize;
                let mut path = Vec::with_capacity(hops.min(r.remaining()));
                for _ in 0..hops {
                    path.push(r.str8()?.to_owned());
                }
                let catalog = Arc::new(Catalog::read(&mut r)?);
                Update::Announce(Advert {
                    catalog,
                    path,
                    metric,
                })
            }
            WITHDRAW => {
                let mut key = [0u8; 32];
                key.copy_from_slice(r.take(32)?);
                Update::Withdraw(PublicKey(key))
            }
            SYNCED => Update::Synced,
            _ => return Err(Error::Malformed("unknown update kind")),
        };
        r.finish()?;
        Ok(update)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CatalogEntry;
    use crate::header::Protocol;

    fn announce() -> Update {
        Update::Announce(Advert {
            catalog: Arc::new(Catalog {
                node: "b".into(),
                datacenter: "dc2".into(),
                key: PublicKey([7; 32]),
                address: String::new(),
                gateway: false,
                subscriptions: Vec::new(),
                services: vec![CatalogEntry {
                    service: "greeter".into(),
                    protocol: Protocol::Grpc,
                    healthy: true,
                }],
            }),
            path: vec!["dc2".into(), "dc3".into()],
            metric: 1234,
        })
    }

    #[test]
    fn updates_round_trip() {
        for update in [
            announce(),
            Update::Withdraw(PublicKey([9; 32])),
            Update::Synced,
        ] {
            let mut out = BytesMut::new();
            update.encode(&mut out);
            let len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
            assert_eq!(len, out.len() - 4);
            assert_eq!(Update::decode(&out[4..]).expect("decodes"), update);
        }
    }

    #[test]
    fn truncated_updates_are_refused() {
        let mut out = BytesMut::new();
        announce().encode(&mut out);
        for cut in 4..out.len() {
            assert!(Update::decode(&out[4..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        for bytes in crate::wire::garbage(20_000, 160) {
            let _ = Update::decode(&bytes);
        }
    }
}
