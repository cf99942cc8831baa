//! Bulk TCP between the two namespaces: iperf3 over the bare veth, through Ferry's tunnel
//! (iperf3 → Ferry's TCP outbound in ns1 → tunnel → Ferry in ns2 → iperf3 on ns2's loopback),
//! and over Nebula's overlay (a nebula on a tun device in each namespace, a static host map and
//! no lighthouse).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::ferry::{self, NodeSpec};
use crate::netns::{Namespaces, NS1, NS2, OVERLAY1, OVERLAY2, VETH1, VETH2};
use crate::peers::Peers;
use crate::process::{command_in, output, wait_for_port_in, Process};
use crate::tool_output::{iperf3_error, iperf3_received_bits_per_second};

const IPERF_PORT: u16 = 5201;
const OUTBOUND_PORT: u16 = 7703;
const ADMIN_PORT: u16 = 7702;
const TUNNEL_PORT: u16 = 7700;
const NEBULA_PORT: u16 = 4242;

/// The three ways across, with everything they need running. Fields drop in order: the
/// processes go before the namespaces that hold them.
pub(crate) struct Bulk {
    _processes: Vec<Process>,
    _namespaces: Namespaces,
    iperf3: std::path::PathBuf,
}

/// The targets, as the report names them.
pub(crate) const TARGETS: [&str; 3] = ["veth", "ferry", "nebula"];

impl Bulk {
    pub(crate) async fn start(peers: &Peers, ferry_bin: &Path, dir: &Path) -> Result<Bulk> {
        let namespaces = Namespaces::create()?;
        let mut processes = Vec::new();

        let mut server = command_in(Some(NS2), &peers.iperf3);
        server.args(["-s", "-p", &IPERF_PORT.to_string()]);
        let mut server = Process::spawn("iperf3-server", &mut server, dir)?;
        // Ferry's first health check must find it listening, or the route waits for the next.
        wait_for_port_in(NS2, IPERF_PORT, &mut server, Duration::from_secs(10)).await?;
        processes.push(server);

        // Ferry: ns2 fronts the iperf3 server as a TCP service; ns1 offers it on an outbound.
        let key1 = ferry::keygen(ferry_bin, &dir.join("ns1.key")).await?;
        let key2 = ferry::keygen(ferry_bin, &dir.join("ns2.key")).await?;
        let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let node2 = NodeSpec {
            name: "ns2".into(),
            key_file: dir.join("ns2.key"),
            tunnel: SocketAddr::from((VETH2, TUNNEL_PORT)),
            admin: local(ADMIN_PORT),
            peers: vec![],
            trust: vec![key1],
            services: vec![("iperf".into(), local(IPERF_PORT), "tcp")],
            http_outbound: None,
            tcp_outbounds: vec![],
            mesh: None,
        };
        let node1 = NodeSpec {
            name: "ns1".into(),
            key_file: dir.join("ns1.key"),
            tunnel: SocketAddr::from((VETH1, TUNNEL_PORT)),
            admin: local(ADMIN_PORT),
            peers: vec![(SocketAddr::from((VETH2, TUNNEL_PORT)), key2)],
            trust: vec![],
            services: vec![],
            http_outbound: None,
            tcp_outbounds: vec![(local(OUTBOUND_PORT), "iperf".into())],
            mesh: None,
        };
        processes.push(ferry::start(ferry_bin, &node2, dir, Some(NS2))?);
        let mut n1 = ferry::start(ferry_bin, &node1, dir, Some(NS1))?;
        ferry::wait_for_route(ferry_bin, &mut n1, local(ADMIN_PORT), Some(NS1), "iperf").await?;
        processes.push(n1);

        // Nebula: a CA, a certificate per node, and each node told where the other is.
        let cert_dir = dir.join("nebula");
        std::fs::create_dir_all(&cert_dir).map_err(Error::io("creating the nebula directory"))?;
        let (ca_crt, ca_key) = (cert_dir.join("ca.crt"), cert_dir.join("ca.key"));
        let mut ca = Command::new(&peers.nebula_cert);
        ca.args(["ca", "-name", "ferry-bench", "-duration", "24h", "-out-crt"])
            .arg(&ca_crt)
            .arg("-out-key")
            .arg(&ca_key);
        output("nebula-cert ca", ca).await?;
        for (name, overlay, underlay, other_overlay, other_underlay, ns) in [
            ("n1", OVERLAY1, VETH1, OVERLAY2, VETH2, NS1),
            ("n2", OVERLAY2, VETH2, OVERLAY1, VETH1, NS2),
        ] {
            let (crt, key) = (
                cert_dir.join(format!("{name}.crt")),
                cert_dir.join(format!("{name}.key")),
            );
            let mut sign = Command::new(&peers.nebula_cert);
            sign.args([
                "sign",
                "-name",
                name,
                "-ip",
                &format!("{overlay}/25"),
                "-ca-crt",
            ])
            .arg(&ca_crt)
            .arg("-ca-key")
            .arg(&ca_key)
            .arg("-out-crt")
            .arg(&crt)
            .arg("-out-key")
            .arg(&key);
            output("nebula-cert sign", sign).await?;
            let config = format!(
                "pki:
  ca: {ca}
  cert: {crt}
  key: {key}
static_host_map:
  \"{other_overlay}\": [\"{other_underlay}:{NEBULA_PORT}\"]
lighthouse:
  am_lighthouse: false
  hosts: []
listen:
  host: {underlay}
  port: {NEBULA_PORT}
punchy:
  punch: false
tun:
  disabled: false
  dev: nebula-{name}
logging:
  level: warning
firewall:
  outbound:
    - port: any
      proto: any
      host: any
  inbound:
    - port: any
      proto: any
      host: any
",
                ca = ca_crt.display(),
                crt = crt.display(),
                key = key.display(),
            );
            let path = cert_dir.join(format!("{name}.yml"));
            std::fs::write(&path, config)
                .map_err(Error::io(format!("writing {}", path.display())))?;
            let mut c = command_in(Some(ns), &peers.nebula);
            c.arg("-config").arg(&path);
            processes.push(Process::spawn(&format!("nebula-{name}"), &mut c, dir)?);
        }

        let bulk = Bulk {
            _processes: processes,
            _namespaces: namespaces,
            iperf3: peers.iperf3.clone(),
        };
        // The first packets over Nebula trigger its handshake; wait for all three paths.
        for target in TARGETS {
            bulk.throughput_with_retries(target, Duration::from_secs(1), Duration::from_secs(20))
                .await?;
        }
        Ok(bulk)
    }

