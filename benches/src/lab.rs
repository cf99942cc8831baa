//! Everything on loopback, started and wired: the backends, a Ferry pair and two HAProxy pairs
//! (their hops in HTTP/1.1, and in HTTP/2), each on 127.0.66.x addresses of its own so nothing
//! collides with other work on the machine.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::backend;
use crate::error::Result;
use crate::ferry::{self, NodeSpec};
use crate::haproxy::{self, Hops, Listeners};
use crate::peers::Peers;
use crate::process::{wait_for_port, Process};

const BACKEND: Ipv4Addr = Ipv4Addr::new(127, 0, 66, 1);
const FERRY_A: Ipv4Addr = Ipv4Addr::new(127, 0, 66, 11);
const FERRY_B: Ipv4Addr = Ipv4Addr::new(127, 0, 66, 12);
const HAPROXY_A: Ipv4Addr = Ipv4Addr::new(127, 0, 66, 21);
const HAPROXY_B: Ipv4Addr = Ipv4Addr::new(127, 0, 66, 22);
const HAPROXY_H2_A: Ipv4Addr = Ipv4Addr::new(127, 0, 66, 31);
const HAPROXY_H2_B: Ipv4Addr = Ipv4Addr::new(127, 0, 66, 32);

fn at(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

/// Service names on the Ferry pair; also the Host / :authority every target is sent.
pub(crate) const HTTP_SERVICE: &str = "bench";
pub(crate) const GRPC_SERVICE: &str = "bench-grpc";
pub(crate) const TCP_SERVICE: &str = "bench-echo";

/// The loopback targets, as the report names them.
pub(crate) const TARGETS: [&str; 4] = ["direct", "ferry", "haproxy", "haproxy-h2"];

/// Where the application connects for each scenario.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub tcp: SocketAddr,
}

pub(crate) struct Lab {
    pub ferry_a: Process,
    pub ferry_b: Process,
    pub haproxy: HaproxyPair,
    pub haproxy_h2: HaproxyPair,
    nginx: Process,
}

/// One HAProxy pair, running.
pub(crate) struct HaproxyPair {
    pub a: Process,
    pub b: Process,
}

impl HaproxyPair {
    /// Starts B, then A, whose entry points are `entry`, on addresses of `b_ip`.
    async fn start(
        peers: &Peers,
        dir: &Path,
        pem: &Path,
        (entry, b_ip): (Entry, Ipv4Addr),
        hops: Hops,
    ) -> Result<HaproxyPair> {
        let a_listeners = Listeners {
            http: (entry.http, at(b_ip, 18101)),
            grpc: (entry.grpc, at(b_ip, 18102)),
            tcp: (entry.tcp, at(b_ip, 18103)),
        };
        let b_listeners = Listeners {
            http: (a_listeners.http.1, Lab::backend().http),
            grpc: (a_listeners.grpc.1, Lab::backend().grpc),
            tcp: (a_listeners.tcp.1, Lab::backend().tcp),
        };
        let tag = match hops {
            Hops::Http1 => "haproxy",
            Hops::H2 => "haproxy-h2",
        };
        let b_config = haproxy::config_b(&b_listeners, pem, hops);
        let b = haproxy::start(
            &peers.haproxy,
            &format!("{tag}-b"),
            b_config,
            &b_listeners,
            dir,
        )
        .await?;
        let a_config = haproxy::config_a(&a_listeners, hops);
        let a = haproxy::start(
            &peers.haproxy,
            &format!("{tag}-a"),
            a_config,
            &a_listeners,
            dir,
        )
        .await?;
        Ok(HaproxyPair { a, b })
    }
}

