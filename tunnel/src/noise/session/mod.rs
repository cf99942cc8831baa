//! Noise IK as a QUIC crypto session: the state machine quinn drives with the bytes of
//! CRYPTO frames. See `docs/tunnel.md` for the key schedule and why it is sound.
//!
//! ```text
//! client                                          server
//! Initial:   initiation (IK msg 1: e, es, s, ss;
//!            payload = client certificate and
//!            transport params)                 ─▶ checks the client's key is trusted, by a
//!                                                 list or by its certificate
//!                                              ◀─ Initial: response (IK msg 2: e, ee, se;
//!                                                 payload = server certificate and
//!                                                 transport params)
//! checks the server's certificate
//!            both sides now hold the split keys; Handshake and 1-RTT keys derive from them
//!                                              ◀─ Handshake: server finished
//! Handshake: client finished                   ─▶
//! ```
//!
//! The finished messages (32-byte key confirmations) exist for quinn's sake as much as for
//! the protocol's: quinn completes a handshake only on a packet of the Handshake space, as in
//! TLS, so each side must send one there and finish on the other's.

use std::any::Any;
use std::sync::Arc;
use std::time::SystemTime;

use quinn_proto::crypto::{ExportKeyingMaterialError, KeyPair, Keys, PacketKey, Session};
use quinn_proto::transport_parameters::TransportParameters;
use quinn_proto::{ConnectionId, Side, TransportError, TransportErrorCode};
use tracing::debug;

use super::keys::{self, Secret};
use super::message::{self, Inbox};
use super::{Suite, SuiteKeys};
use crate::identity::{Identity, PublicKey};
use crate::noise::trust::{PeerIdentity, Refused};
use crate::noise::Trust;

/// Where the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    ClientStart,
    ClientAwaitResponse,
    ClientInstallHandshakeKeys,
    ClientSendFinished,
    ClientAwaitFinished,
    ServerAwaitInitiation,
    ServerSendResponse,
    ServerSendFinished,
    ServerAwaitFinished,
    Established,
}

/// Secrets derived from a finished Noise handshake.
struct Schedule {
    hash: [u8; 32],
    client_handshake: Secret,
    server_handshake: Secret,
    client_data: Secret,
    server_data: Secret,
    client_finished: Secret,
    server_finished: Secret,
}

impl Schedule {
    /// From Noise's split keys (initiator→responder, responder→initiator) and handshake hash.
    fn new(to_responder: &[u8; 32], to_initiator: &[u8; 32], hash: &[u8]) -> Schedule {
        let mut h = [0u8; 32];
        h.copy_from_slice(&hash[..32.min(hash.len())]);
        let client_handshake = keys::derive(to_responder, b"ferry hs", &h);
        let server_handshake = keys::derive(to_initiator, b"ferry hs", &h);
        Schedule {
            hash: h,
            client_finished: keys::derive(&client_handshake, b"ferry finished", &h),
            server_finished: keys::derive(&server_handshake, b"ferry finished", &h),
            client_handshake,
            server_handshake,
            client_data: keys::derive(to_responder, b"ferry ap", &h),
            server_data: keys::derive(to_initiator, b"ferry ap", &h),
        }
    }
}

/// What a finished handshake tells the application.
#[derive(Debug, Clone)]
pub struct HandshakeData {
    /// The AEAD both sides use.
    pub suite: &'static str,
}

/// One side of one connection's handshake.
pub(crate) struct NoiseSession {
    side: Side,
    state: State,
    identity: Identity,
    /// Client: the key the server must hold. Server: the client's key, once read.
    remote: Option<PublicKey>,
    /// The peer, once its handshake message was read and admitted.
    peer: Option<PeerIdentity>,
    trust: Arc<Trust>,
    suite: Suite,
    keys: SuiteKeys,
    noise: Option<snow::HandshakeState>,
    local_params: Vec<u8>,
    peer_params: Option<TransportParameters>,
    inbox: Inbox,
    schedule: Option<Schedule>,
}

fn handshake_failure(reason: impl Into<String>) -> TransportError {
    // 0x28 is TLS's handshake_failure alert, the code QUIC peers expect for a failed handshake.
    TransportError {
        code: TransportErrorCode::crypto(0x28),
        frame: None,
        reason: reason.into(),
    }
}

