//! Real registry backends for the registry tests: an `etcd` server and a `dnsmasq` DNS server,
//! each on fresh loopback ports with its files in a temp dir, stopped on drop.

use super::{eventually, free_tcp_port, require_tool, run, tail, TempDir};
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// Kills a child and reaps it.
fn stop_child(child: &Mutex<Option<Child>>) {
    if let Some(mut child) = child.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A single-member `etcd` cluster (Debian's `etcd-server`) with its data in a temp dir, so a
/// restart keeps what it held, as a real one would.
pub(crate) struct Etcd {
    /// `http://127.0.0.1:PORT`, for `[registry] endpoints`.
    pub url: String,
    peer_url: String,
    dir: TempDir,
    child: Mutex<Option<Child>>,
}

impl Etcd {
    /// Starts etcd and waits until it answers.
    pub(crate) fn start() -> Etcd {
        require_tool("etcd");
        require_tool("etcdctl");
        let etcd = Etcd {
            url: format!("http://127.0.0.1:{}", free_tcp_port()),
            peer_url: format!("http://127.0.0.1:{}", free_tcp_port()),
            dir: TempDir::new("etcd"),
            child: Mutex::new(None),
        };
        etcd.spawn();
        etcd
    }

    fn spawn(&self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .expect("can open the etcd log");
        let child = Command::new("etcd")
            .args(["--name", "ferry-test"])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &self.url])
            .args(["--advertise-client-urls", &self.url])
            .args(["--listen-peer-urls", &self.peer_url])
            .args(["--initial-advertise-peer-urls", &self.peer_url])
            .args([
                "--initial-cluster",
                &format!("ferry-test={}", self.peer_url),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("can share the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd: {e}"));
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        eventually(Duration::from_secs(30), || {
            let ran = self.etcdctl(&["endpoint", "health"]);
            if ran.success() {
                Ok(())
            } else {
                Err(format!(
                    "etcd not healthy yet: {}{}\netcd log:\n{}",
                    ran.stdout,
                    ran.stderr,
                    self.log()
                ))
            }
        });
    }

    /// Stops the server (SIGKILL: a crash, not a goodbye).
    pub(crate) fn stop(&self) {
        stop_child(&self.child);
    }

    /// Starts it again on the same ports and data.
    pub(crate) fn restart(&self) {
        self.stop();
        self.spawn();
    }

    /// Runs `etcdctl ARGS` against this server.
    pub(crate) fn etcdctl(&self, args: &[&str]) -> super::Ran {
        run(
            Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &self.url, "--command-timeout=2s"])
                .args(args),
            Duration::from_secs(10),
        )
    }

    /// The keys under `prefix`.
    pub(crate) fn keys(&self, prefix: &str) -> Result<Vec<String>, String> {
        let ran = self.etcdctl(&["get", "--prefix", "--keys-only", prefix]);
        if !ran.success() {
            return Err(format!("etcdctl get failed: {}", ran.stderr));
        }
        Ok(ran
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect())
    }

    pub(crate) fn log(&self) -> String {
        tail(
            &fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default(),
            20,
        )
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("---- etcd log (last 20 lines):\n{}\n----", self.log());
        }
    }
}

/// `dnsmasq` answering for one domain on a fresh loopback port, from a hosts file (A/AAAA,
/// reread on SIGHUP) and `--srv-host` records (fixed for a run: [`Dnsmasq::restart`] with new
/// ones). TTLs are 1 s, so that a change shows within seconds.
pub(crate) struct Dnsmasq {
    /// The server, for `[registry] nameservers`.
    pub address: SocketAddr,
    /// The network namespace it runs in; `None`: this host's.
    netns: Option<String>,
    domain: String,
    dir: TempDir,
    srv: Mutex<Vec<String>>,
    child: Mutex<Option<Child>>,
}

