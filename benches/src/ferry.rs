//! Ferry nodes as a user runs them: the release binary, `ferry keygen`, a config file each,
//! `ferry run`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Result};
use crate::process::{command_in, output, Process};

/// The workspace root, where `cargo build` runs and `target/` lives.
pub(crate) fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// `FERRY_BIN`, or `target/release/ferry`, built first when missing or older than the source.
pub(crate) async fn binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("FERRY_BIN") {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(Error::Usage(format!(
                "FERRY_BIN={} is not a file",
                bin.display()
            )))
        };
    }
    let root = workspace_root();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let bin = target.join("release").join("ferry");
    let built = modified(&bin);
    let source = ["tunnel", "proxy", "control"]
        .iter()
        .map(|c| newest(&root.join(c)))
        .chain(
            ["Cargo.toml", "Cargo.lock"]
                .iter()
                .map(|f| modified(&root.join(f))),
        )
        .flatten()
        .max();
    let stale = match (built, source) {
        (None, _) => true,
        (Some(built), Some(source)) => source > built,
        (Some(_), None) => false,
    };
    if stale {
        println!(
            "building {} (cargo build --release -p ferry-control)",
            bin.display()
        );
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .current_dir(&root)
            .args(["build", "--release", "-p", "ferry-control"])
            .env("CARGO_TARGET_DIR", &target);
        output("cargo build --release -p ferry-control", build).await?;
    }
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(Error::Output {
            what: "cargo build".into(),
            detail: format!("{} is still missing after the build", bin.display()),
        })
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    path.metadata().and_then(|m| m.modified()).ok()
}

/// The newest modification time of any file under `dir`.
fn newest(dir: &Path) -> Option<SystemTime> {
    let mut newest = modified(dir);
    let entries = std::fs::read_dir(dir).ok()?;
    for entry in entries.flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            self::newest(&path)
        } else {
            modified(&path)
        };
        newest = newest.max(t);
    }
    newest
}

/// `ferry keygen --out PATH`, returning the public key it prints.
pub(crate) async fn keygen(ferry: &Path, path: &Path) -> Result<String> {
    let _ = std::fs::remove_file(path);
    let mut c = Command::new(ferry);
    c.arg("keygen").arg("--out").arg(path);
    let out = output("ferry keygen", c).await?;
    crate::tool_output::public_key(&out).ok_or_else(|| Error::Output {
        what: "ferry keygen".into(),
        detail: format!("no public key in {out:?}"),
    })
}

/// What one node is given in its config file.
pub(crate) struct NodeSpec {
    pub name: String,
    pub key_file: PathBuf,
    pub tunnel: SocketAddr,
    pub admin: SocketAddr,
    /// Peers to dial: address and public key.
    pub peers: Vec<(SocketAddr, String)>,
    pub trust: Vec<String>,
    /// Local services: name, address, protocol.
    pub services: Vec<(String, SocketAddr, &'static str)>,
    pub http_outbound: Option<SocketAddr>,
    /// TCP outbounds: listen address and service.
    pub tcp_outbounds: Vec<(SocketAddr, String)>,
    /// A node of the datacenters scenario; `None` for the pairs compared with peers.
    pub mesh: Option<MeshPlace>,
}

/// A pair for opaque TCP: `NAME-b` on `b` fronts the service `echo` at `echo` and trusts
/// `NAME-a` on `a`, which dials it and takes connections for it on `a`:17710. Keys are made in
/// `dir`. Returns `(a, b)`, not started.
pub(crate) async fn tcp_pair(
    ferry: &Path,
    dir: &Path,
    name: &str,
    (a, b): (std::net::Ipv4Addr, std::net::Ipv4Addr),
    echo: SocketAddr,
) -> Result<(NodeSpec, NodeSpec)> {
    let (key_a, key_b) = (
        dir.join(format!("{name}-a.key")),
        dir.join(format!("{name}-b.key")),
    );
    let public_a = keygen(ferry, &key_a).await?;
    let public_b = keygen(ferry, &key_b).await?;
    let b = NodeSpec {
        name: format!("{name}-b"),
        key_file: key_b,
        tunnel: SocketAddr::from((b, 17700)),
        admin: SocketAddr::from((b, 17702)),
        peers: vec![],
        trust: vec![public_a],
        services: vec![("echo".into(), echo, "tcp")],
        http_outbound: None,
        tcp_outbounds: vec![],
        mesh: None,
    };
    let a = NodeSpec {
        name: format!("{name}-a"),
        key_file: key_a,
        tunnel: SocketAddr::from((a, 17700)),
        admin: SocketAddr::from((a, 17702)),
        peers: vec![(b.tunnel, public_b)],
        trust: vec![],
        services: vec![],
        http_outbound: None,
        tcp_outbounds: vec![(SocketAddr::from((a, 17710)), "echo".into())],
        mesh: None,
    };
    Ok((a, b))
}

/// A node's place among datacenters.
pub(crate) struct MeshPlace {
    pub datacenter: String,
    pub gateway: bool,
}

impl NodeSpec {
    pub(crate) fn to_toml(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "[node]\nname = \"{}\"\nkey_file = {:?}",
            self.name, self.key_file
        );
        if let Some(place) = &self.mesh {
            let _ = writeln!(t, "datacenter = \"{}\"", place.datacenter);
        }
        t.push('\n');
        let peers: Vec<String> = self
            .peers
            .iter()
            .map(|(addr, key)| format!("{{ address = \"{addr}\", key = \"{key}\" }}"))
            .collect();
        let trust: Vec<String> = self.trust.iter().map(|k| format!("\"{k}\"")).collect();
        let _ = writeln!(
            t,
            "[tunnel]\nlisten = \"{}\"\npeers = [{}]\ntrust = [{}]\ngateway = {}\n",
            self.tunnel,
            peers.join(", "),
            trust.join(", "),
            self.mesh.as_ref().is_some_and(|m| m.gateway),
        );
        // A long interval keeps health probes out of the peer comparisons (an iperf3 server
        // in particular takes every connection for a test that never comes). The datacenters
        // scenario measures failover with Ferry's default interval (1 s).
        let health = match self.mesh {
            Some(_) => "",
            None => "health = { interval = \"30s\" }\n",
        };
        for (name, addr, protocol) in &self.services {
            let _ = writeln!(
                t,
                "[[service]]\nname = \"{name}\"\naddress = \"{addr}\"\nprotocol = \"{protocol}\"\n{health}"
            );
        }
        if let Some(addr) = self.http_outbound {
            let _ = writeln!(t, "[[outbound]]\nkind = \"http\"\nlisten = \"{addr}\"\n");
        }
        for (addr, service) in &self.tcp_outbounds {
            let _ = writeln!(
                t,
                "[[outbound]]\nkind = \"tcp\"\nlisten = \"{addr}\"\nservice = \"{service}\"\n"
            );
        }
        let _ = writeln!(t, "[admin]\nlisten = \"{}\"", self.admin);
        // Port 0 unless a scenario publishes (broker.rs says where): nodes must not clash on
        // 7703.
        let _ = writeln!(t, "[api]\nlisten = \"127.0.0.1:0\"");
        t
    }
}