/// The error a refused peer sees: QUIC's CONNECTION_REFUSED, and why.
fn refusal(refused: Refused) -> TransportError {
    TransportError {
        code: TransportErrorCode::CONNECTION_REFUSED,
        frame: None,
        reason: refused.reason().into(),
    }
}

fn count(result: &'static str) {
    metrics::counter!("ferry_tunnel_handshakes_total", "result" => result).increment(1);
}

impl NoiseSession {
    pub(super) fn client(
        identity: Identity,
        server: PublicKey,
        trust: Arc<Trust>,
        suite: Suite,
        keys: SuiteKeys,
        params: &TransportParameters,
    ) -> Self {
        Self::new(
            Side::Client,
            State::ClientStart,
            identity,
            Some(server),
            trust,
            suite,
            keys,
            params,
        )
    }

    pub(super) fn server(
        identity: Identity,
        trust: Arc<Trust>,
        keys: SuiteKeys,
        params: &TransportParameters,
    ) -> Self {
        // The suite is the client's choice, read from its initiation.
        Self::new(
            Side::Server,
            State::ServerAwaitInitiation,
            identity,
            None,
            trust,
            Suite::AesGcm,
            keys,
            params,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        side: Side,
        state: State,
        identity: Identity,
        remote: Option<PublicKey>,
        trust: Arc<Trust>,
        suite: Suite,
        keys: SuiteKeys,
        params: &TransportParameters,
    ) -> Self {
        let mut local_params = Vec::new();
        params.write(&mut local_params);
        NoiseSession {
            side,
            state,
            identity,
            remote,
            peer: None,
            trust,
            suite,
            keys,
            noise: None,
            local_params,
            peer_params: None,
            inbox: Inbox::default(),
            schedule: None,
        }
    }

    /// Reads the peer's certificate and transport parameters from a handshake payload, and
    /// decides whether `remote` (the key the handshake proved) is admitted. A refusal comes
    /// before this side sends anything of its own.
    fn take_payload(&mut self, remote: PublicKey, payload: &[u8]) -> Result<(), TransportError> {
        let (certificate, params) =
            message::split_payload(payload).map_err(|e| handshake_failure(e.to_string()))?;
        let dialed = self.side == Side::Client;
        let peer = self
            .trust
            .admit(remote, certificate, dialed, SystemTime::now())
            .map_err(|refused| {
                count(refused.label());
                debug!(key = %remote, result = refused.label(), "refused a handshake");
                refusal(refused)
            })?;
        let params = TransportParameters::read(self.side, &mut std::io::Cursor::new(params))
            .map_err(|e| handshake_failure(format!("bad transport parameters: {e:?}")))?;
        self.peer_params = Some(params);
        self.peer = Some(peer);
        Ok(())
    }

    /// This node's handshake payload: its certificate, if it has one, and `local_params`.
    fn local_payload(&self) -> Vec<u8> {
        let certificate = self.trust.certificate().map(|c| c.encode());
        message::payload(certificate.as_deref(), &self.local_params)
    }

    /// Derives the schedule from the finished Noise handshake.
    fn finish_noise(&mut self) -> Result<(), TransportError> {
        let noise = self
            .noise
            .as_mut()
            .ok_or_else(|| handshake_failure("no handshake"))?;
        if !noise.is_handshake_finished() {
            return Err(handshake_failure("handshake not finished"));
        }
        let hash = noise.get_handshake_hash().to_vec();
        let (to_responder, to_initiator) = noise.dangerously_get_raw_split();
        self.schedule = Some(Schedule::new(&to_responder, &to_initiator, &hash));
        self.noise = None;
        Ok(())
    }

    /// The next whole length-prefixed message, or `None` while more bytes are needed.
    fn next_message(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        self.inbox
            .message()
            .map_err(|e| handshake_failure(e.to_string()))
    }

    fn read_initiation(&mut self) -> Result<bool, TransportError> {
        let Some((suite_code, msg)) = self
            .inbox
            .initiation()
            .map_err(|e| handshake_failure(e.to_string()))?
        else {
            return Ok(false);
        };
        let suite = Suite::from_code(suite_code)
            .ok_or_else(|| handshake_failure("unknown cipher suite"))?;
        let mut noise = super::responder(suite, &self.identity.secret_bytes())
            .map_err(|e| handshake_failure(format!("cannot start the handshake: {e}")))?;
        let mut payload = vec![0u8; message::MAX_MESSAGE];
        let n = noise.read_message(&msg, &mut payload).map_err(|e| {
            count("failed");
            handshake_failure(format!("bad initiation: {e}"))
        })?;
        let remote = noise
            .get_remote_static()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .map(PublicKey)
            .ok_or_else(|| handshake_failure("initiation carries no static key"))?;
        self.take_payload(remote, &payload[..n])?;
        self.suite = suite;
        self.keys =
            SuiteKeys::for_suite(suite).ok_or_else(|| handshake_failure("suite unavailable"))?;
        self.remote = Some(remote);
        self.noise = Some(noise);
        self.state = State::ServerSendResponse;
        Ok(true)
    }

    fn read_response(&mut self) -> Result<bool, TransportError> {
        let Some(msg) = self.next_message()? else {
            return Ok(false);
        };
        let noise = self
            .noise
            .as_mut()
            .ok_or_else(|| handshake_failure("no handshake"))?;
        let mut payload = vec![0u8; message::MAX_MESSAGE];
        let n = noise.read_message(&msg, &mut payload).map_err(|e| {
            count("failed");
            handshake_failure(format!("bad response (wrong server key?): {e}"))
        })?;
        let server = self
            .remote
            .ok_or_else(|| handshake_failure("no server key"))?;
        self.take_payload(server, &payload[..n])?;
        self.finish_noise()?;
        self.state = State::ClientInstallHandshakeKeys;
        Ok(true)
    }

    /// The peer's key confirmation: proof it derived the same keys.
    fn read_finished(&mut self) -> Result<bool, TransportError> {
        let Some(msg) = self.next_message()? else {
            return Ok(false);
        };
        let schedule = self
            .schedule
            .as_ref()
            .ok_or_else(|| handshake_failure("no schedule"))?;
        let expected = match self.side {
            Side::Client => &schedule.server_finished,
            Side::Server => &schedule.client_finished,
        };
        if !keys::constant_time_eq(&msg, expected) {
            count("failed");
            return Err(handshake_failure("bad finished"));
        }
        count("ok");
        self.state = State::Established;
        Ok(false)
    }

    fn handshake_keys(&self) -> Option<Keys> {
        let s = self.schedule.as_ref()?;
        let (local, remote) = match self.side {
            Side::Client => (&s.client_handshake, &s.server_handshake),
            Side::Server => (&s.server_handshake, &s.client_handshake),
        };
        Some(keys::keys(self.keys.quic, local, remote))
    }

    fn data_keys(&self) -> Option<Keys> {
        let s = self.schedule.as_ref()?;
        let (local, remote) = match self.side {
            Side::Client => (&s.client_data, &s.server_data),
            Side::Server => (&s.server_data, &s.client_data),
        };
        Some(keys::keys(self.keys.quic, local, remote))
    }
}

impl Session for NoiseSession {
    fn initial_keys(&self, dst_cid: &ConnectionId, side: Side) -> Keys {
        super::initial_keys(&self.keys, dst_cid, side)
    }

