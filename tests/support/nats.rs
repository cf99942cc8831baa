//! A real `nats-server` with JetStream on, on a loopback port of its own, its store in a
//! temporary directory, so that a test can stop it and start it again on the same data.

use super::{eventually, free_tcp_port, require_tool, tail, TempDir};
use std::fs::{self, File};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) struct NatsServer {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts `nats-server -js` and waits (20 s at most) until it accepts connections.
    pub(crate) fn start() -> NatsServer {
        require_tool("nats-server");
        let mut server = NatsServer {
            port: free_tcp_port(),
            dir: TempDir::new("nats"),
            child: None,
        };
        server.start_again();
        server
    }

    /// `nats://127.0.0.1:PORT`, as `[broker] servers` names it.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The `[broker]` section of a node that uses this server.
    pub(crate) fn broker_config(&self) -> String {
        format!(
            "[broker]\nkind = \"nats\"\nservers = [\"{}\"]\ndelivery_timeout = \"5s\"\n",
            self.url()
        )
    }

    /// Kills the server (SIGKILL): what is stored stays in its directory.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port and store.
    pub(crate) fn start_again(&mut self) {
        let log = File::create(self.dir.join("nats.log")).expect("a log file");
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-sd")
            .arg(self.dir.join("store"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log again"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nats-server: {e}"));
        self.child = Some(child);
        let port = self.port;
        eventually(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port))
                .map(drop)
                .map_err(|e| format!("nats-server not up on {port}: {e}"))
        });
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = fs::read_to_string(self.dir.join("nats.log")).unwrap_or_default();
            eprintln!(
                "---- nats-server log (last 30 lines):\n{}\n----",
                tail(&log, 30)
            );
        }
    }
}
