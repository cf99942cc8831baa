//! A real `ferry run` process with its own config file, key and loopback ports.

use super::{
    command_in, curl_ran_in, eventually, ferry, ferry_bin, free_tcp_port, free_tunnel_port, get_in,
    run, tail, Response, TempDir,
};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// A local workload a node fronts: one `[[service]]` entry.
#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    pub address: SocketAddr,
    /// `http`, `grpc` or `tcp`.
    pub protocol: String,
    /// An HTTP health path, checked every second; `None` leaves Ferry's default check.
    pub health: Option<String>,
}

impl Service {
    pub fn http(name: &str, address: SocketAddr) -> Service {
        Service::new(name, address, "http")
    }

    pub fn grpc(name: &str, address: SocketAddr) -> Service {
        Service::new(name, address, "grpc")
    }

    pub fn tcp(name: &str, address: SocketAddr) -> Service {
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

    pub fn health(mut self, path: &str) -> Service {
        self.health = Some(path.to_owned());
        self
    }
}

/// Builds a node: the key and ports exist from `Node::builder` on, so two builders can learn
/// each other's key and tunnel address (peers, trust) before either node starts.
pub struct NodeBuilder {
    dir: TempDir,
    name: String,
    datacenter: String,
    public_key: String,
    admin: SocketAddr,
    outbound: SocketAddr,
    tunnel: SocketAddr,
    services: Vec<Service>,
    tcp_outbounds: Vec<(String, SocketAddr)>,
    peers: Vec<(SocketAddr, String)>,
    trust: Vec<String>,
    trust_file: Option<String>,
    raw: Vec<String>,
    netns: Option<String>,
    gateway: bool,
    workers: Option<usize>,
}

impl NodeBuilder {
    /// Runs the node inside the network namespace `netns` (`ip netns exec`); its admin API and
    /// outbounds are then on that namespace's loopback.
    pub fn netns(mut self, netns: &str) -> Self {
        self.netns = Some(netns.to_owned());
        self
    }

    /// Binds the tunnel to `ip` (same port) instead of loopback, e.g. a veth address.
    pub fn tunnel_ip(mut self, ip: IpAddr) -> Self {
        self.tunnel.set_ip(ip);
        self
    }

    /// `[tunnel] gateway = true`: the node carries traffic between datacenters. (Not through
    /// [`NodeBuilder::raw`], which appends: a second `[tunnel]` table is a TOML error.)
    pub fn gateway(mut self) -> Self {
        self.gateway = true;
        self
    }

    /// `[node] workers`: threads that carry traffic (Ferry's default is 1).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    pub fn datacenter(mut self, datacenter: &str) -> Self {
        self.datacenter = datacenter.to_owned();
        self
    }

    pub fn service(mut self, service: Service) -> Self {
        self.services.push(service);
        self
    }

    /// Adds a `kind = "tcp"` outbound on a fresh port that carries TCP to `service`.
    pub fn tcp_outbound(mut self, service: &str) -> Self {
        let listen = loopback(free_tcp_port());
        self.tcp_outbounds.push((service.to_owned(), listen));
        self
    }

    /// Adds `{ address, key }` to `[tunnel] peers`.
    pub fn peer(mut self, address: SocketAddr, key: &str) -> Self {
        self.peers.push((address, key.to_owned()));
        self
    }

    /// Adds a key to `[tunnel] trust`.
    pub fn trust(mut self, key: &str) -> Self {
        self.trust.push(key.to_owned());
        self
    }

    /// TOML appended after everything else, e.g. a `[deadlines]` table.
    pub fn raw(mut self, toml: &str) -> Self {
        self.raw.push(toml.to_owned());
        self
    }

    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The node's directory, where relative paths in its config point: write files the
    /// config names here before starting it.
    pub fn dir(&self) -> &TempDir {
        &self.dir
    }

    pub fn tunnel(&self) -> SocketAddr {
        self.tunnel
    }