/// Writes the node's config into `dir` and starts `ferry run` (inside `ns` when given).
pub(crate) fn start(
    ferry: &Path,
    spec: &NodeSpec,
    dir: &Path,
    ns: Option<&str>,
) -> Result<Process> {
    start_with(ferry, spec, &spec.to_toml(), dir, ns)
}

/// Like [`start`], with the config text `toml` written for `spec` (its TOML with more).
pub(crate) fn start_with(
    ferry: &Path,
    spec: &NodeSpec,
    toml: &str,
    dir: &Path,
    ns: Option<&str>,
) -> Result<Process> {
    let config = dir.join(format!("{}.toml", spec.name));
    std::fs::write(&config, toml).map_err(Error::io(format!("writing {}", config.display())))?;
    let mut c = command_in(ns, ferry);
    c.arg("run")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn");
    Process::spawn(&format!("ferry-{}", spec.name), &mut c, dir)
}

/// Waits until `node`, asked through its own CLI (so this works inside a namespace too),
/// has a healthy route to `service`.
pub(crate) async fn wait_for_route(
    ferry: &Path,
    node: &mut Process,
    admin: SocketAddr,
    ns: Option<&str>,
    service: &str,
) -> Result<()> {
    let start = Instant::now();
    let timeout = Duration::from_secs(20);
    loop {
        node.check_running()?;
        if has_route(ferry, admin, ns, service).await {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(Error::Timeout {
                what: format!("{} learning a healthy route to {service}", node.name()),
                seconds: timeout.as_secs(),
                hint: format!("; its log ends:\n{}", node.log_tail()),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether the node at `admin` has a healthy route to `service` now, asked once through its
/// CLI; an admin API that does not answer counts as no.
pub(crate) async fn has_route(
    ferry: &Path,
    admin: SocketAddr,
    ns: Option<&str>,
    service: &str,
) -> bool {
    let mut c = command_in(ns, ferry);
    c.args(["routes", "--json", "--admin", &admin.to_string()]);
    match output("ferry routes", c).await {
        Ok(json) => has_healthy_route(&json, service),
        Err(_) => false,
    }
}

fn has_healthy_route(json: &str, service: &str) -> bool {
    let Ok(serde_json::Value::Array(routes)) = serde_json::from_str::<serde_json::Value>(json)
    else {
        return false;
    };
    routes.iter().any(|r| {
        r.get("service").and_then(|s| s.as_str()) == Some(service)
            && r.get("healthy").and_then(|h| h.as_bool()) == Some(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_routes_json() {
        let json = r#"[{"service":"bench","healthy":false},{"service":"echo","healthy":true}]"#;
        assert!(has_healthy_route(json, "echo"));
        assert!(!has_healthy_route(json, "bench"));
        assert!(!has_healthy_route("oops", "echo"));
    }

    #[test]
    fn config_names_every_listener() {
        let spec = NodeSpec {
            name: "a".into(),
            key_file: "a.key".into(),
            tunnel: "127.0.0.1:1".parse().unwrap_or_else(|_| unreachable!()),
            admin: "127.0.0.1:2".parse().unwrap_or_else(|_| unreachable!()),
            peers: vec![],
            trust: vec!["K".into()],
            services: vec![],
            http_outbound: "127.0.0.1:3".parse().ok(),
            tcp_outbounds: vec![(
                "127.0.0.1:4".parse().unwrap_or_else(|_| unreachable!()),
                "echo".into(),
            )],
            mesh: None,
        };
        let toml = spec.to_toml();
        for needle in [
            "listen = \"127.0.0.1:1\"",
            "trust = [\"K\"]",
            "kind = \"http\"",
            "service = \"echo\"",
            "listen = \"127.0.0.1:2\"",
        ] {
            assert!(toml.contains(needle), "{needle} missing from\n{toml}");
        }
    }
}
