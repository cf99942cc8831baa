//! The cost of identity (issue 18, point 8), two comparisons in one run, alternating round by
//! round:
//!
//! - **handshakes**: a tunnel handshake where both sides present a certificate and check the
//!   other's against a trusted CA, beside one where the dialed node finds the caller's key in
//!   its trust list. Timed in-process, from `connect` until the link is up, paced well below
//!   the admission limits so that no Retry or drop ever enters the figures.
//! - **the request path**: HTTP/1.1 through a Ferry pair whose serving node decides every call
//!   under `default = "deny"` with ten rules (the caller matched by the last), beside a pair
//!   with no `[authorization]`: requests a second on 32 connections, latency at a fixed rate,
//!   and the CPU time the pair spends on each request.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ferry_tunnel::certificate::{CaKey, Certificate, Kind as CertKind, Subject};
use ferry_tunnel::{Identity, Network, NetworkConfig, PublicKey, Transport, Trust};

use crate::error::{Error, Result};
use crate::ferry::{self, NodeSpec};
use crate::process::{wait_for_port, Process};
use crate::side_by_side::{Comparison, Side, RPS};
use crate::stats::{median, ratio, rotation};

/// The two sides of each comparison, as the report names them.
const PLAIN: &str = "keys";
const CERTIFIED: &str = "certificates";
const NO_RULES: &str = "no rules";
const TEN_RULES: &str = "ten rules";

const HANDSHAKE_US: &str = "handshake µs";

/// Handshakes per variant per round.
const HANDSHAKES: usize = 30;
/// Between two handshakes from one address: the admission control (`tunnel/src/admission.rs`)
/// allows 16 a second from an address; this stays far below.
const HANDSHAKE_GAP: Duration = Duration::from_millis(80);

/// What a run measured.
pub(crate) struct Figures {
    /// The two pairs, HTTP/1.1 through each.
    pub comparison: Comparison,
    /// Every handshake time of each variant, in microseconds.
    handshakes: [(String, Vec<f64>); 2],
    rounds: usize,
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 67, last)
}

pub(crate) async fn measure(
    ferry_bin: &Path,
    nginx: &Path,
    dir: &Path,
    rounds: usize,
    timing: (Duration, Duration),
) -> Result<Figures> {
    let mut figures = Figures {
        comparison: Comparison::default(),
        handshakes: [(PLAIN.into(), Vec::new()), (CERTIFIED.into(), Vec::new())],
        rounds,
    };
    let dialers = [Dialer::start(false)?, Dialer::start(true)?];
    let backend = SocketAddr::from((ip(1), 18080));
    let _nginx = crate::backend::start_nginx(nginx, backend, dir).await?;
    let mut pairs = [
        Pair::start(ferry_bin, dir, backend, false).await?,
        Pair::start(ferry_bin, dir, backend, true).await?,
    ];
    let sides = pairs.each_ref().map(|pair| Side {
        name: pair.name,
        entry: pair.entry,
        pids: [pair.a.pid(), pair.b.pid()],
    });
    for round in 0..rounds {
        println!("round {} of {rounds} (identity)", round + 1);
        for i in rotation(2, round) {
            let times = dialers[i].handshakes(HANDSHAKES).await?;
            figures.handshakes[i].1.extend(times);
        }
        figures.comparison.round(&sides, round, timing).await?;
        for pair in &mut pairs {
            pair.check_running()?;
        }
    }
    Ok(figures)
}

fn setup(what: &str) -> impl Fn(ferry_tunnel::Error) -> Error + '_ {
    move |e| Error::Output {
        what: what.to_owned(),
        detail: e.to_string(),
    }
}

/// A CA and what it signs, in memory.
struct Authority {
    key: CaKey,
    certificate: Certificate,
}

impl Authority {
    fn new() -> Result<Authority> {
        let key = CaKey::generate().map_err(setup("a CA key"))?;
        let subject = subject(CertKind::Ca, key.public(), "bench-ca", &[]);
        let certificate = key
            .sign(subject, SystemTime::now(), Duration::from_secs(86_400))
            .map_err(setup("the CA certificate"))?;
        Ok(Authority { key, certificate })
    }

    fn sign(&self, key: [u8; 32], name: &str, services: &[&str]) -> Result<Certificate> {
        let subject = subject(CertKind::Node, key, name, services);
        self.key
            .sign(subject, SystemTime::now(), Duration::from_secs(86_400))
            .map_err(setup("a node certificate"))
    }

