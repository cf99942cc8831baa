//! What the broker scenario publishes through, on loopback: Ferry's mesh broker within one
//! datacenter and across two (through a gateway on each side), Ferry's `nats` broker, and a
//! `nats-server` with JetStream on, which the `nats` broker uses and core NATS is measured on.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use super::traffic::{serve_subscriber, Arrivals};
use crate::backend;
use crate::error::{Error, Result};
use crate::ferry::{self, MeshPlace, NodeSpec};
use crate::process::{output, wait_for_port, Process};

const TUNNEL_PORT: u16 = 17700;
const ADMIN_PORT: u16 = 17710;
const API_PORT: u16 = 17703;
const SINK_PORT: u16 = 18090;
const NATS_PORT: u16 = 14222;
const PATIENCE: Duration = Duration::from_secs(20);

/// The subject prefix and topics the scenario publishes on.
pub(crate) const TOPIC: &str = "bench.messages";
/// The topic of the subscription that takes batches.
pub(crate) const BATCH_TOPIC: &str = "batched.messages";
/// The most messages one delivery carries to that subscription, and one publish carries.
pub(crate) const BATCH: usize = 100;

/// Host `n` of the scenario: 127.0.68.n, apart from the other labs.
fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 68, n)
}

/// A subscriber (an HTTP server recording arrivals) for one target.
pub(crate) struct Sink {
    pub address: SocketAddr,
    pub arrivals: Arrivals,
}

impl Sink {
    async fn start(address: SocketAddr, base: Instant) -> Result<Sink> {
        let listener: TcpListener = backend::bind(address).await?;
        let arrivals = Arrivals::new(base);
        tokio::spawn(serve_subscriber(listener, arrivals.clone()));
        Ok(Sink { address, arrivals })
    }
}

/// Everything running: nodes, nats-server, and a subscriber per target.
pub(crate) struct Targets {
    _processes: Vec<Process>,
    /// Published to straight, with no broker: the baseline.
    pub direct: Sink,
    /// The publishing node's application API and the subscriber, per Ferry target.
    pub ferry: (SocketAddr, Sink),
    /// The same pair, to a subscription that takes batches.
    pub ferry_batch: (SocketAddr, Sink),
    pub ferry_2dc: (SocketAddr, Sink),
    pub ferry_nats: (SocketAddr, Sink),
    pub nats_url: String,
}

/// `[[subscription]]` of service `sink` to the scenario's topics.
const SUBSCRIPTION: &str =
    "[[subscription]]\ntopic = \"bench.>\"\nservice = \"sink\"\npath = \"/events\"\n";

fn spec(dir: &Path, n: u8, name: &str, datacenter: Option<(&str, bool)>) -> NodeSpec {
    NodeSpec {
        name: name.to_owned(),
        key_file: dir.join(format!("{name}.key")),
        tunnel: SocketAddr::from((ip(n), TUNNEL_PORT)),
        admin: SocketAddr::from((ip(n), ADMIN_PORT)),
        peers: vec![],
        trust: vec![],
        services: vec![],
        http_outbound: None,
        tcp_outbounds: vec![],
        mesh: datacenter.map(|(dc, gateway)| MeshPlace {
            datacenter: dc.to_owned(),
            gateway,
        }),
    }
}

fn api(n: u8) -> SocketAddr {
    SocketAddr::from((ip(n), API_PORT))
}

/// Starts `spec` with its application API on host `n` and `extra` TOML.
fn start(ferry: &Path, spec: &NodeSpec, n: u8, extra: &str, dir: &Path) -> Result<Process> {
    let toml = spec.to_toml().replace(
        "[api]\nlisten = \"127.0.0.1:0\"",
        &format!("[api]\nlisten = \"{}\"", api(n)),
    ) + extra;
    ferry::start_with(ferry, spec, &toml, dir, None)
}

