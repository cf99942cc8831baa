//! What a node announces to its peers: who it is, where it can be dialed, the services it
//! fronts and the topics they subscribe to. A catalog travels inside an
//! [`Update`](crate::update::Update), which frames it.
//!
//! Layout (version 4; version 3 is read as well, as version 4 with every batch 1, and version
//! 2 as version 3 without subscriptions):
//!
//! ```text
//! u8   version (4)
//! u8+  node name, u8+ datacenter     length-prefixed UTF-8
//! [32] public key
//! u8+  address                       `host:port` peers of its datacenter may dial; may be empty
//! u8   flags                         bit 0: the node is a gateway
//! u16  number of entries, then per entry: u8+ service name, u8 protocol, u8 healthy (0/1)
//! u16  number of subscriptions, then per subscription: u8+ pattern, u8+ group, u8+ service,
//!      u8+ path, u8 max attempts, u8+ dead-letter topic (empty: none),
//!      u16 batch (most messages in one delivery; 1: one message per delivery, binary mode)
//! ```
//!
//! A node's catalog is replaced whole whenever it changes, so a lost detail cannot linger.

use bytes::{BufMut, BytesMut};

use crate::header::Protocol;
use crate::identity::PublicKey;
use crate::wire::{put_bytes8, Reader};
use crate::Error;

const VERSION: u8 = 4;
/// The version before batched deliveries, still read: its subscriptions take one message at a
/// time.
const VERSION_3: u8 = 3;
/// The version before subscriptions, still read: a node that has not been upgraded yet
/// announces nothing of them.
const VERSION_2: u8 = 2;
const FLAG_GATEWAY: u8 = 1;

/// One service a node fronts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The service's name, as callers name it.
    pub service: String,
    /// What it speaks, which decides how calls are carried to it.
    pub protocol: Protocol,
    /// Whether its health check passes: callers prefer healthy endpoints.
    pub healthy: bool,
}

/// A subscription of one of the node's services to the messages of some topics. The broker of
/// a publishing node reads it to deliver; the tunnel only carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogSubscription {
    /// The topic pattern (`orders.*`, `orders.>`).
    pub pattern: String,
    /// The group: each message goes to one member of every matching group.
    pub group: String,
    /// The local service that receives the messages.
    pub service: String,
    /// Where on the service each message is POSTed.
    pub path: String,
    /// How many times a message is tried before it is dead-lettered or dropped.
    pub max_attempts: u8,
    /// The topic a message that cannot be delivered goes to; empty: none.
    pub dead_letter: String,
    /// The most messages one delivery carries: above 1, deliveries are CloudEvents batches.
    pub batch: u16,
}

/// A node's announcement of itself and its services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    /// The node's name, for people: `/peers` and `/routes` show it.
    pub node: String,
    /// The datacenter it is in.
    pub datacenter: String,
    /// Its public key: its identity.
    pub key: PublicKey,
    /// Where nodes of its datacenter dial it; empty when it cannot be dialed.
    pub address: String,
    /// Whether it carries traffic between its datacenter and others.
    pub gateway: bool,
    /// The services it fronts.
    pub services: Vec<CatalogEntry>,
    /// What its services subscribe to.
    pub subscriptions: Vec<CatalogSubscription>,
}

impl Catalog {
    /// Appends the catalog's encoding to `out`.
    pub fn write(&self, out: &mut BytesMut) {
        out.reserve(96 + self.services.len() * 24);
        out.put_u8(VERSION);
        put_bytes8(out, self.node.as_bytes());
        put_bytes8(out, self.datacenter.as_bytes());
        out.put_slice(&self.key.0);
        put_bytes8(out, self.address.as_bytes());
        out.put_u8(if self.gateway { FLAG_GATEWAY } else { 0 });
        out.put_u16(self.services.len().min(u16::MAX as usize) as u16);
        for entry in self.services.iter().take(u16::MAX as usize) {
            put_bytes8(out, entry.service.as_bytes());
            out.put_u8(entry.protocol.code());
            out.put_u8(entry.healthy as u8);
        }
        out.put_u16(self.subscriptions.len().min(u16::MAX as usize) as u16);
        for s in self.subscriptions.iter().take(u16::MAX as usize) {
            put_bytes8(out, s.pattern.as_bytes());
            put_bytes8(out, s.group.as_bytes());
            put_bytes8(out, s.service.as_bytes());
            put_bytes8(out, s.path.as_bytes());
            out.put_u8(s.max_attempts);
            put_bytes8(out, s.dead_letter.as_bytes());
            out.put_u16(s.batch);
        }
    }