    /// One iperf3 run from ns1 for `time`; bits per second received.
    pub(crate) async fn throughput(&self, target: &str, time: Duration) -> Result<f64> {
        let (host, port) = match target {
            "veth" => (VETH2.to_string(), IPERF_PORT),
            "ferry" => ("127.0.0.1".to_string(), OUTBOUND_PORT),
            _ => (OVERLAY2.to_string(), IPERF_PORT),
        };
        let mut c = command_in(Some(NS1), &self.iperf3);
        c.args([
            "-c",
            &host,
            "-p",
            &port.to_string(),
            "-J",
            "--connect-timeout",
            "2000",
        ])
        .args(["-t", &time.as_secs().max(1).to_string()]);
        // iperf3 exits non-zero on failure but still prints its JSON with the reason.
        let out = match output(&format!("iperf3 over {target}"), c).await {
            Ok(out) => out,
            Err(Error::Command { what, detail }) => {
                let reason = iperf3_error(&detail).unwrap_or(detail);
                return Err(Error::Command {
                    what,
                    detail: reason,
                });
            }
            Err(e) => return Err(e),
        };
        iperf3_received_bits_per_second(&out).ok_or_else(|| Error::Output {
            what: format!("iperf3 over {target}"),
            detail: iperf3_error(&out).unwrap_or_else(|| "no end.sum_received".into()),
        })
    }

    async fn throughput_with_retries(
        &self,
        target: &str,
        time: Duration,
        within: Duration,
    ) -> Result<f64> {
        let start = Instant::now();
        loop {
            match self.throughput(target, time).await {
                Ok(bps) => return Ok(bps),
                Err(e) if start.elapsed() > within => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}
