//! What a node announces to its peers: who it is and the services it fronts.
//!
//! Layout (version 1):
//!
//! ```text
//! u8   version (1)
//! u8+  node name, u8+ datacenter     length-prefixed UTF-8
//! [32] public key
//! u16  number of entries, then per entry: u8+ service name, u8 protocol, u8 healthy (0/1)
//! ```
//!
//! On a link each side writes catalogs to one unidirectional stream, each prefixed by a u32
//! length; every catalog replaces the previous one whole, so a lost update cannot leave a stale
//! entry behind.

use bytes::{BufMut, BytesMut};

use crate::header::Protocol;
use crate::identity::PublicKey;
use crate::wire::{put_bytes8, Reader};
use crate::Error;

const VERSION: u8 = 1;

/// The largest catalog a node accepts from a peer.
pub const MAX_CATALOG_LEN: usize = 1 << 20;

/// One service a node fronts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogEntry {
    pub service: String,
    pub protocol: Protocol,
    pub healthy: bool,
}

/// A node's announcement of itself and its services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    pub node: String,
    pub datacenter: String,
    pub key: PublicKey,
    pub services: Vec<CatalogEntry>,
}

impl Catalog {
    /// Appends the catalog, prefixed by its u32 length, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let mut body = BytesMut::with_capacity(64 + self.services.len() * 24);
        body.put_u8(VERSION);
        put_bytes8(&mut body, self.node.as_bytes());
        put_bytes8(&mut body, self.datacenter.as_bytes());
        body.put_slice(&self.key.0);
        body.put_u16(self.services.len().min(u16::MAX as usize) as u16);
        for entry in self.services.iter().take(u16::MAX as usize) {
            put_bytes8(&mut body, entry.service.as_bytes());
            body.put_u8(entry.protocol.code());
            body.put_u8(entry.healthy as u8);
        }
        out.put_u32(body.len() as u32);
        out.put_slice(&body);
    }

    /// Decodes a catalog body (without its length prefix).
    pub fn decode(buf: &[u8]) -> Result<Catalog, Error> {
        if buf.len() > MAX_CATALOG_LEN {
            return Err(Error::Malformed("catalog too long"));
        }
        let mut r = Reader::new(buf);
        if r.u8()? != VERSION {
            return Err(Error::Malformed("unknown catalog version"));
        }
        let node = r.str8()?.to_owned();
        let datacenter = r.str8()?.to_owned();
        let mut key = [0u8; 32];
        key.copy_from_slice(r.take(32)?);
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
        r.finish()?;
        Ok(Catalog {
            node,
            datacenter,
            key: PublicKey(key),
            services,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog {
            node: "b".into(),
            datacenter: "dc1".into(),
            key: PublicKey([7; 32]),
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
        }
    }

    #[test]
    fn catalog_round_trips() {
        let mut out = BytesMut::new();
        catalog().encode(&mut out);
        assert_eq!(Catalog::decode(&out[4..]).expect("decodes"), catalog());
    }

    #[test]
    fn truncated_catalogs_are_refused() {
        let mut out = BytesMut::new();
        catalog().encode(&mut out);
        for cut in 0..out.len() - 4 {
            assert!(Catalog::decode(&out[4..4 + cut]).is_err(), "cut at {cut}");
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
            ..catalog()
        }
        .encode(&mut out);
        let n = out.len();
        out[n - 2] = 0xff;
        out[n - 1] = 0xff;
        assert!(Catalog::decode(&out[4..]).is_err());
    }
}
