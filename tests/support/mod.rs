//! The end-to-end harness: real `ferry` processes, real backends, real clients.
//!
//! Nothing here fakes the network: a test starts `ferry run` on loopback ports, Python servers
//! as workloads, and drives them with `curl`, `grpcio`, `redis-cli` and `websockets`. Waiting is
//! always polling a condition with a deadline ([`eventually`]), never a bare sleep.
//! [`netns`] puts nodes, workloads and clients on two hosts (network namespaces joined by a
//! veth pair; root only) through the `netns` hooks of [`NodeBuilder`], [`Backend`] and the
//! `*_in` clients, which run their program under `ip netns exec` ([`command_in`]).
//!
//! `FERRY_BIN` picks the binary under test (default: the one cargo built beside the tests);
//! `FERRY_KEEP_TEMP=1` keeps each node's dir (config, key, `ferry.log`) after the run.

// Each test binary compiles this module and uses only part of it and of its re-exports.
#![allow(dead_code, unused_imports)]

pub(crate) mod backend;
pub(crate) mod broker;
pub(crate) mod ca;
pub(crate) mod call_loop;
pub(crate) mod clients;
pub(crate) mod docker;
pub(crate) mod http;
pub(crate) mod lab;
pub(crate) mod load;
pub(crate) mod mesh;
pub(crate) mod nats;
pub(crate) mod netns;
pub(crate) mod node;
pub(crate) mod registry;

pub(crate) use backend::Backend;
pub(crate) use clients::{grpc_call, grpc_call_in, redis_cli, redis_cli_in, ws_chat, GrpcOutcome};
pub(crate) use ferry_testing::{eventually, eventually_every};
pub(crate) use http::{
    assert_ferry_error, curl, curl_in, curl_ran, curl_ran_in, get, get_in, raw_exchange,
    wait_upstream_error, Response,
};
pub(crate) use node::{metric, start_pair, wait_ready, wait_routable, Node, NodeBuilder, Service};

use std::ffi::OsStr;
use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use std::{env, fs, thread};

/// The `ferry` binary under test: `$FERRY_BIN`, else the one cargo built beside this test
/// (test executables live in `target/debug/deps`, binaries in `target/debug`).
pub(crate) fn ferry_bin() -> PathBuf {
    if let Some(path) = env::var_os("FERRY_BIN") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "FERRY_BIN={} is not a file", path.display());
        return path;
    }
    let exe = env::current_exe().expect("the test executable knows its own path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("ferry"))
        .expect("the test executable lives in target/<profile>/deps");
    assert!(
        path.is_file(),
        "the ferry binary is missing at {}: build it with `cargo build -p ferry-control` \
         (scripts/test does), or point FERRY_BIN at one",
        path.display()
    );
    path
}

/// Fails the test when an external tool is not on PATH: tests never skip silently.
pub(crate) fn require_tool(name: &str) {
    let found = env::var_os("PATH")
        .map(|paths| env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "required tool {name} is missing: run scripts/test which installs it"
    );
}

/// A command for `program`, run inside the network namespace `netns` when one is given
/// (`ip netns exec NETNS PROGRAM`, which execs the program: the child's pid is the program's).
pub(crate) fn command_in(netns: Option<&str>, program: impl AsRef<OsStr>) -> Command {
    match netns {
        None => Command::new(program),
        Some(netns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", netns]).arg(program);
            command
        }
    }
}