    fn handshake_data(&self) -> Option<Box<dyn Any>> {
        self.peer_params.as_ref()?;
        Some(Box::new(HandshakeData {
            suite: self.suite.noise_pattern(),
        }))
    }

    fn peer_identity(&self) -> Option<Box<dyn Any>> {
        // The client knew the key it wanted from the start; it is proven only once the
        // server's response decrypted.
        self.schedule.as_ref()?;
        self.peer.clone().map(|p| Box::new(p) as Box<dyn Any>)
    }

    fn early_crypto(
        &self,
    ) -> Option<(Box<dyn quinn_proto::crypto::HeaderKey>, Box<dyn PacketKey>)> {
        None // no 0-RTT: it would give up forward secrecy and replay protection
    }

    fn early_data_accepted(&self) -> Option<bool> {
        None
    }

    fn is_handshaking(&self) -> bool {
        self.state != State::Established
    }

    fn read_handshake(&mut self, buf: &[u8]) -> Result<bool, TransportError> {
        self.inbox
            .push(buf)
            .map_err(|e| handshake_failure(e.to_string()))?;
        match self.state {
            State::ServerAwaitInitiation => self.read_initiation(),
            State::ClientAwaitResponse => self.read_response(),
            State::ServerAwaitFinished | State::ClientAwaitFinished => self.read_finished(),
            _ if self.inbox.is_empty() => Ok(false),
            _ => Err(TransportError {
                code: TransportErrorCode::PROTOCOL_VIOLATION,
                frame: None,
                reason: "unexpected handshake data".into(),
            }),
        }
    }

