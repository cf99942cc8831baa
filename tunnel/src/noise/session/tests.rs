//! The handshake in memory: two sessions driven against each other, keys refused, bytes tampered with.

use super::*;
use bytes::BytesMut;

/// Every parameter at its default: what an empty list decodes to.
fn params() -> TransportParameters {
    TransportParameters::read(Side::Server, &mut std::io::Cursor::new(&[][..])).expect("empty list")
}

fn suite_keys() -> SuiteKeys {
    SuiteKeys::for_suite(Suite::AesGcm).expect("suite")
}

/// What one run of quinn's `write_crypto` loop produces: a chunk per call, and the keys.
fn flush(s: &mut NoiseSession) -> (Vec<Vec<u8>>, Vec<Keys>) {
    let (mut chunks, mut keys) = (Vec::new(), Vec::new());
    for _ in 0..8 {
        let mut buf = Vec::new();
        let k = s.write_handshake(&mut buf);
        let done = k.is_none() && buf.is_empty();
        if !buf.is_empty() {
            chunks.push(buf);
        }
        keys.extend(k);
        if done {
            break;
        }
    }
    (chunks, keys)
}

struct Pair {
    client: NoiseSession,
    server: NoiseSession,
    client_key: PublicKey,
}

fn pair(trusted: bool, server_key_known_as: Option<PublicKey>) -> Pair {
    let client_id = Identity::generate().expect("key");
    let server_id = Identity::generate().expect("key");
    let trust = Trust::new(trusted.then_some(client_id.public()));
    let dialed = server_key_known_as.unwrap_or(server_id.public());
    pair_of((client_id, Trust::default()), (server_id, trust), dialed)
}

fn pair_of(client: (Identity, Trust), server: (Identity, Trust), dialed: PublicKey) -> Pair {
    Pair {
        client_key: client.0.public(),
        client: NoiseSession::client(
            client.0,
            dialed,
            Arc::new(client.1),
            Suite::AesGcm,
            suite_keys(),
            &params(),
        ),
        server: NoiseSession::server(server.0, Arc::new(server.1), suite_keys(), &params()),
    }
}

fn peer_of(session: &NoiseSession) -> Option<PeerIdentity> {
    session
        .peer_identity()
        .and_then(|i| i.downcast::<PeerIdentity>().ok())
        .map(|p| *p)
}

/// Runs the handshake as quinn would deliver it; returns both sides' 1-RTT keys.
fn handshake(p: &mut Pair) -> Result<(Keys, Keys), TransportError> {
    let (initiation, _) = flush(&mut p.client);
    assert_eq!(initiation.len(), 1);
    assert!(p.server.read_handshake(&initiation[0])?);
    let (server_chunks, mut server_keys) = flush(&mut p.server);
    assert_eq!(
        (server_chunks.len(), server_keys.len()),
        (2, 2),
        "response + finished, two key sets"
    );
    assert!(p.client.read_handshake(&server_chunks[0])?);
    let (client_chunks, mut client_keys) = flush(&mut p.client);
    assert_eq!(
        (client_chunks.len(), client_keys.len()),
        (1, 2),
        "finished, two key sets"
    );
    assert!(
        p.client.is_handshaking(),
        "the client waits for the server's finished"
    );
    assert!(!p.client.read_handshake(&server_chunks[1])?);
    assert!(!p.server.read_handshake(&client_chunks[0])?);
    Ok((client_keys.remove(1), server_keys.remove(1)))
}

fn seal_then_open(sender: &dyn PacketKey, receiver: &dyn PacketKey) -> bool {
    let header = b"\x40header";
    let mut packet = header.to_vec();
    packet.extend_from_slice(b"payload");
    packet.extend(std::iter::repeat_n(0, sender.tag_len()));
    sender.encrypt(7, &mut packet, header.len());
    let mut payload = BytesMut::from(&packet[header.len()..]);
    receiver.decrypt(7, header, &mut payload).is_ok() && payload.as_ref() == b"payload"
}

#[test]
fn a_trusted_client_and_its_server_agree_on_keys_and_identities() {
    let mut p = pair(true, None);
    let (client, server) = handshake(&mut p).expect("handshake completes");
    assert!(!p.client.is_handshaking() && !p.server.is_handshaking());
    assert!(seal_then_open(
        client.packet.local.as_ref(),
        server.packet.remote.as_ref()
    ));
    assert!(seal_then_open(
        server.packet.local.as_ref(),
        client.packet.remote.as_ref()
    ));
    assert_eq!(
        peer_of(&p.server).map(|peer| peer.key),
        Some(p.client_key),
        "the server knows who connected"
    );
    assert!(p.client.transport_parameters().expect("ok").is_some());
    assert!(p.server.transport_parameters().expect("ok").is_some());
}

#[test]
fn key_updates_agree_and_differ_from_the_old_keys() {
    let mut p = pair(true, None);
    let (client, _) = handshake(&mut p).expect("handshake completes");
    let next_client = p.client.next_1rtt_keys().expect("keys");
    let next_server = p.server.next_1rtt_keys().expect("keys");
    assert!(seal_then_open(
        next_client.local.as_ref(),
        next_server.remote.as_ref()
    ));
    assert!(!seal_then_open(
        client.packet.local.as_ref(),
        next_server.remote.as_ref()
    ));
}

#[test]
fn an_untrusted_client_is_refused_before_the_server_answers() {
    let mut p = pair(false, None);
    let (initiation, _) = flush(&mut p.client);
    let refused = p
        .server
        .read_handshake(&initiation[0])
        .expect_err("refused");
    assert_eq!(refused.code, TransportErrorCode::CONNECTION_REFUSED);
    assert!(
        flush(&mut p.server).0.is_empty(),
        "the server sends nothing back"
    );
}