/// A directory under the system temp dir, unique to this test, removed on drop
/// (kept when `FERRY_KEEP_TEMP` is set, to look at logs after a run).
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub(crate) fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let unique = format!(
            "ferry-test-{label}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = env::temp_dir().join(unique);
        fs::create_dir_all(&path).expect("can create a temp dir");
        TempDir { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if env::var_os("FERRY_KEEP_TEMP").is_none() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Ports already handed out by this process, so two tests running in parallel never get the
/// same one between our probe and the server's bind.
static PORTS_GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A port in 20000..32768 that is free for `usable` now. Below Linux's ephemeral range
/// (32768..61000) on purpose: the kernel never hands these to outgoing connections or to
/// another program's bind(0), so the port stays free until our server binds it.
fn pick_port(usable: impl Fn(u16) -> bool) -> u16 {
    static SEED: AtomicU64 = AtomicU64::new(0);
    let mut x = SEED.load(Ordering::Relaxed);
    if x == 0 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        x = (nanos ^ (u64::from(std::process::id()) << 32)) | 1;
    }
    for _ in 0..10_000 {
        // xorshift64: cheap randomness, so parallel test processes spread over the range.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        SEED.store(x, Ordering::Relaxed);
        let port = 20_000 + (x % 12_768) as u16;
        let mut given = PORTS_GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) && usable(port) {
            given.push(port);
            return port;
        }
    }
    panic!("no free loopback port in 20000..32768");
}

/// A loopback TCP port that is free now.
pub(crate) fn free_tcp_port() -> u16 {
    pick_port(|port| TcpListener::bind(("127.0.0.1", port)).is_ok())
}

/// A loopback port free for both UDP and TCP: the tunnel is QUIC over UDP, and may be
/// carried over TCP until the QUIC tunnel lands.
pub(crate) fn free_tunnel_port() -> u16 {
    pick_port(|port| {
        UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
    })
}

/// What a finished command printed and how it ended.
#[derive(Debug)]
pub(crate) struct Ran {
    /// The exit code; `None` when killed by a signal or by our timeout.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl Ran {
    pub(crate) fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs a command to completion with closed stdin, killing it after `within` so that a hung
/// client fails the test instead of hanging it.
pub(crate) fn run(command: &mut Command, within: Duration) -> Ran {
    let description = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {description}: {e}"));
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + within;
    let (code, timed_out) = loop {
        match child.try_wait() {
            Ok(Some(status)) => break (status.code(), false),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break (None, true);
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for {description}: {e}"),
        }
    };
    Ran {
        code,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        timed_out,
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Clears the proxy variables that curl, grpcio and websockets obey, so that clients talk to
/// the loopback address they are given.
pub(crate) fn without_proxy(command: &mut Command) -> &mut Command {
    for name in [
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "grpc_proxy",
        "no_proxy",
    ] {
        command.env_remove(name).env_remove(name.to_uppercase());
    }
    command
}

/// Runs `ferry ARGS` (30 s at most) with its state dir inside `state_dir`.
pub(crate) fn ferry(args: &[&str], state_dir: &Path) -> Ran {
    run(
        Command::new(ferry_bin())
            .args(args)
            .env("FERRY_STATE_DIR", state_dir)
            .env_remove("FERRY_CONFIG"),
        Duration::from_secs(30),
    )
}

/// `ferry keygen --out OUT`: the public key it printed (its last line).
pub(crate) fn keygen(out: &Path) -> String {
    let dir = out.parent().unwrap_or(Path::new("."));
    let made = ferry(&["keygen", "--out", out.to_str().expect("UTF-8")], dir);
    assert!(
        made.success(),
        "ferry keygen --out {}: {made:?}",
        out.display()
    );
    made.stdout
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .unwrap_or_else(|| panic!("ferry keygen printed no public key"))
        .to_owned()
}

/// The last lines of a text, for logs printed when a test fails.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `tests/python/NAME`, the helper programs the tests run.
pub(crate) fn python_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// One node named "solo" fronting the HTTP workload `greeter` (a backend named
/// "greeter-backend", health-checked on /healthz), with `raw` TOML appended to its config;
/// returned once `greeter` is routable.
pub(crate) fn greeter_node(raw: &str) -> (Backend, Node) {
    let backend = Backend::http("greeter-backend");
    let node = Node::builder("solo")
        .service(Service::http("greeter", backend.address).health("/healthz"))
        .raw(raw)
        .start();
    wait_ready(&node);
    wait_routable(&node, "greeter");
    (backend, node)
}