    fn transport_parameters(&self) -> Result<Option<TransportParameters>, TransportError> {
        Ok(self.peer_params)
    }

    fn write_handshake(&mut self, buf: &mut Vec<u8>) -> Option<Keys> {
        match self.state {
            State::ClientStart => {
                let server = self.remote?;
                let mut noise =
                    match super::initiator(self.suite, &self.identity.secret_bytes(), &server.0) {
                        Ok(noise) => noise,
                        Err(e) => {
                            debug!(error = %e, "cannot start the handshake");
                            return None;
                        }
                    };
                let mut msg = vec![0u8; message::MAX_MESSAGE];
                let n = match noise.write_message(&self.local_payload(), &mut msg) {
                    Ok(n) => n,
                    Err(e) => {
                        debug!(error = %e, "cannot write the initiation");
                        return None;
                    }
                };
                buf.extend_from_slice(&[message::VERSION, self.suite.code()]);
                message::put(buf, &msg[..n]);
                self.noise = Some(noise);
                self.state = State::ClientAwaitResponse;
                None
            }
            State::ClientInstallHandshakeKeys => {
                self.state = State::ClientSendFinished;
                self.handshake_keys()
            }
            State::ClientSendFinished => {
                let finished = self.schedule.as_ref()?.client_finished;
                message::put(buf, &finished);
                self.state = State::ClientAwaitFinished;
                self.data_keys()
            }
            State::ServerSendResponse => {
                let payload = self.local_payload();
                let noise = self.noise.as_mut()?;
                let mut msg = vec![0u8; message::MAX_MESSAGE];
                let n = noise.write_message(&payload, &mut msg).ok()?;
                message::put(buf, &msg[..n]);
                self.finish_noise().ok()?;
                self.state = State::ServerSendFinished;
                self.handshake_keys()
            }
            State::ServerSendFinished => {
                let finished = self.schedule.as_ref()?.server_finished;
                message::put(buf, &finished);
                self.state = State::ServerAwaitFinished;
                self.data_keys()
            }
            _ => None,
        }
    }

    fn next_1rtt_keys(&mut self) -> Option<KeyPair<Box<dyn PacketKey>>> {
        // quinn asks for the next keys once ahead of each update, the first at the handshake.
        metrics::counter!("ferry_tunnel_key_updates_total").increment(1);
        let quic = self.keys.quic;
        let side = self.side;
        let s = self.schedule.as_mut()?;
        s.client_data = keys::next_secret(&s.client_data);
        s.server_data = keys::next_secret(&s.server_data);
        let (local, remote) = match side {
            Side::Client => (&s.client_data, &s.server_data),
            Side::Server => (&s.server_data, &s.client_data),
        };
        Some(KeyPair {
            local: keys::packet_key(quic, local),
            remote: keys::packet_key(quic, remote),
        })
    }

    fn is_valid_retry(&self, orig_dst_cid: &ConnectionId, header: &[u8], payload: &[u8]) -> bool {
        super::retry::is_valid(orig_dst_cid, header, payload)
    }

    fn export_keying_material(
        &self,
        output: &mut [u8],
        label: &[u8],
        context: &[u8],
    ) -> Result<(), ExportKeyingMaterialError> {
        let s = self.schedule.as_ref().ok_or(ExportKeyingMaterialError)?;
        if output.len() > 255 * 32 || label.len() > 249 || context.len() > 255 {
            return Err(ExportKeyingMaterialError);
        }
        let exporter = keys::derive(&s.client_data, b"ferry exporter", &s.hash);
        keys::expand_label(&exporter, label, context, output);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
