//! Mesh certificates: a CA's Ed25519 signature binding a node's X25519 key to a name, a
//! datacenter, the services it may front and its groups, for a window of time. A CA
//! certificate is the same structure, self-signed, whose key is the CA's Ed25519 key.
//!
//! Layout (version 1, `docs/certificates.md`), all integers big-endian:
//!
//! ```text
//! u8   version (1)
//! u8   kind                     1: node, 2: CA
//! [32] subject key              node: its X25519 public key; CA: its Ed25519 public key
//! u8+  name, u8+ datacenter     length-prefixed UTF-8 (the datacenter may be empty)
//! u8   number of services, then each u8+
//! u8   number of groups, then each u8+
//! u64  not before, u64 not after   seconds since the Unix epoch
//! [32] issuer                   the signing CA's Ed25519 public key
//! [64] signature                Ed25519, by the issuer, over "ferry certificate v1\0" and
//!                               every byte before it
//! ```
//!
//! Files hold it as base64 between `-----BEGIN FERRY CERTIFICATE-----` and
//! `-----END FERRY CERTIFICATE-----` lines. A CA's private key file is its 32-byte Ed25519 seed
//! in base64, mode 0600, as a node's key file is.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::{BufMut, BytesMut};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use crate::identity::{decode_key, random_key};
use crate::time::rfc3339;
use crate::wire::{put_bytes8, Reader};
use crate::Error;

const VERSION: u8 = 1;
const SIGNED_CONTEXT: &[u8] = b"ferry certificate v1\0";
const BEGIN: &str = "-----BEGIN FERRY CERTIFICATE-----";
const END: &str = "-----END FERRY CERTIFICATE-----";
/// The most services or groups one certificate names.
pub const MAX_NAMES: usize = 255;

/// What a certificate vouches for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A node: its X25519 key, trusted by nodes that trust the issuer.
    Node,
    /// A certificate authority: its Ed25519 key, which signs node certificates.
    Ca,
}

/// Who or what a certificate vouches for: what the CA signs besides the validity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// A node's or a CA's certificate.
    pub kind: Kind,
    /// The key it vouches for: a node's X25519 key, a CA's Ed25519 key.
    pub key: [u8; 32],
    /// The node's (or CA's) name.
    pub name: String,
    /// The node's datacenter; empty for a CA or when not bound.
    pub datacenter: String,
    /// The services the node may front.
    pub services: Vec<String>,
    /// The groups the node belongs to.
    pub groups: Vec<String>,
}

/// A mesh certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    /// What it vouches for.
    pub subject: Subject,
    /// Valid from, seconds since the Unix epoch.
    pub not_before: u64,
    /// Valid until, seconds since the Unix epoch.
    pub not_after: u64,
    /// The Ed25519 public key of the CA that signed it.
    pub issuer: [u8; 32],
    signature: [u8; 64],
}

/// Why a certificate is not to be trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Outside its validity window.
    #[error("expired or not yet valid (valid {0})")]
    Expired(String),
    /// Not signed by the CA it is checked against, or altered.
    #[error("its signature does not verify against the CA")]
    BadSignature,
    /// Checked against a certificate that is not a CA's.
    #[error("the issuer given is not a CA certificate")]
    NotACa,
}

fn seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A CA's signing key.
pub struct CaKey {
    pair: Ed25519KeyPair,
    seed: [u8; 32],
}

impl CaKey {
    /// A fresh random CA key.
    pub fn generate() -> Result<CaKey, Error> {
        CaKey::from_seed(random_key()?)
    }

    fn from_seed(seed: [u8; 32]) -> Result<CaKey, Error> {
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| Error::InvalidKey("not an Ed25519 seed".into()))?;
        Ok(CaKey { pair, seed })
    }

    /// Reads a CA key file's text (base64 of the seed).
    pub fn from_base64(text: &str) -> Result<CaKey, Error> {
        CaKey::from_seed(decode_key(text)?)
    }

    /// The key file's text.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.seed)
    }

    /// The CA's public key: what its certificates name as issuer.
    pub fn public(&self) -> [u8; 32] {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.pair.public_key().as_ref());
        key
    }

    /// Signs a certificate for `subject`, valid from `not_before` for `valid_for`.
    pub fn sign(
        &self,
        subject: Subject,
        not_before: SystemTime,
        valid_for: Duration,
    ) -> Result<Certificate, Error> {
        if subject.services.len() > MAX_NAMES || subject.groups.len() > MAX_NAMES {
            return Err(Error::Setup(
                "a certificate names at most 255 services and groups",
            ));
        }
        let names = [&subject.name, &subject.datacenter]
            .into_iter()
            .chain(&subject.services)
            .chain(&subject.groups);
        for name in names {
            if name.len() > 255 {
                return Err(Error::Setup(
                    "a name in a certificate has at most 255 bytes",
                ));
            }
        }
        let not_before = seconds(not_before);
        let mut certificate = Certificate {
            subject,
            not_before,
            not_after: not_before.saturating_add(valid_for.as_secs()),
            issuer: self.public(),
            signature: [0; 64],
        };
        let mut signed = BytesMut::from(SIGNED_CONTEXT);
        certificate.write_claims(&mut signed);
        certificate
            .signature
            .copy_from_slice(self.pair.sign(&signed).as_ref());
        Ok(certificate)
    }
}