    /// The config file this builder writes.
    pub fn config_text(&self) -> String {
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
        toml.push('\n');
        let _ = writeln!(toml, "[admin]\nlisten = {}\n", q(&self.admin.to_string()));
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
    pub fn trust_file(mut self, name: &str) -> Self {
        self.trust_file = Some(name.to_owned());
        self
    }

    pub fn start(self) -> Node {
        let config = self.dir.join("ferry.toml");
        fs::write(&config, self.config_text()).expect("can write the node config");
        let log = self.dir.join("ferry.log");
        let child = spawn_node(self.netns.as_deref(), &config, &self.dir, &log);
        Node {
            netns: self.netns,
            name: self.name,
            admin: self.admin,
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

/// A running `ferry run`; killed on drop, its log printed if the test failed.
pub struct Node {
    pub name: String,
    /// The admin API (`[admin] listen`).
    pub admin: SocketAddr,
    /// The HTTP outbound (`[[outbound]] kind = "http"`).
    pub outbound: SocketAddr,
    /// The tunnel listener (`[tunnel] listen`).
    pub tunnel: SocketAddr,
    pub public_key: String,
    /// The network namespace it runs in; `None`: this host's.
    pub netns: Option<String>,
    tcp_outbounds: Vec<(String, SocketAddr)>,
    config: PathBuf,
    log: PathBuf,
    child: Mutex<Option<Child>>,
    dir: TempDir,
}

/// Runs `ferry run --config CONFIG` in `dir` (inside `netns` when given), appending its output
/// to `log`.
fn spawn_node(netns: Option<&str>, config: &PathBuf, dir: &TempDir, log: &PathBuf) -> Child {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("can open the node log");
    let err = out.try_clone().expect("can share the log file");
    command_in(netns, ferry_bin())
        .arg("run")
        .arg("--config")
        .arg(config)
        .current_dir(dir.path())
        .env("RUST_LOG", "debug")
        .env("FERRY_STATE_DIR", dir.path())
        .env_remove("FERRY_CONFIG")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", ferry_bin().display()))
}

impl Node {
    /// Starts the node again, with the same config, key and ports (after a kill).
    pub fn restart(&self) {
        self.kill();
        let child = spawn_node(self.netns.as_deref(), &self.config, &self.dir, &self.log);
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    }

    /// Starts building a node named `name`: makes its dir, runs `ferry keygen`, picks ports.
    pub fn builder(name: &str) -> NodeBuilder {
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
        // SPEC: keygen prints the public key; take its last non-empty line.
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
            outbound: loopback(free_tcp_port()),
            tunnel: loopback(free_tunnel_port()),
            services: Vec::new(),
            tcp_outbounds: Vec::new(),
            peers: Vec::new(),
            trust: Vec::new(),
            trust_file: None,
            raw: Vec::new(),
            netns: None,
            gateway: false,
            workers: None,
        }
    }

    /// The listen address of the TCP outbound added for `service`.
    pub fn tcp_outbound(&self, service: &str) -> SocketAddr {
        self.tcp_outbounds
            .iter()
            .find(|(name, _)| name == service)
            .map(|(_, listen)| *listen)
            .unwrap_or_else(|| panic!("node {} has no tcp outbound for {service}", self.name))
    }

    /// `GET http://ADMIN/PATH` from the node's own namespace; panics unless curl got a response.
    pub fn admin_get(&self, path: &str) -> Response {
        let url = format!("http://{}{path}", self.admin);
        curl_ran_in(self.netns.as_deref(), &[&url])
            .response()
            .unwrap_or_else(|e| panic!("{url} on node {}: {e}", self.name))
    }

    /// [`Node::admin_get`] of a JSON endpoint (`/peers`, `/routes`...), parsed.
    pub fn admin_json(&self, path: &str) -> serde_json::Value {
        let response = self.admin_get(path);
        serde_json::from_str(&response.body).unwrap_or_else(|e| {
            panic!(
                "{path} of node {} is not JSON ({e}): {response:?}",
                self.name
            )
        })
    }

    /// `GET PATH` with `Host: HOST` through the node's HTTP outbound, from the node's
    /// namespace: what a workload beside the node gets. `Err` when curl gets no response;
    /// panics first if the node has exited.
    pub fn outbound_get(&self, host: &str, path: &str) -> Result<Response, String> {
        self.assert_alive();
        get_in(self.netns.as_deref(), self.outbound, host, path)
    }

    /// Which backend answered `GET /hello` with `Host: HOST` through the node's outbound: the
    /// name after `hello from ` in the body. `Err` names the status, `ferry-error` and body
    /// of any other answer.
    pub fn answered_by(&self, host: &str) -> Result<String, String> {
        let r = self.outbound_get(host, "/hello")?;
        if r.status != 200 {
            return Err(format!(
                "{} {:?} {}",
                r.status,
                r.header("ferry-error"),
                r.body
            ));
        }
        r.body
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("hello from "))
            .map(str::to_owned)
            .ok_or_else(|| format!("unexpected body: {}", r.body))
    }

    pub fn config_path(&self) -> &PathBuf {
        &self.config
    }

    pub fn dir(&self) -> &TempDir {
        &self.dir
    }

    /// Everything the node logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics if the process has exited: polling a dead node for 20 s would only hide why.
    pub fn assert_alive(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        match child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => {}
            Some(Ok(Some(status))) => panic!("ferry node {} exited: {status}", self.name),
            Some(Err(e)) => panic!("cannot wait for node {}: {e}", self.name),
            None => panic!("node {} was killed", self.name),
        }
    }

    fn pid(&self) -> u32 {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child
            .as_ref()
            .map(Child::id)
            .unwrap_or_else(|| panic!("node {} is not running", self.name))
    }

    /// The names of the node's threads (`/proc/PID/task/*/comm`, at most 15 bytes each).
    pub fn thread_names(&self) -> Vec<String> {
        let tasks = fs::read_dir(format!("/proc/{}/task", self.pid()))
            .unwrap_or_else(|e| panic!("threads of node {}: {e}", self.name));
        tasks
            .filter_map(|task| fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .collect()
    }

    /// The node's resident memory, in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.pid();
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS for node {}", self.name))
    }

    /// Sends `signal` (`TERM`, `HUP`, ...) to the node's process.
    pub fn signal(&self, signal: &str) {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let pid = child
            .as_ref()
            .map(Child::id)
            .unwrap_or_else(|| panic!("node {} is not running", self.name));
        let ran = run(
            Command::new("kill").args(["-s", signal, &pid.to_string()]),
            Duration::from_secs(5),
        );
        assert!(
            ran.success(),
            "kill -s {signal} {pid} failed: {}",
            ran.stderr
        );
    }

    /// Waits (at most `within`) for the process to exit by itself; its exit code.
    pub fn wait_exit(&self, within: Duration) -> Option<i32> {
        eventually(within, || {
            let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
            match child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Ok(status.code()),
                Some(Ok(None)) => Err(format!("node {} still running", self.name)),
                Some(Err(e)) => Err(format!("cannot wait for node {}: {e}", self.name)),
                None => Err(format!("node {} was killed", self.name)),
            }
        })
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let config = fs::read_to_string(&self.config).unwrap_or_default();
            eprintln!(
                "---- node {} config ({}):\n{config}\n---- node {} log (last 80 lines):\n{}\n----",
                self.name,
                self.config.display(),
                self.name,
                tail(&self.log(), 80)
            );
        }
    }
}

