//! `ferry ca`: a CA made, node certificates signed and shown, as the reference promises.
//! Needs no root or namespaces.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use support::{ferry, TempDir};

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn a_ca_signs_node_certificates_that_show_their_attributes() {
    let dir = TempDir::new("ca");
    let at = |name: &str| dir.join(name).to_str().expect("UTF-8").to_owned();
    let made = ferry(
        &["ca", "init", "--name", "mesh", "--out", &at("ca")],
        dir.path(),
    );
    assert!(made.success(), "{made:?}");
    let mode = fs::metadata(dir.join("ca/ca.key")).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode.ok(), Some(0o600), "the CA key is private");
    let again = ferry(
        &["ca", "init", "--name", "mesh", "--out", &at("ca")],
        dir.path(),
    );
    assert!(!again.success(), "a CA is never overwritten");
    assert!(again.stderr.contains("refusing to overwrite"), "{again:?}");

    let key = ferry(&["keygen", "--out", &at("node.key")], dir.path());
    assert!(key.success(), "{key:?}");
    let public = key.stdout.trim().to_owned();
    let signed = ferry(
        &[
            "ca",
            "sign",
            "--ca",
            &at("ca"),
            "--key",
            &at("node.key"),
            "--name",
            "billing-1",
            "--datacenter",
            "eu-west",
            "--services",
            "billing,invoices",
            "--groups",
            "payments",
            "--valid",
            "30d",
            "--out",
            &at("node.crt"),
        ],
        dir.path(),
    );
    assert!(signed.success(), "{signed:?}");
    let shown = ferry(
        &["ca", "show", &at("node.crt"), "--ca", &at("ca"), "--json"],
        dir.path(),
    );
    assert!(shown.success(), "{shown:?}");
    let fields = json(&shown.stdout);
    assert_eq!(fields["kind"], "node");
    assert_eq!(fields["key"], public.as_str());
    assert_eq!(fields["name"], "billing-1");
    assert_eq!(fields["datacenter"], "eu-west");
    assert_eq!(
        fields["services"],
        serde_json::json!(["billing", "invoices"])
    );
    assert_eq!(fields["groups"], serde_json::json!(["payments"]));
    assert_eq!(fields["status"], "valid, signed by CA mesh");
    let ca = json(&ferry(&["ca", "show", &at("ca/ca.crt"), "--json"], dir.path()).stdout);
    assert_eq!(fields["issuer"], ca["key"], "the CA's key is the issuer");

    // A certificate from another CA is refused by this one; so is an altered file.
    let other = ferry(
        &["ca", "init", "--name", "other", "--out", &at("other")],
        dir.path(),
    );
    assert!(other.success(), "{other:?}");
    let elsewhere = ferry(
        &[
            "ca",
            "show",
            &at("node.crt"),
            "--ca",
            &at("other"),
            "--json",
        ],
        dir.path(),
    );
    assert!(json(&elsewhere.stdout)["status"]
        .as_str()
        .is_some_and(|s| s.starts_with("refused")));
    let mut text = fs::read_to_string(dir.join("node.crt")).expect("the certificate");
    let body_start = text.find('\n').expect("a first line") + 1;
    let flipped = if &text[body_start + 10..body_start + 11] == "A" {
        "B"
    } else {
        "A"
    };
    text.replace_range(body_start + 10..body_start + 11, flipped);
    fs::write(dir.join("forged.crt"), text).expect("written");
    let forged = ferry(
        &["ca", "show", &at("forged.crt"), "--ca", &at("ca")],
        dir.path(),
    );
    let refused = !forged.success() || forged.stdout.contains("refused");
    assert!(refused, "an altered certificate is not valid: {forged:?}");
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    let dir = TempDir::new("ca-bad");
    let at = |name: &str| dir.join(name).to_str().expect("UTF-8").to_owned();
    assert!(ferry(
        &["ca", "init", "--name", "mesh", "--out", &at("ca")],
        dir.path()
    )
    .success());
    for (args, says) in [
        (vec!["--pubkey", "not-a-key", "--name", "n"], "--pubkey"),
        (
            vec![
                "--pubkey",
                "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=",
                "--name",
                "bad name",
            ],
            "--name",
        ),
        (
            vec![
                "--pubkey",
                "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=",
                "--name",
                "n",
                "--services",
                "a.b",
            ],
            "--services",
        ),
        (
            vec![
                "--pubkey",
                "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=",
                "--name",
                "n",
                "--valid",
                "soon",
            ],
            "--valid",
        ),
    ] {
        let mut full = vec!["ca", "sign", "--ca"];
        let ca = at("ca");
        let out = at("x.crt");
        full.push(&ca);
        full.extend(args);
        full.extend(["--out", &out]);
        let ran = ferry(&full, dir.path());
        assert!(!ran.success(), "{full:?} succeeded");
        assert!(ran.stderr.contains(says), "{full:?}: {}", ran.stderr);
    }
    let missing = ferry(
        &[
            "ca",
            "sign",
            "--ca",
            &at("nowhere"),
            "--pubkey",
            "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=",
            "--name",
            "n",
            "--out",
            &at("x.crt"),
        ],
        dir.path(),
    );
    assert!(
        !missing.success() && missing.stderr.contains("cannot read"),
        "{missing:?}"
    );
    fs::write(dir.join("junk.crt"), "junk").expect("written");
    let junk = ferry(&["ca", "show", &at("junk.crt")], dir.path());
    assert!(
        !junk.success() && junk.stderr.contains("junk.crt"),
        "{junk:?}"
    );
}