impl Targets {
    pub(crate) async fn start(ferry_bin: &Path, dir: &Path, base: Instant) -> Result<Targets> {
        let dir = dir.join("broker");
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let mut processes = Vec::new();
        let sink_at = |n: u8| SocketAddr::from((ip(n), SINK_PORT));
        let direct = Sink::start(sink_at(50), base).await?;

        let nats_url = format!("nats://{}:{NATS_PORT}", ip(100));
        // Installed when missing (as root), else named.
        let nats_server = crate::peers::ensure_one("nats-server", "nats-server").await?;
        let mut nats = Command::new(nats_server);
        nats.args([
            "-js",
            "-a",
            &ip(100).to_string(),
            "-p",
            &NATS_PORT.to_string(),
        ])
        .arg("-sd")
        .arg(dir.join("nats-store"));
        let mut nats = Process::spawn("nats-server", &mut nats, &dir)?;
        wait_for_port(SocketAddr::from((ip(100), NATS_PORT)), &mut nats, PATIENCE).await?;
        processes.push(nats);

        let mut keys = std::collections::HashMap::new();
        for name in ["p1", "s1", "p2", "gw1", "gw2", "s2", "pn", "sn"] {
            let key = ferry::keygen(ferry_bin, &dir.join(format!("{name}.key"))).await?;
            keys.insert(name, key);
        }
        let key = |name: &str| keys.get(name).cloned().unwrap_or_default();
        let tunnel = |n: u8| SocketAddr::from((ip(n), TUNNEL_PORT));

        // One datacenter: p1 dials s1, which fronts the subscriber.
        let sink1 = Sink::start(sink_at(2), base).await?;
        let batch_sink = Sink::start(sink_at(3), base).await?;
        let mut s1 = spec(&dir, 2, "s1", None);
        s1.trust = vec![key("p1")];
        s1.services = vec![
            ("sink".into(), sink1.address, "http"),
            ("batchsink".into(), batch_sink.address, "http"),
        ];
        let batched = format!(
            "[[subscription]]\ntopic = \"batched.>\"\nservice = \"batchsink\"\npath = \"/events\"\nbatch = {BATCH}\n"
        );
        let s1_subscriptions = format!("{SUBSCRIPTION}{batched}");
        processes.push(start(ferry_bin, &s1, 2, &s1_subscriptions, &dir)?);
        let mut p1 = spec(&dir, 1, "p1", None);
        p1.peers = vec![(tunnel(2), key("s1"))];
        processes.push(start(ferry_bin, &p1, 1, "", &dir)?);

        // Two datacenters: p2 (dc1) → gw1 (dc1) ↔ gw2 (dc2) ← s2 (dc2).
        let sink2 = Sink::start(sink_at(14), base).await?;
        let mut gw2 = spec(&dir, 13, "gw2", Some(("dc2", true)));
        gw2.trust = vec![key("gw1"), key("s2")];
        processes.push(start(ferry_bin, &gw2, 13, "", &dir)?);
        let mut gw1 = spec(&dir, 12, "gw1", Some(("dc1", true)));
        gw1.peers = vec![(tunnel(13), key("gw2"))];
        gw1.trust = vec![key("p2")];
        processes.push(start(ferry_bin, &gw1, 12, "", &dir)?);
        let mut s2 = spec(&dir, 14, "s2", Some(("dc2", false)));
        s2.peers = vec![(tunnel(13), key("gw2"))];
        s2.services = vec![("sink".into(), sink2.address, "http")];
        processes.push(start(ferry_bin, &s2, 14, SUBSCRIPTION, &dir)?);
        let mut p2 = spec(&dir, 11, "p2", Some(("dc1", false)));
        p2.peers = vec![(tunnel(12), key("gw1"))];
        processes.push(start(ferry_bin, &p2, 11, "", &dir)?);

        // The nats broker: pn and sn are not linked; NATS carries the messages.
        let sink3 = Sink::start(sink_at(22), base).await?;
        let broker = format!("[broker]\nkind = \"nats\"\nservers = [\"{nats_url}\"]\n");
        let mut sn = spec(&dir, 22, "sn", None);
        sn.services = vec![("sink".into(), sink3.address, "http")];
        processes.push(start(
            ferry_bin,
            &sn,
            22,
            &format!("{SUBSCRIPTION}{broker}"),
            &dir,
        )?);
        let pn = spec(&dir, 21, "pn", None);
        processes.push(start(ferry_bin, &pn, 21, &broker, &dir)?);

        for (n, node) in [(1, "p1"), (11, "p2"), (21, "pn")] {
            let i = processes
                .iter()
                .position(|p| p.name() == format!("ferry-{node}"))
                .unwrap_or(0);
            wait_for_port(api(n), &mut processes[i], PATIENCE).await?;
        }
        for n in [1, 11] {
            wait_for_subscription(ferry_bin, SocketAddr::from((ip(n), ADMIN_PORT))).await?;
        }
        Ok(Targets {
            _processes: processes,
            direct,
            ferry: (api(1), sink1),
            ferry_batch: (api(1), batch_sink),
            ferry_2dc: (api(11), sink2),
            ferry_nats: (api(21), sink3),
            nats_url,
        })
    }
}

/// Waits until the node at `admin` knows a subscription: publishes will find their group.
async fn wait_for_subscription(ferry: &Path, admin: SocketAddr) -> Result<()> {
    let start = Instant::now();
    loop {
        let mut c = Command::new(ferry);
        c.args(["subscriptions", "--json", "--admin", &admin.to_string()]);
        if let Ok(json) = output("ferry subscriptions", c).await {
            if json.contains("\"group\"") {
                return Ok(());
            }
        }
        if start.elapsed() > PATIENCE {
            return Err(Error::Timeout {
                what: format!("the node at {admin} learning the subscriber's subscription"),
                seconds: PATIENCE.as_secs(),
                hint: String::new(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
