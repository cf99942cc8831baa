//! The tunnel's handshake and packet protection: Noise IK as a QUIC crypto session.
//!
//! A node's X25519 static key is its identity. The dialing node knows the key of the node it
//! dials (from its peer list) and proves its own in the first message; the dialed node accepts
//! only keys it trusts. After two messages both hold keys with forward secrecy, from which the
//! QUIC Handshake and 1-RTT keys derive. QUIC's own header protection, key updates and Initial
//! packet obfuscation are kept; 0-RTT is not offered. `docs/tunnel.md` explains it in full.

mod keys;
mod message;
mod retry;
mod session;
mod trust;

use std::sync::Arc;

use quinn_proto::crypto::{self, KeyPair, Keys};
use quinn_proto::transport_parameters::TransportParameters;
use quinn_proto::{ConnectError, ConnectionId, Side};
use rustls::crypto::ring::cipher_suite;
use rustls::quic::Algorithm;
use rustls::Tls13CipherSuite;

pub(crate) use message::split_payload;
pub use message::MAX_CERTIFICATE;
pub use session::HandshakeData;
pub use trust::{PeerIdentity, Refused, Trust};

use crate::identity::{Identity, PublicKey};
use crate::Error;

/// QUIC version 1: the packet formats and Initial obfuscation of RFC 9000/9001.
const QUIC_V1: u32 = 1;

/// The AEAD of a link: AES-256-GCM where the CPU has AES instructions, else ChaCha20-Poly1305.
/// The dialing node chooses; every node accepts both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Suite {
    AesGcm,
    ChaChaPoly,
}

impl Suite {
    /// What this machine runs fastest.
    pub(crate) fn preferred() -> Suite {
        if cpu_has_aes() {
            Suite::AesGcm
        } else {
            Suite::ChaChaPoly
        }
    }

    fn code(self) -> u8 {
        match self {
            Suite::AesGcm => 1,
            Suite::ChaChaPoly => 2,
        }
    }

    fn from_code(code: u8) -> Option<Suite> {
        match code {
            1 => Some(Suite::AesGcm),
            2 => Some(Suite::ChaChaPoly),
            _ => None,
        }
    }

    fn noise_pattern(self) -> &'static str {
        match self {
            Suite::AesGcm => "Noise_IK_25519_AESGCM_SHA256",
            Suite::ChaChaPoly => "Noise_IK_25519_ChaChaPoly_SHA256",
        }
    }

    /// Mixed into the handshake hash: a suite changed in flight fails the handshake.
    fn prologue(self) -> &'static [u8] {
        match self {
            Suite::AesGcm => b"ferry tunnel v1 aesgcm",
            Suite::ChaChaPoly => b"ferry tunnel v1 chachapoly",
        }
    }
}

fn cpu_has_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The QUIC algorithms of a suite, looked up once.
#[derive(Clone, Copy)]
pub(crate) struct SuiteKeys {
    /// Packet and header protection after the handshake.
    quic: &'static dyn Algorithm,
    /// Initial packets: RFC 9001's AES-128-GCM obfuscation, the same for every suite.
    initial: &'static Tls13CipherSuite,
    initial_quic: &'static dyn Algorithm,
}

impl SuiteKeys {
    fn for_suite(suite: Suite) -> Option<SuiteKeys> {
        let tls = match suite {
            Suite::AesGcm => cipher_suite::TLS13_AES_256_GCM_SHA384,
            Suite::ChaChaPoly => cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        };
        let initial = cipher_suite::TLS13_AES_128_GCM_SHA256.tls13()?;
        Some(SuiteKeys {
            quic: tls.tls13()?.quic?,
            initial,
            initial_quic: initial.quic?,
        })
    }
}

fn initiator(
    suite: Suite,
    secret: &[u8; 32],
    server: &[u8; 32],
) -> Result<snow::HandshakeState, snow::Error> {
    let params: snow::params::NoiseParams = suite.noise_pattern().parse()?;
    snow::Builder::new(params)
        .prologue(suite.prologue())?
        .local_private_key(secret)?
        .remote_public_key(server)?
        .build_initiator()
}

fn responder(suite: Suite, secret: &[u8; 32]) -> Result<snow::HandshakeState, snow::Error> {
    let params: snow::params::NoiseParams = suite.noise_pattern().parse()?;
    snow::Builder::new(params)
        .prologue(suite.prologue())?
        .local_private_key(secret)?
        .build_responder()
}