impl Dnsmasq {
    /// Serves `domain` (no trailing dot) with `hosts` (hosts-file lines) and `srv` records
    /// (`--srv-host` values: `_NAME._tcp.DOMAIN,TARGET,PORT,PRIORITY,WEIGHT`).
    pub(crate) fn start(domain: &str, hosts: &str, srv: &[String]) -> Dnsmasq {
        let address = SocketAddr::from(([127, 0, 0, 1], free_udp_and_tcp_port()));
        Dnsmasq::start_at(None, address, domain, hosts, srv)
    }

    /// Like [`Dnsmasq::start`], on `address` inside the network namespace `netns` when one is
    /// given (where a resolver on port 53 is what `resolv.conf` can name).
    pub(crate) fn start_at(
        netns: Option<&str>,
        address: SocketAddr,
        domain: &str,
        hosts: &str,
        srv: &[String],
    ) -> Dnsmasq {
        require_tool("dnsmasq");
        let dns = Dnsmasq {
            address,
            netns: netns.map(str::to_owned),
            domain: domain.to_owned(),
            dir: TempDir::new("dnsmasq"),
            srv: Mutex::new(srv.to_vec()),
            child: Mutex::new(None),
        };
        dns.write_hosts(hosts);
        dns.spawn();
        dns
    }

    fn hosts_file(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    fn write_hosts(&self, hosts: &str) {
        fs::write(self.hosts_file(), hosts).expect("can write the hosts file");
    }

    fn spawn(&self) {
        let log = File::create(self.dir.join("dnsmasq.log")).expect("can create the dnsmasq log");
        let mut command = super::command_in(self.netns.as_deref(), "dnsmasq");
        command
            .args(["--keep-in-foreground", "--log-facility=-", "--log-queries"])
            .args([
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--pid-file",
            ])
            .args(["--user=root", "--bind-interfaces"])
            .arg(format!("--listen-address={}", self.address.ip()))
            .arg(format!("--port={}", self.address.port()))
            .arg(format!("--local=/{}/", self.domain))
            .arg("--local-ttl=1")
            .arg(format!("--addn-hosts={}", self.hosts_file().display()));
        for srv in self.srv.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            command.arg(format!("--srv-host={srv}"));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("can share the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dnsmasq: {e}"));
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        eventually(Duration::from_secs(10), || {
            let log = self.log();
            if log.contains("started") {
                Ok(())
            } else {
                Err(format!("dnsmasq not started yet:\n{log}"))
            }
        });
    }

    /// Rewrites the hosts file and tells dnsmasq to reread it (SIGHUP).
    pub(crate) fn set_hosts(&self, hosts: &str) {
        self.write_hosts(hosts);
        if let Some(child) = self
            .child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let ran = run(
                Command::new("kill").args(["-HUP", &child.id().to_string()]),
                Duration::from_secs(5),
            );
            assert!(ran.success(), "cannot SIGHUP dnsmasq: {}", ran.stderr);
        }
    }

    /// Restarts dnsmasq (same port) serving `srv` instead: SRV records are not reread on
    /// SIGHUP.
    pub(crate) fn restart(&self, srv: &[String]) {
        stop_child(&self.child);
        *self.srv.lock().unwrap_or_else(|e| e.into_inner()) = srv.to_vec();
        self.spawn();
    }

    /// Stops the server: lookups time out.
    pub(crate) fn stop(&self) {
        stop_child(&self.child);
    }

    pub(crate) fn log(&self) -> String {
        tail(
            &fs::read_to_string(self.dir.join("dnsmasq.log")).unwrap_or_default(),
            30,
        )
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        stop_child(&self.child);
        if std::thread::panicking() {
            eprintln!("---- dnsmasq log (last 30 lines):\n{}\n----", self.log());
        }
    }
}

/// A loopback port free for UDP and TCP (DNS uses both).
fn free_udp_and_tcp_port() -> u16 {
    super::free_tunnel_port()
}
