use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::certificate::{CaKey, Subject};
use crate::identity::Identity;

const DAY: Duration = Duration::from_secs(86_400);

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn key() -> PublicKey {
    Identity::generate().expect("a key").public()
}

fn subject(kind: Kind, key: [u8; 32]) -> Subject {
    Subject {
        kind,
        key,
        name: "billing-1".into(),
        datacenter: "dc1".into(),
        services: vec!["billing".into()],
        groups: vec![],
    }
}

/// A CA valid for a year from t=0, and a certificate it signed for `node`, valid days 1 to 31.
fn signed(node: PublicKey) -> (CaKey, Certificate, Certificate) {
    let ca_key = CaKey::generate().expect("random");
    let ca = ca_key
        .sign(subject(Kind::Ca, ca_key.public()), at(0), DAY * 365)
        .expect("signs");
    let cert = ca_key
        .sign(subject(Kind::Node, node.0), at(DAY.as_secs()), DAY * 30)
        .expect("signs");
    (ca_key, ca, cert)
}

const NOW: u64 = 2 * 86_400;

#[test]
fn discovered_keys_survive_a_replace_and_leave_on_removal() {
    let (configured, discovered) = (key(), key());
    let trust = Trust::new([configured]);
    trust.add_discovered(discovered);
    trust.replace([]);
    assert!(!trust.allows(&configured));
    assert!(trust.allows(&discovered));
    trust.remove_discovered(&discovered);
    assert!(!trust.allows(&discovered));
}

#[test]
fn a_key_a_trusted_ca_vouches_for_is_admitted_with_its_certificate() {
    let node = key();
    let (_, ca, cert) = signed(node);
    let trust = Trust::default();
    let bytes = cert.encode();
    assert_eq!(
        trust.admit(node, Some(&bytes), false, at(NOW)),
        Err(Refused::Untrusted),
        "no CA trusted yet"
    );
    trust.set_authorities(vec![ca]);
    let admitted = trust
        .admit(node, Some(&bytes), false, at(NOW))
        .expect("admitted");
    assert_eq!(admitted.certificate.as_deref(), Some(&cert));
    assert_eq!(
        trust.admit(node, None, false, at(NOW)),
        Err(Refused::Untrusted),
        "no certificate, no list"
    );
}

#[test]
fn certificates_outside_their_window_are_refused_unless_a_list_names_the_key() {
    let node = key();
    let (_, ca, cert) = signed(node);
    let trust = Trust::default();
    trust.set_authorities(vec![ca]);
    let bytes = cert.encode();
    for when in [0, 40 * 86_400] {
        assert_eq!(
            trust.admit(node, Some(&bytes), false, at(when)),
            Err(Refused::Expired),
            "at {when}"
        );
    }
    trust.replace([node]);
    let admitted = trust
        .admit(node, Some(&bytes), false, at(0))
        .expect("listed");
    assert_eq!(
        admitted.certificate, None,
        "an expired certificate permits nothing"
    );
}

#[test]
fn forged_altered_or_borrowed_certificates_are_refused_even_for_listed_keys() {
    let node = key();
    let (_, ca, cert) = signed(node);
    let trust = Trust::new([node]);
    trust.set_authorities(vec![ca.clone()]);

    let mut tampered = cert.encode();
    let service = tampered
        .windows(7)
        .position(|w| w == b"billing")
        .expect("the service is in the bytes");
    tampered[service] = b'B';
    assert_eq!(
        trust.admit(node, Some(&tampered), false, at(NOW)),
        Err(Refused::BadCertificate)
    );

    // Signed by another key claiming to be the trusted CA.
    let forger = CaKey::generate().expect("random");
    let mut forged = forger
        .sign(subject(Kind::Node, node.0), at(DAY.as_secs()), DAY * 30)
        .expect("signs")
        .encode();
    let issuer_at = forged.len() - 64 - 32;
    forged[issuer_at..issuer_at + 32].copy_from_slice(&ca.subject.key);
    assert_eq!(
        trust.admit(node, Some(&forged), false, at(NOW)),
        Err(Refused::BadCertificate)
    );

    // Another node's good certificate.
    let other = key();
    assert_eq!(
        trust.admit(other, Some(&cert.encode()), false, at(NOW)),
        Err(Refused::BadCertificate)
    );
    assert_eq!(
        trust.admit(node, Some(b"garbage"), false, at(NOW)),
        Err(Refused::BadCertificate)
    );
}

#[test]
fn a_certificate_from_an_unknown_ca_counts_as_none() {
    let node = key();
    let (_, _, cert) = signed(node);
    let (_, other_ca, _) = signed(key());
    let trust = Trust::default();
    trust.set_authorities(vec![other_ca]);
    let bytes = cert.encode();
    assert_eq!(
        trust.admit(node, Some(&bytes), false, at(NOW)),
        Err(Refused::Untrusted)
    );
    let dialed = trust
        .admit(node, Some(&bytes), true, at(NOW))
        .expect("a dialed key is trusted");
    assert_eq!(dialed.certificate, None);
}

#[test]
fn removing_a_ca_stops_trusting_what_it_signed() {
    let node = key();
    let (_, ca, cert) = signed(node);
    let (_, next, _) = signed(key());
    let trust = Trust::default();
    trust.set_authorities(vec![ca, next.clone()]);
    let bytes = cert.encode();
    assert!(trust.admit(node, Some(&bytes), false, at(NOW)).is_ok());
    trust.set_authorities(vec![next]);
    assert_eq!(
        trust.admit(node, Some(&bytes), false, at(NOW)),
        Err(Refused::Untrusted)
    );
}