impl Lab {
    pub(crate) async fn start(peers: &Peers, ferry_bin: &Path, dir: &Path) -> Result<Lab> {
        let nginx = backend::start_nginx(&peers.nginx, Lab::backend().http, dir).await?;
        backend::spawn_grpc(backend::bind(Lab::backend().grpc).await?);
        backend::spawn_echo(backend::bind(Lab::backend().tcp).await?);

        let key_a = ferry::keygen(ferry_bin, &dir.join("a.key")).await?;
        let key_b = ferry::keygen(ferry_bin, &dir.join("b.key")).await?;
        let b = NodeSpec {
            name: "b".into(),
            key_file: dir.join("b.key"),
            tunnel: at(FERRY_B, 17700),
            admin: at(FERRY_B, 17702),
            peers: vec![],
            trust: vec![key_a],
            services: vec![
                (HTTP_SERVICE.into(), Lab::backend().http, "http"),
                (GRPC_SERVICE.into(), Lab::backend().grpc, "grpc"),
                (TCP_SERVICE.into(), Lab::backend().tcp, "tcp"),
            ],
            http_outbound: None,
            tcp_outbounds: vec![],
            mesh: None,
        };
        let a = NodeSpec {
            name: "a".into(),
            key_file: dir.join("a.key"),
            tunnel: at(FERRY_A, 17700),
            admin: at(FERRY_A, 17702),
            peers: vec![(b.tunnel, key_b)],
            trust: vec![],
            services: vec![],
            http_outbound: Some(Lab::ferry().http),
            tcp_outbounds: vec![(Lab::ferry().tcp, TCP_SERVICE.into())],
            mesh: None,
        };
        let ferry_b = ferry::start(ferry_bin, &b, dir, None)?;
        let mut ferry_a = ferry::start(ferry_bin, &a, dir, None)?;
        wait_for_port(Lab::ferry().http, &mut ferry_a, Duration::from_secs(10)).await?;
        for service in [HTTP_SERVICE, GRPC_SERVICE, TCP_SERVICE] {
            ferry::wait_for_route(ferry_bin, &mut ferry_a, a.admin, None, service).await?;
        }

        let pem = haproxy::make_certificate(&peers.openssl, dir).await?;
        let http1 = (Lab::haproxy(), HAPROXY_B);
        let haproxy = HaproxyPair::start(peers, dir, &pem, http1, Hops::Http1).await?;
        let h2 = (Lab::haproxy_h2(), HAPROXY_H2_B);
        let haproxy_h2 = HaproxyPair::start(peers, dir, &pem, h2, Hops::H2).await?;
        Ok(Lab {
            ferry_a,
            ferry_b,
            haproxy,
            haproxy_h2,
            nginx,
        })
    }

    pub(crate) fn backend() -> Entry {
        Entry {
            http: at(BACKEND, 18081),
            grpc: at(BACKEND, 18082),
            tcp: at(BACKEND, 18083),
        }
    }

    pub(crate) fn ferry() -> Entry {
        Entry {
            http: at(FERRY_A, 17701),
            // gRPC goes to the same HTTP outbound; the :authority names the service.
            grpc: at(FERRY_A, 17701),
            tcp: at(FERRY_A, 17703),
        }
    }

    pub(crate) fn haproxy() -> Entry {
        Entry {
            http: at(HAPROXY_A, 18001),
            grpc: at(HAPROXY_A, 18002),
            tcp: at(HAPROXY_A, 18003),
        }
    }

    pub(crate) fn haproxy_h2() -> Entry {
        Entry {
            http: at(HAPROXY_H2_A, 18001),
            grpc: at(HAPROXY_H2_A, 18002),
            tcp: at(HAPROXY_H2_A, 18003),
        }
    }

    /// The entry points of a target by its report name.
    pub(crate) fn entry(target: &str) -> Entry {
        match target {
            "ferry" => Lab::ferry(),
            "haproxy" => Lab::haproxy(),
            "haproxy-h2" => Lab::haproxy_h2(),
            _ => Lab::backend(),
        }
    }

    /// The process ids of a target's proxy pair: the application's side, then the service's;
    /// `None` for "direct", which has no proxy to measure.
    pub(crate) fn pair(&self, target: &str) -> Option<(u32, u32)> {
        match target {
            "ferry" => Some((self.ferry_a.pid(), self.ferry_b.pid())),
            "haproxy" => Some((self.haproxy.a.pid(), self.haproxy.b.pid())),
            "haproxy-h2" => Some((self.haproxy_h2.a.pid(), self.haproxy_h2.b.pid())),
            _ => None,
        }
    }

    /// Fails if any process of the lab has died.
    pub(crate) fn check_running(&mut self) -> Result<()> {
        self.ferry_a.check_running()?;
        self.ferry_b.check_running()?;
        for pair in [&mut self.haproxy, &mut self.haproxy_h2] {
            pair.a.check_running()?;
            pair.b.check_running()?;
        }
        self.nginx.check_running()
    }
}