/// Starts `b` fronting `services` and trusting `a`, and `a` dialing `b` with a TCP outbound
/// for each of `tcp_outbounds`. Returns (A, B) once both are ready.
pub fn start_pair(
    a: NodeBuilder,
    b: NodeBuilder,
    services: Vec<Service>,
    tcp_outbounds: &[&str],
) -> (Node, Node) {
    let mut b = b.trust(a.public_key());
    for service in services {
        b = b.service(service);
    }
    let mut a = a.peer(b.tunnel(), b.public_key());
    for service in tcp_outbounds {
        a = a.tcp_outbound(service);
    }
    let b = b.start();
    let a = a.start();
    wait_ready(&b);
    wait_ready(&a);
    (a, b)
}

/// Waits (20 s at most) until the node's admin API answers `GET /readyz` with 200.
pub fn wait_ready(node: &Node) {
    let url = format!("http://{}/readyz", node.admin);
    eventually(Duration::from_secs(20), || {
        node.assert_alive();
        let ran = curl_ran_in(node.netns.as_deref(), &[&url]);
        let response = ran.response()?;
        match response.status {
            200 => Ok(()),
            status => Err(format!("{url} answered {status}: {}", response.body.trim())),
        }
    });
}

/// Waits (20 s at most) until `GET /healthz` with `Host: SERVICE` through the node's outbound
/// answers 200: the service's route is known and its endpoint healthy. Uses `/healthz` so
/// tests that count requests on other paths are not disturbed.
pub fn wait_routable(node: &Node, service: &str) {
    eventually(Duration::from_secs(20), || {
        node.assert_alive();
        let response = get_in(node.netns.as_deref(), node.outbound, service, "/healthz")?;
        match response.status {
            200 => Ok(()),
            status => Err(format!(
                "Host: {service} answered {status} {:?}: {}",
                response.header("ferry-error"),
                response.body.trim()
            )),
        }
    });
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
