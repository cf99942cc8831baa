//! A mesh CA for tests: made with `ferry ca init`, signing with `ferry ca sign`, and, for
//! what no command makes (expired, not yet valid), with the library.

use std::fs;
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
        let out = node.dir().join("node.crt");
        let dir = self.dir();
        let mut args = vec![
            "ca",
            "sign",
            "--ca",
            &dir,
            "--pubkey",
            node.public_key(),
            "--name",
            node.name(),
            "--datacenter",
            node.configured_datacenter(),
            "--out",
            out.to_str().expect("UTF-8"),
        ];
        let services = services.join(",");
        if !services.is_empty() {
            args.extend(["--services", &services]);
        }
        let signed = ferry(&args, self.dir.path());
        assert!(signed.success(), "{signed:?}");
        "node.crt"
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