#[test]
fn dialing_with_the_wrong_server_key_fails() {
    let impostor = Identity::generate().expect("key").public();
    let mut p = pair(true, Some(impostor));
    let (initiation, _) = flush(&mut p.client);
    assert!(p.server.read_handshake(&initiation[0]).is_err());
}

#[test]
fn a_tampered_response_fails_the_handshake() {
    let mut p = pair(true, None);
    let (initiation, _) = flush(&mut p.client);
    p.server.read_handshake(&initiation[0]).expect("trusted");
    let (mut chunks, _) = flush(&mut p.server);
    let last = chunks[0].len() - 1;
    chunks[0][last] ^= 1;
    assert!(p.client.read_handshake(&chunks[0]).is_err());
}

#[test]
fn a_wrong_finished_fails_the_handshake() {
    let mut p = pair(true, None);
    let (initiation, _) = flush(&mut p.client);
    p.server.read_handshake(&initiation[0]).expect("trusted");
    flush(&mut p.server);
    let mut forged = Vec::new();
    message::put(&mut forged, &[0u8; 32]);
    assert!(p.server.read_handshake(&forged).is_err());
}

#[test]
fn garbage_never_panics_a_server_session() {
    for bytes in crate::wire::garbage(3000, 300) {
        let mut p = pair(true, None);
        let mut framed = vec![message::VERSION, 1];
        message::put(&mut framed, &bytes);
        let _ = p.server.read_handshake(&framed);
        let _ = flush(&mut p.server);
        let _ = p.server.read_handshake(&bytes);
    }
}

mod certificates {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::certificate::{CaKey, Certificate, Kind, Subject};

    const DAY: Duration = Duration::from_secs(86_400);

    fn ca() -> (CaKey, Certificate) {
        let key = CaKey::generate().expect("random");
        let subject = subject(Kind::Ca, key.public(), "mesh");
        let cert = key
            .sign(subject, SystemTime::now() - DAY, DAY * 365)
            .expect("signs");
        (key, cert)
    }

    fn subject(kind: Kind, key: [u8; 32], name: &str) -> Subject {
        Subject {
            kind,
            key,
            name: name.into(),
            datacenter: "dc1".into(),
            services: vec!["greeter".into()],
            groups: vec![],
        }
    }

    /// A node signed by `ca`, valid from `from` (relative to now) for `valid`.
    fn node(ca: &CaKey, name: &str, from: SystemTime, valid: Duration) -> (Identity, Trust) {
        let id = Identity::generate().expect("key");
        let cert = ca
            .sign(subject(Kind::Node, id.public().0, name), from, valid)
            .expect("signs");
        let trust = Trust::default();
        trust.set_certificate(Some(cert));
        (id, trust)
    }

    fn trusting(ca: &Certificate, side: (Identity, Trust)) -> (Identity, Trust) {
        side.1.set_authorities(vec![ca.clone()]);
        side
    }

    #[test]
    fn nodes_a_trusted_ca_signed_meet_with_no_list_and_learn_each_others_certificates() {
        let (key, cert) = ca();
        let now = SystemTime::now();
        let client = trusting(&cert, node(&key, "web-1", now - DAY, DAY * 30));
        let server = trusting(&cert, node(&key, "greeter-1", now - DAY, DAY * 30));
        let server_key = server.0.public();
        let mut p = pair_of(client, server, server_key);
        handshake(&mut p).expect("the CA vouches for both");
        let at_server = peer_of(&p.server).expect("identified");
        let at_client = peer_of(&p.client).expect("identified");
        assert_eq!(at_server.key, p.client_key);
        assert_eq!(
            at_server.certificate.map(|c| c.subject.name.clone()),
            Some("web-1".into())
        );
        assert_eq!(
            at_client.certificate.map(|c| c.subject.name.clone()),
            Some("greeter-1".into())
        );
    }

    #[test]
    fn expired_and_not_yet_valid_clients_are_refused_before_the_server_answers() {
        let (key, cert) = ca();
        let now = SystemTime::now();
        for (from, valid) in [(now - DAY * 10, DAY), (now + DAY, DAY * 30)] {
            let client = node(&key, "web-1", from, valid);
            let server = trusting(
                &cert,
                (Identity::generate().expect("key"), Trust::default()),
            );
            let server_key = server.0.public();
            let mut p = pair_of(client, server, server_key);
            let (initiation, _) = flush(&mut p.client);
            let refused = p
                .server
                .read_handshake(&initiation[0])
                .expect_err("refused");
            assert_eq!(refused.code, TransportErrorCode::CONNECTION_REFUSED);
            assert_eq!(refused.reason, Refused::Expired.reason());
            assert!(flush(&mut p.server).0.is_empty(), "nothing sent back");
        }
    }

    #[test]
    fn a_server_presenting_another_nodes_certificate_is_refused_by_the_client() {
        let (key, cert) = ca();
        let now = SystemTime::now();
        let (_, borrowed) = node(&key, "greeter-1", now - DAY, DAY * 30);
        let server_id = Identity::generate().expect("key");
        let server_key = server_id.public();
        let client = trusting(
            &cert,
            (Identity::generate().expect("key"), Trust::default()),
        );
        borrowed.replace([client.0.public()]);
        let mut p = pair_of(client, (server_id, borrowed), server_key);
        let (initiation, _) = flush(&mut p.client);
        assert!(p.server.read_handshake(&initiation[0]).expect("dialed"));
        let (chunks, _) = flush(&mut p.server);
        let refused = p.client.read_handshake(&chunks[0]).expect_err("refused");
        assert_eq!(refused.reason, Refused::BadCertificate.reason());
    }
}