    /// A trust that vouches by this CA and presents `certificate`.
    fn trust(&self, certificate: Certificate) -> Trust {
        let trust = Trust::default();
        trust.set_authorities(vec![self.certificate.clone()]);
        trust.set_certificate(Some(certificate));
        trust
    }
}

fn subject(kind: CertKind, key: [u8; 32], name: &str, services: &[&str]) -> Subject {
    Subject {
        kind,
        key,
        name: name.into(),
        datacenter: "dc1".into(),
        services: services.iter().map(|s| s.to_string()).collect(),
        groups: vec![],
    }
}

/// A node that accepts handshakes, and a transport that dials it.
struct Dialer {
    _server: Network,
    address: SocketAddr,
    key: PublicKey,
    client: Transport,
}

impl Dialer {
    fn start(certified: bool) -> Result<Dialer> {
        let (server_id, client_id) = (
            Identity::generate().map_err(setup("a key"))?,
            Identity::generate().map_err(setup("a key"))?,
        );
        let (server_trust, client_trust) = if certified {
            let ca = Authority::new()?;
            let server = ca.sign(server_id.public().0, "server", &[])?;
            let client = ca.sign(client_id.public().0, "client", &[])?;
            (ca.trust(server), ca.trust(client))
        } else {
            (Trust::new([client_id.public()]), Trust::default())
        };
        let last = if certified { 3 } else { 2 };
        let server = Network::start(NetworkConfig {
            identity: server_id.clone(),
            name: "server".into(),
            datacenter: "dc1".into(),
            listen: SocketAddr::from((ip(last), 0)),
            advertise: None,
            gateway: false,
            peers: vec![],
            trust: Arc::new(server_trust),
            idle_link: Duration::from_secs(300),
            rekey: Duration::from_secs(120),
        })
        .map_err(setup("the accepting node"))?;
        let address = server.local_addr().map_err(setup("its address"))?;
        let client = Transport::bind(
            SocketAddr::from((ip(last + 2), 0)),
            &client_id,
            Arc::new(client_trust),
        )
        .map_err(setup("the dialing transport"))?;
        Ok(Dialer {
            _server: server,
            address,
            key: server_id.public(),
            client,
        })
    }

    /// `n` handshakes one after another; each one's time in microseconds.
    async fn handshakes(&self, n: usize) -> Result<Vec<f64>> {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let started = Instant::now();
            let link = self
                .client
                .connect(self.address, &self.key)
                .await
                .map_err(setup("a handshake"))?;
            times.push(started.elapsed().as_secs_f64() * 1e6);
            drop(link);
            tokio::time::sleep(HANDSHAKE_GAP).await;
        }
        Ok(times)
    }
}

/// A Ferry pair on loopback: `a` takes the calls, `b` fronts nginx as `bench`.
struct Pair {
    name: &'static str,
    entry: SocketAddr,
    a: Process,
    b: Process,
}

