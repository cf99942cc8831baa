//! `examples/kubernetes/` (issue 20, point 4): the manifests validate against the Kubernetes
//! 1.29 schemas (the first with native sidecars), offline, with `kubernetes-validate --strict`
//! (the Python package, which carries the schemas);
//! and the Ferry configs they carry pass `ferry check`. No cluster is needed.

mod support;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use support::{ferry, require_tool, run, TempDir};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join("kubernetes")
}

const MANIFESTS: [&str; 3] = ["namespace.yaml", "sidecar.yaml", "gateway.yaml"];

fn validate(files: &[PathBuf]) -> support::Ran {
    require_tool("python3");
    run(
        std::process::Command::new("python3")
            .args(["-m", "kubernetes_validate", "--strict", "-k", "1.29.0"])
            .args(files),
        Duration::from_secs(120),
    )
}

#[test]
fn the_manifests_validate_against_the_kubernetes_schemas() {
    let files: Vec<PathBuf> = MANIFESTS.iter().map(|m| examples().join(m)).collect();
    let ran = validate(&files);
    assert!(ran.success(), "{ran:?}");
    for kind in [
        "deployment/greeter",
        "deployment/ferry-gateway",
        "service/ferry-gateway-wan",
    ] {
        assert!(
            ran.stdout.contains(&format!("passed for resource {kind}"))
                || ran.stderr.contains(&format!("passed for resource {kind}")),
            "{kind} was checked: {ran:?}"
        );
    }
    // The check is real: a field Kubernetes does not have is refused.
    let dir = TempDir::new("k8s");
    let broken = dir.join("broken.yaml");
    let text = fs::read_to_string(&files[1]).expect("reads");
    fs::write(
        &broken,
        text.replace("restartPolicy: Always", "restartPolicyy: Always"),
    )
    .expect("writes");
    assert!(!validate(&[broken]).success(), "a misspelt field fails");
}

/// The `ferry.toml: |` block of a manifest, unindented.
fn ferry_toml(manifest: &str) -> String {
    let mut lines = manifest.lines().skip_while(|l| l.trim() != "ferry.toml: |");
    lines.next();
    let block: Vec<&str> = lines
        .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
        .collect();
    block
        .iter()
        .map(|l| l.strip_prefix("    ").unwrap_or(l.trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_configs_in_the_manifests_pass_ferry_check() {
    let dir = TempDir::new("k8s-configs");
    let public = support::keygen(&dir.join("peer.key"));
    let trusted = dir.join("trusted.keys");
    fs::write(&trusted, format!("{public}\n")).expect("writes");
    for manifest in ["sidecar.yaml", "gateway.yaml"] {
        let text = fs::read_to_string(examples().join(manifest)).expect("reads");
        let config = ferry_toml(&text)
            .replace("DC2-GATEWAY-PUBLIC-KEY", &public)
            .replace("GATEWAY-PUBLIC-KEY", &public)
            .replace("/etc/ferry/trusted.keys", trusted.to_str().expect("UTF-8"));
        assert!(config.contains("[node]"), "{manifest}: {config}");
        let path = dir.join(&format!("{manifest}.toml"));
        fs::write(&path, config).expect("writes");
        let checked = ferry(
            &["check", "--config", path.to_str().expect("UTF-8")],
            dir.path(),
        );
        assert!(checked.success(), "{manifest}: {checked:?}");
    }
}