impl Certificate {
    fn write_claims(&self, out: &mut BytesMut) {
        let subject = &self.subject;
        out.put_u8(VERSION);
        out.put_u8(match subject.kind {
            Kind::Node => 1,
            Kind::Ca => 2,
        });
        out.put_slice(&subject.key);
        put_bytes8(out, subject.name.as_bytes());
        put_bytes8(out, subject.datacenter.as_bytes());
        for list in [&subject.services, &subject.groups] {
            out.put_u8(list.len().min(MAX_NAMES) as u8);
            for name in list.iter().take(MAX_NAMES) {
                put_bytes8(out, name.as_bytes());
            }
        }
        out.put_u64(self.not_before);
        out.put_u64(self.not_after);
        out.put_slice(&self.issuer);
    }

    /// The certificate's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = BytesMut::with_capacity(200);
        self.write_claims(&mut out);
        out.put_slice(&self.signature);
        out.to_vec()
    }

    /// Reads a certificate's bytes; its signature is not checked (see [`Certificate::verify`]).
    pub fn decode(buf: &[u8]) -> Result<Certificate, Error> {
        let mut r = Reader::new(buf);
        if r.u8()? != VERSION {
            return Err(Error::Malformed("unknown certificate version"));
        }
        let kind = match r.u8()? {
            1 => Kind::Node,
            2 => Kind::Ca,
            _ => return Err(Error::Malformed("unknown certificate kind")),
        };
        let key = array(r.take(32)?);
        let name = r.str8()?.to_owned();
        let datacenter = r.str8()?.to_owned();
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let count = r.u8()?;
            for _ in 0..count {
                list.push(r.str8()?.to_owned());
            }
        }
        let [services, groups] = lists;
        let not_before = u64::from_be_bytes(array(r.take(8)?));
        let not_after = u64::from_be_bytes(array(r.take(8)?));
        let issuer = array(r.take(32)?);
        let signature = array(r.take(64)?);
        r.finish()?;
        Ok(Certificate {
            subject: Subject {
                kind,
                key,
                name,
                datacenter,
                services,
                groups,
            },
            not_before,
            not_after,
            issuer,
            signature,
        })
    }

    /// Whether `ca` signed this certificate and it is valid at `now`. A CA's own certificate
    /// is checked against itself.
    pub fn verify(&self, ca: &Certificate, now: SystemTime) -> Result<(), Refusal> {
        if ca.subject.kind != Kind::Ca {
            return Err(Refusal::NotACa);
        }
        let mut signed = BytesMut::from(SIGNED_CONTEXT);
        self.write_claims(&mut signed);
        let valid = self.issuer == ca.subject.key
            && UnparsedPublicKey::new(&ED25519, &ca.subject.key)
                .verify(&signed, &self.signature)
                .is_ok();
        if !valid {
            return Err(Refusal::BadSignature);
        }
        let now = seconds(now);
        if now < self.not_before || now > self.not_after {
            return Err(Refusal::Expired(self.validity()));
        }
        Ok(())
    }

    /// `FROM to UNTIL`, in RFC 3339.
    pub fn validity(&self) -> String {
        format!(
            "{} to {}",
            rfc3339(self.not_before),
            rfc3339(self.not_after)
        )
    }

    /// The certificate as a file holds it.
    pub fn to_pem(&self) -> String {
        let text = BASE64.encode(self.encode());
        let mut pem = format!("{BEGIN}\n");
        for line in text.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str(END);
        pem.push('\n');
        pem
    }

    /// Reads a certificate file's text.
    pub fn from_pem(text: &str) -> Result<Certificate, Error> {
        let body = text
            .split_once(BEGIN)
            .and_then(|(_, rest)| rest.split_once(END))
            .map(|(body, _)| body)
            .ok_or(Error::Malformed("no FERRY CERTIFICATE block"))?;
        let compact: String = body.split_whitespace().collect();
        let bytes = BASE64
            .decode(compact)
            .map_err(|_| Error::Malformed("the certificate is not base64"))?;
        Certificate::decode(&bytes)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Node => "node",
            Kind::Ca => "ca",
        })
    }
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests;
