//! A real `ferry run` process with its own config file, key and loopback ports; how it is
//! configured before it starts is in `builder.rs`.

mod builder;

pub(crate) use builder::{NodeBuilder, Service};

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

/// A running `ferry run`; killed on drop, its log printed if the test failed.
pub(crate) struct Node {
    pub name: String,
    /// The admin API (`[admin] listen`).
    pub admin: SocketAddr,
    /// The application API (`[api] listen`).
    pub api: SocketAddr,
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
    pub(crate) fn restart(&self) {
        self.kill();
        let child = spawn_node(self.netns.as_deref(), &self.config, &self.dir, &self.log);
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    }

    /// Starts building a node named `name`: makes its dir, runs `ferry keygen`, picks ports.
    pub(crate) fn builder(name: &str) -> NodeBuilder {
        NodeBuilder::new(name)
    }

    /// The listen address of the TCP outbound added for `service`.
    pub(crate) fn tcp_outbound(&self, service: &str) -> SocketAddr {
        self.tcp_outbounds
            .iter()
            .find(|(name, _)| name == service)
            .map(|(_, listen)| *listen)
            .unwrap_or_else(|| panic!("node {} has no tcp outbound for {service}", self.name))
    }

    /// `GET http://ADMIN/PATH` from the node's own namespace; panics unless curl got a response.
    pub(crate) fn admin_get(&self, path: &str) -> Response {
        let url = format!("http://{}{path}", self.admin);
        curl_ran_in(self.netns.as_deref(), &[&url])
            .response()
            .unwrap_or_else(|e| panic!("{url} on node {}: {e}", self.name))
    }

    /// [`Node::admin_get`] of a JSON endpoint (`/peers`, `/routes`...), parsed.
    pub(crate) fn admin_json(&self, path: &str) -> serde_json::Value {
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
    pub(crate) fn outbound_get(&self, host: &str, path: &str) -> Result<Response, String> {
        self.assert_alive();
        get_in(self.netns.as_deref(), self.outbound, host, path)
    }

    /// Which backend answered `GET /hello` with `Host: HOST` through the node's outbound: the
    /// name after `hello from ` in the body. `Err` names the status, `ferry-error` and body
    /// of any other answer.
    pub(crate) fn answered_by(&self, host: &str) -> Result<String, String> {
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

    pub(crate) fn config_path(&self) -> &PathBuf {
        &self.config
    }

    pub(crate) fn dir(&self) -> &TempDir {
        &self.dir
    }

    /// Everything the node logged so far.
    pub(crate) fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics if the process has exited: polling a dead node for 20 s would only hide why.
    pub(crate) fn assert_alive(&self) {
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
    pub(crate) fn thread_names(&self) -> Vec<String> {
        let tasks = fs::read_dir(format!("/proc/{}/task", self.pid()))
            .unwrap_or_else(|e| panic!("threads of node {}: {e}", self.name));
        tasks
            .filter_map(|task| fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .collect()
    }

    /// The node's resident memory, in KiB (VmRSS).
    pub(crate) fn rss_kib(&self) -> u64 {
        let pid = self.pid();
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS for node {}", self.name))
    }

    /// Sends `signal` (`TERM`, `HUP`, ...) to the node's process.
    pub(crate) fn signal(&self, signal: &str) {
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
    pub(crate) fn wait_exit(&self, within: Duration) -> Option<i32> {
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
    pub(crate) fn kill(&self) {
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
pub(crate) fn start_pair(
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

/// An application's node that fronts nothing, peered with one node per service given (`s1`,
/// `s2`, …), each fronting its service and trusting the application's; returns once the
/// application's node is ready.
pub(crate) fn app_and_endpoints(services: Vec<Service>) -> (Node, Vec<Node>) {
    let app = Node::builder("app");
    let builders: Vec<NodeBuilder> = services
        .into_iter()
        .enumerate()
        .map(|(i, service)| {
            Node::builder(&format!("s{}", i + 1))
                .service(service)
                .trust(app.public_key())
        })
        .collect();
    let app = builders
        .iter()
        .fold(app, |app, b| app.peer(b.tunnel(), b.public_key()));
    let nodes = builders.into_iter().map(NodeBuilder::start).collect();
    let app = app.start();
    wait_ready(&app);
    (app, nodes)
}

/// Waits (20 s at most) until the node's admin API answers `GET /readyz` with 200.
pub(crate) fn wait_ready(node: &Node) {
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
pub(crate) fn wait_routable(node: &Node, service: &str) {
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

/// The value of `node`'s metric line that starts with `name{` and holds every one of `labels`.
pub(crate) fn metric(node: &Node, name: &str, labels: &[&str]) -> Option<f64> {
    let text = node.admin_get("/metrics").body;
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}
