//! What a test node is made of before it starts: its services, peers, trust and listeners,
//! rendered into the config file `ferry run` reads.

use super::{spawn_node, Node};
use crate::support::{ferry, free_tcp_port, free_tunnel_port, TempDir};
use std::fmt::Write as _;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

/// A local workload a node fronts: one `[[service]]` entry.
#[derive(Clone, Debug)]
pub(crate) struct Service {
    pub name: String,
    pub address: SocketAddr,
    /// `http`, `grpc` or `tcp`.
    pub protocol: String,
    /// An HTTP health path, checked every second; `None` leaves Ferry's default check.
    pub health: Option<String>,
}

impl Service {
    pub(crate) fn http(name: &str, address: SocketAddr) -> Service {
        Service::new(name, address, "http")
    }

    pub(crate) fn grpc(name: &str, address: SocketAddr) -> Service {
        Service::new(name, address, "grpc")
    }

    pub(crate) fn tcp(name: &str, address: SocketAddr) -> Service {
        Service::new(name, address, "tcp")
    }

    fn new(name: &str, address: SocketAddr, protocol: &str) -> Service {
        Service {
            name: name.to_owned(),
            address,
            protocol: protocol.to_owned(),
            health: None,
        }
    }

    pub(crate) fn health(mut self, path: &str) -> Service {
        self.health = Some(path.to_owned());
        self
    }
}

/// Builds a node: the key and ports exist from `Node::builder` on, so two builders can learn
/// each other's key and tunnel address (peers, trust) before either node starts.
pub(crate) struct NodeBuilder {
    dir: TempDir,
    name: String,
    datacenter: String,
    public_key: String,
    admin: SocketAddr,
    api: SocketAddr,
    outbound: SocketAddr,
    tunnel: SocketAddr,
    services: Vec<Service>,
    tcp_outbounds: Vec<(String, SocketAddr)>,
    peers: Vec<(SocketAddr, String)>,
    trust: Vec<String>,
    trust_file: Option<String>,
    ca: Vec<String>,
    certificate: Option<String>,
    tunnel_lines: Vec<String>,
    raw: Vec<String>,
    netns: Option<String>,
    gateway: bool,
    workers: Option<usize>,
}

impl NodeBuilder {
    /// Starts building a node named `name`: makes its dir, runs `ferry keygen`, picks ports.
    pub(super) fn new(name: &str) -> NodeBuilder {
        let dir = TempDir::new(name);
        let key = dir.join("node.key");
        let key_arg = key.to_str().expect("temp paths are UTF-8");
        let ran = ferry(&["keygen", "--out", key_arg], dir.path());
        assert!(
            ran.success(),
            "`ferry keygen --out {key_arg}` failed ({:?}): {}",
            ran.code,
            ran.stderr
        );
        // keygen prints the public key; take its last non-empty line.
        let public_key = ran
            .stdout
            .lines()
            .rev()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .unwrap_or_else(|| panic!("`ferry keygen` printed no public key"))
            .to_owned();
        NodeBuilder {
            dir,
            name: name.to_owned(),
            datacenter: "dc1".to_owned(),
            public_key,
            admin: loopback(free_tcp_port()),
            api: loopback(free_tcp_port()),
            outbound: loopback(free_tcp_port()),
            tunnel: loopback(free_tunnel_port()),
            services: Vec::new(),
            tcp_outbounds: Vec::new(),
            peers: Vec::new(),
            trust: Vec::new(),
            trust_file: None,
            ca: Vec::new(),
            certificate: None,
            tunnel_lines: Vec::new(),
            raw: Vec::new(),
            netns: None,
            gateway: false,
            workers: None,
        }
    }

    /// Runs the node inside the network namespace `netns` (`ip netns exec`); its admin API and
    /// outbounds are then on that namespace's loopback.
    pub(crate) fn netns(mut self, netns: &str) -> Self {
        self.netns = Some(netns.to_owned());
        self
    }

    /// Binds the tunnel to `ip` (same port) instead of loopback, e.g. a veth address.
    pub(crate) fn tunnel_ip(mut self, ip: IpAddr) -> Self {
        self.tunnel.set_ip(ip);
        self
    }

    /// `[tunnel] gateway = true`: the node carries traffic between datacenters. (Not through
    /// [`NodeBuilder::raw`], which appends: a second `[tunnel]` table is a TOML error.)
    pub(crate) fn gateway(mut self) -> Self {
        self.gateway = true;
        self
    }

    /// `[node] workers`: threads that carry traffic (Ferry's default is 1).
    pub(crate) fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    pub(crate) fn datacenter(mut self, datacenter: &str) -> Self {
        self.datacenter = datacenter.to_owned();
        self
    }

    pub(crate) fn service(mut self, service: Service) -> Self {
        self.services.push(service);
        self
    }

    /// Adds a `kind = "tcp"` outbound on a fresh port that carries TCP to `service`.
    pub(crate) fn tcp_outbound(mut self, service: &str) -> Self {
        let listen = loopback(free_tcp_port());
        self.tcp_outbounds.push((service.to_owned(), listen));
        self
    }

    /// Adds `{ address, key }` to `[tunnel] peers`.
    pub(crate) fn peer(mut self, address: SocketAddr, key: &str) -> Self {
        self.peers.push((address, key.to_owned()));
        self
    }

    /// Adds a key to `[tunnel] trust`.
    pub(crate) fn trust(mut self, key: &str) -> Self {
        self.trust.push(key.to_owned());
        self
    }