    /// Reads one catalog from `r`, leaving what follows it.
    pub fn read(r: &mut Reader<'_>) -> Result<Catalog, Error> {
        let version = r.u8()?;
        if !matches!(version, VERSION | VERSION_3 | VERSION_2) {
            return Err(Error::Malformed("unknown catalog version"));
        }
        let node = r.str8()?.to_owned();
        let datacenter = r.str8()?.to_owned();
        let mut key = [0u8; 32];
        key.copy_from_slice(r.take(32)?);
        let address = r.str8()?.to_owned();
        let flags = r.u8()?;
        if flags & !FLAG_GATEWAY != 0 {
            return Err(Error::Malformed("unknown catalog flags"));
        }
        let count = r.u16()? as usize;
        // Each entry takes at least 3 bytes: refuse counts the buffer cannot hold before
        // allocating for them.
        if count * 3 > r.remaining() {
            return Err(Error::Malformed("catalog entry count exceeds its length"));
        }
        let mut services = Vec::with_capacity(count);
        for _ in 0..count {
            let service = r.str8()?.to_owned();
            let protocol = Protocol::from_code(r.u8()?)?;
            let healthy = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(Error::Malformed("bad health flag")),
            };
            services.push(CatalogEntry {
                service,
                protocol,
                healthy,
            });
        }
        let subscriptions = if version == VERSION_2 {
            Vec::new()
        } else {
            read_subscriptions(r, version)?
        };
        Ok(Catalog {
            node,
            datacenter,
            key: PublicKey(key),
            address,
            gateway: flags & FLAG_GATEWAY != 0,
            services,
            subscriptions,
        })
    }

    /// Decodes a buffer that holds exactly one catalog.
    pub fn decode(buf: &[u8]) -> Result<Catalog, Error> {
        let mut r = Reader::new(buf);
        let catalog = Catalog::read(&mut r)?;
        r.finish()?;
        Ok(catalog)
    }

    /// Whether the node fronts `service` (names match without regard to case).
    pub fn fronts(&self, service: &str) -> bool {
        self.services
            .iter()
            .any(|e| e.service.eq_ignore_ascii_case(service))
    }
}

fn read_subscriptions(r: &mut Reader<'_>, version: u8) -> Result<Vec<CatalogSubscription>, Error> {
    let count = r.u16()? as usize;
    // Each takes at least 6 bytes: refuse counts the buffer cannot hold before allocating.
    if count * 6 > r.remaining() {
        return Err(Error::Malformed("subscription count exceeds its length"));
    }
    let mut subscriptions = Vec::with_capacity(count);
    for _ in 0..count {
        subscriptions.push(CatalogSubscription {
            pattern: r.str8()?.to_owned(),
            group: r.str8()?.to_owned(),
            service: r.str8()?.to_owned(),
            path: r.str8()?.to_owned(),
            max_attempts: r.u8()?,
            dead_letter: r.str8()?.to_owned(),
            batch: if version == VERSION_3 {
                1
            } else {
                r.u16()?.max(1)
            },
        });
    }
    Ok(subscriptions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog {
            node: "b".into(),
            datacenter: "dc1".into(),
            key: PublicKey([7; 32]),
            address: "10.0.0.7:7700".into(),
            gateway: true,
            services: vec![
                CatalogEntry {
                    service: "greeter".into(),
                    protocol: Protocol::Http,
                    healthy: true,
                },
                CatalogEntry {
                    service: "redis".into(),
                    protocol: Protocol::Tcp,
                    healthy: false,
                },
            ],
            subscriptions: vec![CatalogSubscription {
                pattern: "orders.>".into(),
                group: "billing".into(),
                service: "billing".into(),
                path: "/events".into(),
                max_attempts: 5,
                dead_letter: "orders.dead".into(),
                batch: 100,
            }],
        }
    }

    #[test]
    fn catalog_round_trips() {
        let mut out = BytesMut::new();
        catalog().write(&mut out);
        assert_eq!(Catalog::decode(&out).expect("decodes"), catalog());
    }

    #[test]
    fn truncated_catalogs_are_refused() {
        let mut out = BytesMut::new();
        catalog().write(&mut out);
        for cut in 0..out.len() {
            assert!(Catalog::decode(&out[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        for bytes in crate::wire::garbage(20_000, 120) {
            let _ = Catalog::decode(&bytes);
        }
    }

    #[test]
    fn a_huge_entry_count_is_refused_without_allocating() {
        let mut out = BytesMut::new();
        Catalog {
            services: vec![],
            subscriptions: vec![],
            ..catalog()
        }
        .write(&mut out);
        let n = out.len();
        for at in [n - 4, n - 2] {
            let mut huge = out.clone();
            huge[at] = 0xff;
            huge[at + 1] = 0xff;
            assert!(Catalog::decode(&huge).is_err());
        }
    }

    #[test]
    fn a_version_2_catalog_reads_as_one_without_subscriptions() {
        let mut out = BytesMut::new();
        let old = Catalog {
            subscriptions: vec![],
            ..catalog()
        };
        old.write(&mut out);
        // Version 2 is version 3 without the subscription count at the end.
        out[0] = VERSION_2;
        out.truncate(out.len() - 2);
        assert_eq!(Catalog::decode(&out).expect("decodes"), old);
    }

    #[test]
    fn a_version_3_catalog_reads_with_one_message_per_delivery() {
        let mut out = BytesMut::new();
        catalog().write(&mut out);
        // Version 3 is version 4 without each subscription's batch, which ends the catalog here.
        out[0] = VERSION_3;
        out.truncate(out.len() - 2);
        let read = Catalog::decode(&out).expect("decodes");
        assert_eq!(read.subscriptions[0].batch, 1);
        assert_eq!(read.subscriptions[0].dead_letter, "orders.dead");
    }
}