/// Initial keys as RFC 9001 §5.2 derives them from the client's first connection ID. They hide
/// nothing from an observer (anyone can derive them) and are not meant to.
fn initial_keys(suite: &SuiteKeys, dst_cid: &ConnectionId, side: Side) -> Keys {
    let side = match side {
        Side::Client => rustls::Side::Client,
        Side::Server => rustls::Side::Server,
    };
    let k = rustls::quic::Keys::initial(
        rustls::quic::Version::V1,
        suite.initial,
        suite.initial_quic,
        dst_cid,
        side,
    );
    Keys {
        header: KeyPair {
            local: Box::new(k.local.header),
            remote: Box::new(k.remote.header),
        },
        packet: KeyPair {
            local: Box::new(k.local.packet),
            remote: Box::new(k.remote.packet),
        },
    }
}

/// The name quinn passes from `connect` to the client session: the server's public key, hex.
pub(crate) fn server_name(key: &PublicKey) -> String {
    key.0.iter().map(|b| format!("{b:02x}")).collect()
}

fn key_from_server_name(name: &str) -> Option<PublicKey> {
    if name.len() != 64 || !name.is_ascii() {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&name[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(PublicKey(key))
}

/// The dialing side.
pub(crate) struct ClientConfig {
    identity: Identity,
    trust: Arc<Trust>,
    suite: Suite,
    keys: SuiteKeys,
}

/// The accepting side.
pub(crate) struct ServerConfig {
    identity: Identity,
    trust: Arc<Trust>,
    keys: SuiteKeys,
}

/// Builds both sides' configs for `identity`.
pub(crate) fn configs(
    identity: &Identity,
    trust: Arc<Trust>,
) -> Result<(ClientConfig, ServerConfig), Error> {
    let suite = Suite::preferred();
    let keys = SuiteKeys::for_suite(suite)
        .ok_or(Error::Setup("no QUIC algorithms for the cipher suite"))?;
    Ok((
        ClientConfig {
            identity: identity.clone(),
            trust: trust.clone(),
            suite,
            keys,
        },
        ServerConfig {
            identity: identity.clone(),
            trust,
            keys,
        },
    ))
}

impl crypto::ClientConfig for ClientConfig {
    fn start_session(
        self: Arc<Self>,
        version: u32,
        server_name: &str,
        params: &TransportParameters,
    ) -> Result<Box<dyn crypto::Session>, ConnectError> {
        if version != QUIC_V1 {
            return Err(ConnectError::UnsupportedVersion);
        }
        let server = key_from_server_name(server_name)
            .ok_or_else(|| ConnectError::InvalidServerName(server_name.into()))?;
        Ok(Box::new(session::NoiseSession::client(
            self.identity.clone(),
            server,
            self.trust.clone(),
            self.suite,
            self.keys,
            params,
        )))
    }
}

impl crypto::ServerConfig for ServerConfig {
    fn initial_keys(
        &self,
        version: u32,
        dst_cid: &ConnectionId,
    ) -> Result<Keys, crypto::UnsupportedVersion> {
        if version != QUIC_V1 {
            return Err(crypto::UnsupportedVersion);
        }
        Ok(initial_keys(&self.keys, dst_cid, Side::Server))
    }

    fn retry_tag(&self, _version: u32, orig_dst_cid: &ConnectionId, packet: &[u8]) -> [u8; 16] {
        retry::tag(orig_dst_cid, packet)
    }

    fn start_session(
        self: Arc<Self>,
        _version: u32,
        params: &TransportParameters,
    ) -> Box<dyn crypto::Session> {
        Box::new(session::NoiseSession::server(
            self.identity.clone(),
            self.trust.clone(),
            self.keys,
            params,
        ))
    }
}

/// Runs a server session over `data`, then lets it answer: for the fuzz target.
pub(crate) fn fuzz_server_session(identity: &Identity, trust: Arc<Trust>, data: &[u8]) {
    use quinn_proto::crypto::Session;
    let Some(keys) = SuiteKeys::for_suite(Suite::AesGcm) else {
        return;
    };
    let Ok(params) = TransportParameters::read(Side::Server, &mut std::io::Cursor::new(&[][..]))
    else {
        return;
    };
    let mut session = session::NoiseSession::server(identity.clone(), trust, keys, &params);
    for piece in data.chunks(97) {
        if session.read_handshake(piece).is_err() {
            return;
        }
        let mut out = Vec::new();
        let _ = session.write_handshake(&mut out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_carry_the_key() {
        let key = PublicKey([0xab; 32]);
        assert_eq!(key_from_server_name(&server_name(&key)), Some(key));
        assert_eq!(key_from_server_name("ferry"), None);
        assert_eq!(key_from_server_name(&"zz".repeat(32)), None);
    }

    #[test]
    fn both_suites_have_quic_algorithms() {
        assert!(SuiteKeys::for_suite(Suite::AesGcm).is_some());
        assert!(SuiteKeys::for_suite(Suite::ChaChaPoly).is_some());
    }
}
