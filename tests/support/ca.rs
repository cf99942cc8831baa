//! A mesh CA for tests: made with `ferry ca init`, signing with `ferry ca sign`, and, for
//! what no command makes (expired, not yet valid), with the library.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use ferry_tunnel::certificate::{CaKey, Certificate, Kind, Subject};

use super::{ferry, NodeBuilder, TempDir};

/// A mesh CA made with `ferry ca init`, in a directory of its own.
pub(crate) struct Ca {
    pub(crate) dir: TempDir,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Ca {
        let dir = TempDir::new(name);
        let out = dir.join("ca");
        let made = ferry(
            &[
                "ca",
                "init",
                "--name",
                name,
                "--out",
                out.to_str().expect("UTF-8"),
            ],
            dir.path(),
        );
        assert!(made.success(), "{made:?}");
        Ca { dir }
    }

    pub(crate) fn dir(&self) -> String {
        self.dir.join("ca").to_str().expect("UTF-8").to_owned()
    }

    /// The CA's certificate, for `[tunnel] ca`.
    pub(crate) fn certificate(&self) -> String {
        format!("{}/ca.crt", self.dir())
    }

    /// Signs `node`'s key with `ferry ca sign` for `services`, into `node.crt` in the node's
    /// directory; returns the file name, for `[tunnel] certificate`.
    pub(crate) fn sign(&self, node: &NodeBuilder, services: &[&str]) -> &'static str {
        let subject = (node.name(), node.public_key(), node.configured_datacenter());
        self.sign_into(subject, &node.dir().join("node.crt"), services);
        "node.crt"
    }

    /// Signs the key of a node named `name` in `datacenter` with `ferry ca sign` for
    /// `services`, into `out` (replacing it: a renewal).
    pub(crate) fn sign_into(
        &self,
        (name, key, datacenter): (&str, &str, &str),
        out: &Path,
        services: &[&str],
    ) {
        let dir = self.dir();
        let mut args = vec![
            "ca",
            "sign",
            "--ca",
            &dir,
            "--pubkey",
            key,
            "--name",
            name,
            "--datacenter",
            datacenter,
            "--out",
            out.to_str().expect("UTF-8"),
        ];
        let services = services.join(",");
        if !services.is_empty() {
            args.extend(["--services", &services]);
        }
        let signed = ferry(&args, self.dir.path());
        assert!(signed.success(), "{signed:?}");
    }

    /// The CA's public key, base64, as `/status` names an issuer.
    pub(crate) fn key(&self) -> String {
        let text = fs::read_to_string(self.certificate()).expect("the CA certificate");
        let ca = Certificate::from_pem(&text).expect("a certificate");
        ferry_tunnel::PublicKey(ca.subject.key).to_string()
    }

    /// A certificate for `node` valid from `not_before` for `valid`, which `ferry ca sign`
    /// will not make (it starts now), written as `node.crt`.
    pub(crate) fn sign_window(
        &self,
        node: &NodeBuilder,
        not_before: SystemTime,
        valid: Duration,
    ) -> &'static str {
        let key = fs::read_to_string(format!("{}/ca.key", self.dir())).expect("the CA key");
        let ca = CaKey::from_base64(&key).expect("a CA key");
        let cert = ca.sign(subject(node), not_before, valid).expect("signs");
        write_certificate(node, &cert)
    }
}

fn subject(node: &NodeBuilder) -> Subject {
    let key: ferry_tunnel::PublicKey = node.public_key().parse().expect("a key");
    Subject {
        kind: Kind::Node,
        key: key.0,
        name: node.name().to_owned(),
        datacenter: node.configured_datacenter().to_owned(),
        services: vec![],
        groups: vec![],
    }
}

pub(crate) fn write_certificate(node: &NodeBuilder, cert: &Certificate) -> &'static str {
    fs::write(node.dir().join("node.crt"), cert.to_pem()).expect("writes");
    "node.crt"
}