impl Pair {
    async fn start(ferry_bin: &Path, dir: &Path, backend: SocketAddr, rules: bool) -> Result<Pair> {
        let (name, base) = if rules {
            (TEN_RULES, 20)
        } else {
            (NO_RULES, 10)
        };
        let tag = if rules { "rules" } else { "plain" };
        let (key_a, key_b) = (
            dir.join(format!("{tag}-a.key")),
            dir.join(format!("{tag}-b.key")),
        );
        let public_a = ferry::keygen(ferry_bin, &key_a).await?;
        let public_b = ferry::keygen(ferry_bin, &key_b).await?;
        let at = |last: u8, port: u16| SocketAddr::from((ip(base + last), port));
        let entry = at(1, 17701);
        let b = NodeSpec {
            name: format!("{tag}-b"),
            key_file: key_b,
            tunnel: at(2, 17700),
            admin: at(2, 17702),
            peers: vec![],
            trust: if rules {
                vec![]
            } else {
                vec![public_a.clone()]
            },
            services: vec![(crate::lab::HTTP_SERVICE.into(), backend, "http")],
            http_outbound: None,
            tcp_outbounds: vec![],
            mesh: None,
        };
        let a = NodeSpec {
            name: format!("{tag}-a"),
            key_file: key_a,
            tunnel: at(1, 17700),
            admin: at(1, 17702),
            peers: vec![(b.tunnel, public_b.clone())],
            trust: vec![],
            services: vec![],
            http_outbound: Some(entry),
            tcp_outbounds: vec![],
            mesh: None,
        };
        let (toml_a, toml_b) = if rules {
            let ca = Authority::new()?;
            let ca_file = dir.join("bench-ca.crt");
            write(&ca_file, &ca.certificate.to_pem())?;
            let mut tomls = Vec::new();
            for (spec, public, services) in [
                (&a, &public_a, &[][..]),
                (&b, &public_b, &[crate::lab::HTTP_SERVICE][..]),
            ] {
                let key: PublicKey = public.parse().map_err(setup("a public key"))?;
                let cert = ca.sign(key.0, &spec.name, services)?;
                let cert_file = dir.join(format!("{}.crt", spec.name));
                write(&cert_file, &cert.to_pem())?;
                let lines = format!("ca = [{ca_file:?}]\ncertificate = {cert_file:?}\n");
                tomls.push(
                    spec.to_toml()
                        .replacen("[tunnel]\n", &format!("[tunnel]\n{lines}"), 1),
                );
            }
            let b_toml = format!("{}\n{}", tomls[1], ten_rules(&a.name));
            (tomls.remove(0), b_toml)
        } else {
            (a.to_toml(), b.to_toml())
        };
        let b_process = ferry::start_with(ferry_bin, &b, &toml_b, dir, None)?;
        let mut a_process = ferry::start_with(ferry_bin, &a, &toml_a, dir, None)?;
        wait_for_port(entry, &mut a_process, Duration::from_secs(10)).await?;
        ferry::wait_for_route(
            ferry_bin,
            &mut a_process,
            a.admin,
            None,
            crate::lab::HTTP_SERVICE,
        )
        .await?;
        Ok(Pair {
            name,
            entry,
            a: a_process,
            b: b_process,
        })
    }

    fn check_running(&mut self) -> Result<()> {
        self.a.check_running()?;
        self.b.check_running()
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(Error::io(format!("writing {}", path.display())))
}

/// Ten rules under `deny`; only the last lets `caller` in, so every call is checked by all.
fn ten_rules(caller: &str) -> String {
    let mut t = String::from("[authorization]\ndefault = \"deny\"\n");
    for i in 0..9 {
        let _ = writeln!(
            t,
            "[[authorization.rule]]\nservice = \"{}\"\nfrom = [\"node:other-{i}\", \"group:team-{i}\"]\nmethods = [\"GET\", \"POST\"]\npaths = [\"/other-{i}/*\"]",
            crate::lab::HTTP_SERVICE
        );
    }
    let _ = writeln!(
        t,
        "[[authorization.rule]]\nservice = \"{}\"\nfrom = [\"node:{caller}\"]\nmethods = [\"GET\"]\npaths = [\"/*\"]",
        crate::lab::HTTP_SERVICE
    );
    t
}

/// The report's section: medians over rounds, and the ratios that are the verdict.
pub(crate) fn section(f: &Figures) -> String {
    let mut md = String::from("# The cost of identity\n\n");
    let _ = writeln!(
        md,
        "{} rounds, the two sides of each comparison alternating. Medians.\n",
        f.rounds
    );
    md.push_str("| | without | with | ratio |\n| --- | ---: | ---: | ---: |\n");
    let [(_, plain), (_, certified)] = &f.handshakes;
    let quantile = |v: &[f64], q: f64| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .copied()
    };
    for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
        let (a, b) = (quantile(plain, q), quantile(certified, q));
        let _ = writeln!(
            md,
            "| {HANDSHAKE_US} {label} ({} each; keys beside certificates) | {} | {} | {} |",
            plain.len(),
            fmt(a),
            fmt(b),
            fmt_ratio(ratio(b, a))
        );
    }
    md.push_str(
        &f.comparison
            .rows([NO_RULES, TEN_RULES], " (no rules beside ten)"),
    );
    let per_round: Vec<f64> = f
        .comparison
        .samples
        .values(RPS, TEN_RULES)
        .iter()
        .zip(f.comparison.samples.values(RPS, NO_RULES))
        .map(|(with, without)| with / without)
        .collect();
    if let (Some(lo), Some(hi)) = (
        per_round.iter().copied().reduce(f64::min),
        per_round.iter().copied().reduce(f64::max),
    ) {
        let _ = writeln!(
            md,
            "\nThe req/s ratio round by round ranged from {lo:.3} to {hi:.3} (median {}): the noise a difference must beat.",
            fmt_ratio(median(&per_round))
        );
    }
    md.push('\n');
    md
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.0}"))
}

fn fmt_ratio(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.3}×"))
}