    /// TOML appended after everything else, e.g. a `[deadlines]` table.
    pub(crate) fn raw(mut self, toml: &str) -> Self {
        self.raw.push(toml.to_owned());
        self
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The datacenter it will be in (`datacenter` sets it).
    pub(crate) fn configured_datacenter(&self) -> &str {
        &self.datacenter
    }

    pub(crate) fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The node's directory, where relative paths in its config point: write files the
    /// config names here before starting it.
    pub(crate) fn dir(&self) -> &TempDir {
        &self.dir
    }

    pub(crate) fn tunnel(&self) -> SocketAddr {
        self.tunnel
    }

    /// The config file this builder writes.
    pub(crate) fn config_text(&self) -> String {
        let mut toml = String::new();
        let q = quote;
        let _ = writeln!(toml, "[node]");
        let _ = writeln!(toml, "name = {}", q(&self.name));
        let _ = writeln!(toml, "datacenter = {}", q(&self.datacenter));
        if let Some(workers) = self.workers {
            let _ = writeln!(toml, "workers = {workers}");
        }
        let _ = writeln!(toml, "key_file = \"node.key\"\n");
        let _ = writeln!(toml, "[tunnel]");
        let _ = writeln!(toml, "listen = {}", q(&self.tunnel.to_string()));
        if self.gateway {
            let _ = writeln!(toml, "gateway = true");
        }
        let peers: Vec<String> = self
            .peers
            .iter()
            .map(|(address, key)| {
                format!(
                    "{{ address = {}, key = {} }}",
                    q(&address.to_string()),
                    q(key)
                )
            })
            .collect();
        let _ = writeln!(toml, "peers = [{}]", peers.join(", "));
        let trust: Vec<String> = self.trust.iter().map(|k| q(k)).collect();
        let _ = writeln!(toml, "trust = [{}]", trust.join(", "));
        if let Some(file) = &self.trust_file {
            let _ = writeln!(toml, "trust_file = {}", q(file));
        }
        if !self.ca.is_empty() {
            let ca: Vec<String> = self.ca.iter().map(|f| q(f)).collect();
            let _ = writeln!(toml, "ca = [{}]", ca.join(", "));
        }
        if let Some(file) = &self.certificate {
            let _ = writeln!(toml, "certificate = {}", q(file));
        }
        for line in &self.tunnel_lines {
            let _ = writeln!(toml, "{line}");
        }
        toml.push('\n');
        let _ = writeln!(toml, "[admin]\nlisten = {}\n", q(&self.admin.to_string()));
        let _ = writeln!(toml, "[api]\nlisten = {}\n", q(&self.api.to_string()));
        let _ = writeln!(toml, "[[outbound]]\nkind = \"http\"");
        let _ = writeln!(toml, "listen = {}\n", q(&self.outbound.to_string()));
        for (service, listen) in &self.tcp_outbounds {
            let _ = writeln!(toml, "[[outbound]]\nkind = \"tcp\"");
            let _ = writeln!(toml, "listen = {}", q(&listen.to_string()));
            let _ = writeln!(toml, "service = {}\n", q(service));
        }
        for service in &self.services {
            let _ = writeln!(toml, "[[service]]\nname = {}", q(&service.name));
            let _ = writeln!(toml, "address = {}", q(&service.address.to_string()));
            let _ = writeln!(toml, "protocol = {}", q(&service.protocol));
            if let Some(path) = &service.health {
                let _ = writeln!(toml, "health = {{ http = {}, interval = \"1s\" }}", q(path));
            }
            toml.push('\n');
        }
        for raw in &self.raw {
            let _ = writeln!(toml, "{raw}");
        }
        toml
    }

    /// Writes the config and spawns `ferry run --config FILE` with RUST_LOG=debug, its output
    /// going to `ferry.log` in the node's dir. Does not wait: see [`wait_ready`].
    /// `[tunnel] trust_file`, a path relative to the node's directory.
    pub(crate) fn trust_file(mut self, name: &str) -> Self {
        self.trust_file = Some(name.to_owned());
        self
    }

    /// `[tunnel] ca`: a CA certificate file this node trusts (absolute, or relative to the
    /// node's directory); repeatable.
    pub(crate) fn ca(mut self, file: &str) -> Self {
        self.ca.push(file.to_owned());
        self
    }

    /// A line of TOML in `[tunnel]`, such as `rekey = "200ms"`.
    pub(crate) fn tunnel_line(mut self, line: &str) -> Self {
        self.tunnel_lines.push(line.to_owned());
        self
    }

    /// `[tunnel] certificate`: this node's certificate file.
    pub(crate) fn certificate(mut self, file: &str) -> Self {
        self.certificate = Some(file.to_owned());
        self
    }

    pub(crate) fn start(self) -> Node {
        let config = self.dir.join("ferry.toml");
        fs::write(&config, self.config_text()).expect("can write the node config");
        let log = self.dir.join("ferry.log");
        let child = spawn_node(self.netns.as_deref(), &config, &self.dir, &log);
        Node {
            netns: self.netns,
            name: self.name,
            admin: self.admin,
            api: self.api,
            outbound: self.outbound,
            tunnel: self.tunnel,
            public_key: self.public_key,
            tcp_outbounds: self.tcp_outbounds,
            config,
            log,
            child: Mutex::new(Some(child)),
            dir: self.dir,
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}
