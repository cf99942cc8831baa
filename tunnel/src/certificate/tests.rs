use super::*;

const DAY: Duration = Duration::from_secs(86_400);

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn ca(key: &CaKey, not_before: u64) -> Certificate {
    let subject = Subject {
        kind: Kind::Ca,
        key: key.public(),
        name: "mesh-ca".into(),
        datacenter: String::new(),
        services: vec![],
        groups: vec![],
    };
    key.sign(subject, at(not_before), DAY * 365).expect("signs")
}

fn node(key: &CaKey, not_before: u64) -> Certificate {
    let subject = Subject {
        kind: Kind::Node,
        key: [7; 32],
        name: "billing-1".into(),
        datacenter: "eu-west".into(),
        services: vec!["billing".into(), "invoices".into()],
        groups: vec!["payments".into()],
    };
    key.sign(subject, at(not_before), DAY * 30).expect("signs")
}

#[test]
fn a_node_certificate_verifies_against_its_ca_within_its_window() {
    let key = CaKey::generate().expect("random");
    let (ca, cert) = (ca(&key, 1_000), node(&key, 1_000));
    assert_eq!(ca.verify(&ca, at(2_000)), Ok(()), "a CA is self-signed");
    assert_eq!(cert.verify(&ca, at(2_000)), Ok(()));
    assert!(matches!(
        cert.verify(&ca, at(999)),
        Err(Refusal::Expired(_))
    ));
    let after = 1_000 + 30 * 86_400 + 1;
    assert!(matches!(
        cert.verify(&ca, at(after)),
        Err(Refusal::Expired(_))
    ));
}

#[test]
fn another_ca_or_an_altered_certificate_is_refused() {
    let (key, other) = (
        CaKey::generate().expect("random"),
        CaKey::generate().expect("random"),
    );
    let cert = node(&key, 1_000);
    assert_eq!(
        cert.verify(&ca(&other, 1_000), at(2_000)),
        Err(Refusal::BadSignature)
    );
    assert_eq!(cert.verify(&cert, at(2_000)), Err(Refusal::NotACa));
    let ca = ca(&key, 1_000);
    let mut claimed_more = cert.clone();
    claimed_more.subject.services.push("admin".into());
    assert_eq!(
        claimed_more.verify(&ca, at(2_000)),
        Err(Refusal::BadSignature)
    );
    let mut longer = cert.clone();
    longer.not_after += 1;
    assert_eq!(longer.verify(&ca, at(2_000)), Err(Refusal::BadSignature));
    // Any flipped bit of the encoding either fails to decode or fails to verify.
    let bytes = cert.encode();
    for i in 0..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[i] ^= 0x01;
        if let Ok(changed) = Certificate::decode(&flipped) {
            assert!(changed.verify(&ca, at(2_000)).is_err(), "byte {i}");
        }
    }
}

#[test]
fn certificates_round_trip_through_bytes_and_files() {
    let key = CaKey::generate().expect("random");
    let cert = node(&key, 1_000);
    assert_eq!(Certificate::decode(&cert.encode()).expect("decodes"), cert);
    let pem = cert.to_pem();
    assert!(pem.starts_with("-----BEGIN FERRY CERTIFICATE-----\n"));
    assert!(pem.lines().all(|l| l.len() <= 64 || l.starts_with("-----")));
    assert_eq!(Certificate::from_pem(&pem).expect("parses"), cert);
    assert_eq!(
        Certificate::from_pem(&format!("comment\n{pem}\ntrailing")).expect("parses"),
        cert
    );
    let reloaded = CaKey::from_base64(&key.to_base64()).expect("a key");
    assert_eq!(reloaded.public(), key.public());
}

#[test]
fn truncated_garbage_and_unknown_versions_are_refused() {
    let cert = node(&CaKey::generate().expect("random"), 1_000).encode();
    for cut in 0..cert.len() {
        assert!(Certificate::decode(&cert[..cut]).is_err(), "cut at {cut}");
    }
    let mut longer = cert.clone();
    longer.push(0);
    assert!(Certificate::decode(&longer).is_err(), "trailing bytes");
    let mut version = cert.clone();
    version[0] = 2;
    assert!(Certificate::decode(&version).is_err());
    for bytes in crate::wire::garbage(20_000, 300) {
        let _ = Certificate::decode(&bytes);
    }
    assert!(Certificate::from_pem("no block here").is_err());
    assert!(Certificate::from_pem(
        "-----BEGIN FERRY CERTIFICATE-----\n!!!\n-----END FERRY CERTIFICATE-----"
    )
    .is_err());
    assert!(CaKey::from_base64("short").is_err());
}

#[test]
fn names_longer_than_a_byte_can_count_are_refused_when_signing() {
    let key = CaKey::generate().expect("random");
    let mut subject = Subject {
        kind: Kind::Node,
        key: [1; 32],
        name: "x".repeat(256),
        datacenter: String::new(),
        services: vec![],
        groups: vec![],
    };
    assert!(key.sign(subject.clone(), at(0), DAY).is_err());
    subject.name = "ok".into();
    subject.services = vec!["s".into(); 256];
    assert!(key.sign(subject, at(0), DAY).is_err());
}
