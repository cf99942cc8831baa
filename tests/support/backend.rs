//! Workloads behind Ferry: real servers that Ferry did not write (Python's http.server, grpcio,
//! websockets, redis-server), each in its own process on a loopback port — of this host, or of
//! a network namespace (the `*_in` constructors).

use super::{
    command_in, eventually, free_tcp_port, python_script, require_tool, run, tail, TempDir,
};
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// A running backend server; killed on drop, its log printed if the test failed.
pub(crate) struct Backend {
    pub name: String,
    pub address: SocketAddr,
    /// The network namespace it runs in; `None`: this host's.
    pub netns: Option<String>,
    child: Option<Child>,
    log: PathBuf,
    _dir: TempDir,
}

impl Backend {
    /// `tests/python/http_backend.py NAME`: HTTP/1.1 with /hello, /echo, /sse, /slow, ...
    pub(crate) fn http(name: &str) -> Backend {
        Backend::http_in(None, name)
    }

    /// [`Backend::http`] on the loopback of the network namespace `netns` when one is given.
    pub(crate) fn http_in(netns: Option<&str>, name: &str) -> Backend {
        Backend::python(netns, "http_backend.py", name, free_tcp_port(), None)
    }

    /// The HTTP backend on a given port: a workload restarted where it was.
    pub(crate) fn http_at(name: &str, address: SocketAddr) -> Backend {
        Backend::http_at_in(None, name, address)
    }

    /// [`Backend::http_at`] in the network namespace `netns` when one is given.
    pub(crate) fn http_at_in(netns: Option<&str>, name: &str, address: SocketAddr) -> Backend {
        Backend::python(
            netns,
            "http_backend.py",
            name,
            address.port(),
            Some(address.ip()),
        )
    }

    /// `tests/python/grpc_backend.py NAME`: grpcio serving greeter.Greeter.
    pub(crate) fn grpc(name: &str) -> Backend {
        Backend::grpc_in(None, name)
    }

    /// [`Backend::grpc`] on the loopback of the network namespace `netns` when one is given.
    pub(crate) fn grpc_in(netns: Option<&str>, name: &str) -> Backend {
        Backend::python(netns, "grpc_backend.py", name, free_tcp_port(), None)
    }

    /// The gRPC backend on a given port of 127.0.0.1: a workload restarted where it was.
    pub(crate) fn grpc_at(name: &str, address: SocketAddr) -> Backend {
        Backend::python(None, "grpc_backend.py", name, address.port(), None)
    }

    /// `tests/python/subscriber.py NAME`: records the messages delivered to it (`GET
    /// /received`) and answers them as told (`POST /answer?status=N`).
    pub(crate) fn subscriber(name: &str) -> Backend {
        Backend::subscriber_in(None, name)
    }

    /// [`Backend::subscriber`] on the loopback of the network namespace `netns` when given.
    pub(crate) fn subscriber_in(netns: Option<&str>, name: &str) -> Backend {
        Backend::python(netns, "subscriber.py", name, free_tcp_port(), None)
    }

    /// `tests/python/ws_backend.py NAME`: a WebSocket echo server.
    pub(crate) fn websocket(name: &str) -> Backend {
        Backend::python(None, "ws_backend.py", name, free_tcp_port(), None)
    }

    /// Starts a Python helper on a port picked like the nodes' ones and waits (20 s at most)
    /// for the "READY <port>" line it prints once it listens.
    /// `host` is the IP to listen on (http_backend.py only); default 127.0.0.1.
    fn python(
        netns: Option<&str>,
        script: &str,
        name: &str,
        port: u16,
        host: Option<IpAddr>,
    ) -> Backend {
        require_tool("python3");
        let dir = TempDir::new(name);
        let log = dir.join("backend.log");
        let mut child = command_in(netns, "python3")
            .arg(python_script(script))
            .arg(name)
            .arg(port.to_string())
            .args(host.map(|ip| ip.to_string()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).expect("can create the backend log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start python3 {script}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (ready, port) = mpsc::channel();
        thread::spawn(move || {
            // Keeps reading to the end so the backend never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("READY ") {
                    let _ = ready.send(port.trim().parse::<u16>().ok());
                }
            }
        });
        let port = match port.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(port)) if port != 0 => port,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{script} {name} never printed READY <port>; its stderr:\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let mut backend = Backend::running(name, port, netns, child, log, dir);
        if let Some(ip) = host {
            backend.address.set_ip(ip);
        }
        backend
    }

    /// `redis-server` on a fresh port, without persistence; waits until it answers PING.
    pub(crate) fn redis(name: &str) -> Backend {
        Backend::redis_in(None, name)
    }

    /// [`Backend::redis`] on the loopback of the network namespace `netns` when one is given.
    pub(crate) fn redis_in(netns: Option<&str>, name: &str) -> Backend {
        require_tool("redis-server");
        require_tool("redis-cli");
        let dir = TempDir::new(name);
        let log = dir.join("backend.log");
        let port = free_tcp_port();
        let out = File::create(&log).expect("can create the backend log");
        let child = command_in(netns, "redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("can share the log file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
        let backend = Backend::running(name, port, netns, child, log, dir);
        eventually(Duration::from_secs(20), || {
            let ran = run(
                command_in(netns, "redis-cli").args(["-p", &port.to_string(), "PING"]),
                Duration::from_secs(5),
            );
            match ran.stdout.trim() {
                "PONG" => Ok(()),
                other => Err(format!("redis-server not up yet: {other} {}", ran.stderr)),
            }
        });
        backend
    }

    /// A started server listening on `port` of its namespace's loopback.
    fn running(
        name: &str,
        port: u16,
        netns: Option<&str>,
        child: Child,
        log: PathBuf,
        dir: TempDir,
    ) -> Backend {
        Backend {
            name: name.to_owned(),
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            netns: netns.map(str::to_owned),
            child: Some(child),
            log,
            _dir: dir,
        }
    }

    /// What the server wrote to its stderr so far (kept after it is killed).
    pub(crate) fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the server (SIGKILL): the workload crashed.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!(
                "---- backend {} log (last 40 lines):\n{}\n----",
                self.name,
                tail(&fs::read_to_string(&self.log).unwrap_or_default(), 40)
            );
        }
    }
}
