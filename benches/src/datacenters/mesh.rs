//! The mesh the datacenters scenario runs on, and its trials.

use std::convert::Infallible;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::backend;
use crate::error::{Error, Result};
use crate::ferry::{self, MeshPlace, NodeSpec};
use crate::process::{wait_for_port, Process};

use super::POLL;

const TUNNEL_PORT: u16 = 17800;
const ADMIN_PORT: u16 = 17900;
const OUTBOUND_PORT: u16 = 18000;
const GREETER_PORT: u16 = 18080;
/// How long anything in a trial may take before the trial counts as failed.
const PATIENCE: Duration = Duration::from_secs(10);

/// Host `host` of datacenter `dc`: 127.0.67.(10·dc + host), apart from the other labs.
fn ip(dc: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 67, 10 * dc + host)
}

/// A `greeter` that answers `hello from NAME`, and can be killed (listener and every
/// connection dropped, so new connections are refused) and started again where it was.
struct Greeter {
    name: String,
    address: SocketAddr,
    server: Option<JoinHandle<()>>,
}

impl Greeter {
    async fn start(name: &str, address: SocketAddr) -> Result<Greeter> {
        let mut greeter = Greeter {
            name: name.to_owned(),
            address,
            server: None,
        };
        greeter.restart().await?;
        Ok(greeter)
    }

    async fn restart(&mut self) -> Result<()> {
        let listener = backend::bind(self.address).await?;
        self.server = Some(tokio::spawn(serve_greeter(listener, self.name.clone())));
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

async fn serve_greeter(listener: TcpListener, name: String) {
    // Owned here, so aborting this task drops the listener and every connection with it.
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let name = name.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |_: Request<hyper::body::Incoming>| {
                let body = Full::new(Bytes::from(format!("hello from {name}\n")));
                std::future::ready(Ok::<_, Infallible>(Response::new(body)))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

/// One HTTP/1.1 GET on a fresh connection: the status and the body.
async fn get(
    address: SocketAddr,
    host: &str,
    path: &str,
) -> std::result::Result<(u16, String), String> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = Request::get(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = send
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Whether `node`'s admin API lists a route to `service` (healthy ones only when asked) in
/// each of `datacenters`.
async fn has_routes(admin: SocketAddr, service: &str, datacenters: &[&str], healthy: bool) -> bool {
    let Ok((200, json)) = get(admin, "admin", "/routes").await else {
        return false;
    };
    let Ok(serde_json::Value::Array(routes)) = serde_json::from_str(&json) else {
        return false;
    };
    datacenters.iter().all(|dc| {
        routes.iter().any(|r| {
            r["service"] == service && r["datacenter"] == *dc && (!healthy || r["healthy"] == true)
        })
    })
}

/// Polls `check` every [`POLL`] until it holds; how long that took, or an error naming `what`.
async fn time_until<F, Fut>(what: &str, mut check: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return Ok(start.elapsed());
        }
        if start.elapsed() > PATIENCE {
            return Err(Error::Timeout {
                what: what.to_owned(),
                seconds: PATIENCE.as_secs(),
                hint: String::new(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The running mesh.
pub(crate) struct Mesh {
    ferry_bin: PathBuf,
    dir: PathBuf,
    /// Every node, kept so that dropping the mesh stops them.
    nodes: Vec<Process>,
    /// dc3's sidecar, whose services the convergence trials change.
    svc3: NodeSpec,
    svc3_pid: u32,
    /// dc1's greeter's sidecar, which the node failover trials kill and start again.
    svc1: (NodeSpec, Option<Process>),
    greeter1: Greeter,
    _greeters: Vec<Greeter>,
    /// What a joining dc1 sidecar dials (its key is among those dc1's gateways trust).
    dc1_gateways: Vec<(SocketAddr, String)>,
    app_outbound: SocketAddr,
    app_admin: SocketAddr,
}

impl Mesh {
    pub(crate) async fn start(ferry_bin: &Path, dir: &Path) -> Result<Mesh> {
        let dir = dir.join("datacenters");
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let key = |name: &str| {
            let path = dir.join(format!("{name}.key"));
            async move { ferry::keygen(ferry_bin, &path).await }
        };
        let tunnel = |dc: u8, host: u8| SocketAddr::from((ip(dc, host), TUNNEL_PORT));
        let admin = |dc: u8, host: u8| SocketAddr::from((ip(dc, host), ADMIN_PORT));
        let greeter_at = |dc: u8| SocketAddr::from((ip(dc, 3), GREETER_PORT));

        // Hosts: 1 and 2 are the gateways, 3 the greeter's sidecar, 4 app (dc1), 5 a joiner.
        let mut gateway_peers = Vec::new();
        for dc in 1..=3 {
            for host in 1..=2 {
                gateway_peers.push((tunnel(dc, host), key(&format!("gw{dc}{host}")).await?));
            }
        }
        let sidecar_keys: Vec<(u8, &str, String)> = vec![
            (1, "svc1", key("svc1").await?),
            (1, "app", key("app").await?),
            (1, "joiner", key("joiner").await?),
            (2, "svc2", key("svc2").await?),
            (3, "svc3", key("svc3").await?),
        ];
        let dc_gateways = |dc: u8| -> Vec<(SocketAddr, String)> {
            gateway_peers[2 * (dc as usize - 1)..2 * dc as usize].to_vec()
        };
        let place = |dc: u8, gateway: bool| {
            Some(MeshPlace {
                datacenter: format!("dc{dc}"),
                gateway,
            })
        };

        let mut nodes = Vec::new();
        for dc in 1..=3u8 {
            for host in 1..=2u8 {
                let name = format!("gw{dc}{host}");
                // Each gateway dials the gateways after it, so every pair links once.
                let me = tunnel(dc, host);
                let later: Vec<_> = gateway_peers
                    .iter()
                    .filter(|(a, _)| (a.ip(), a.port()) > (me.ip(), me.port()))
                    .cloned()
                    .collect();
                let mut trust: Vec<String> = gateway_peers.iter().map(|(_, k)| k.clone()).collect();
                trust.extend(
                    sidecar_keys
                        .iter()
                        .filter(|(d, _, _)| *d == dc)
                        .map(|(_, _, k)| k.clone()),
                );
                let spec = NodeSpec {
                    name: name.clone(),
                    key_file: dir.join(format!("{name}.key")),
                    tunnel: me,
                    admin: admin(dc, host),
                    peers: later,
                    trust,
                    services: vec![],
                    http_outbound: None,
                    tcp_outbounds: vec![],
                    mesh: place(dc, true),
                };
                nodes.push(ferry::start(ferry_bin, &spec, &dir, None)?);
            }
        }

        let mut greeters = Vec::new();
        for dc in 1..=3u8 {
            greeters.push(Greeter::start(&format!("greeter-dc{dc}"), greeter_at(dc)).await?);
        }
        let sidecar = |dc: u8, host: u8, name: &str, services, outbound| NodeSpec {
            name: name.to_owned(),
            key_file: dir.join(format!("{name}.key")),
            tunnel: tunnel(dc, host),
            admin: admin(dc, host),
            peers: dc_gateways(dc),
            trust: vec![],
            services,
            http_outbound: outbound,
            tcp_outbounds: vec![],
            mesh: place(dc, false),
        };
        let greeter = |dc: u8| vec![("greeter".to_owned(), greeter_at(dc), "http")];
        let svc1_spec = sidecar(1, 3, "svc1", greeter(1), None);
        let svc1_process = ferry::start(ferry_bin, &svc1_spec, &dir, None)?;
        let svc1 = (svc1_spec, Some(svc1_process));
        nodes.push(ferry::start(
            ferry_bin,
            &sidecar(2, 3, "svc2", greeter(2), None),
            &dir,
            None,
        )?);
        let svc3 = sidecar(3, 3, "svc3", greeter(3), None);
        let svc3_process = ferry::start(ferry_bin, &svc3, &dir, None)?;
        let svc3_pid = svc3_process.pid();
        nodes.push(svc3_process);
        let app_outbound = SocketAddr::from((ip(1, 4), OUTBOUND_PORT));
        let app = sidecar(1, 4, "app", vec![], Some(app_outbound));
        let mut app_process = ferry::start(ferry_bin, &app, &dir, None)?;
        wait_for_port(app_outbound, &mut app_process, PATIENCE).await?;
        nodes.push(app_process);

        let mut greeter1 = None;
        let mut others = Vec::new();
        for g in greeters {
            if g.name == "greeter-dc1" {
                greeter1 = Some(g);
            } else {
                others.push(g);
            }
        }
        let mesh = Mesh {
            ferry_bin: ferry_bin.to_owned(),
            dir,
            nodes,
            svc3,
            svc3_pid,
            svc1,
            greeter1: greeter1.ok_or_else(|| Error::Output {
                what: "the datacenters mesh".into(),
                detail: "no greeter in dc1".into(),
            })?,
            _greeters: others,
            dc1_gateways: dc_gateways(1),
            app_outbound,
            app_admin: admin(1, 4),
        };
        time_until("app learning every datacenter's greeter", || {
            has_routes(mesh.app_admin, "greeter", &["dc1", "dc2", "dc3"], true)
        })
        .await?;
        Ok(mesh)
    }

    /// Who answered a call to `greeter` through app: `Some("greeter-dcN")`, or `None` for an
    /// error.
    async fn answered_by(&self) -> Option<String> {
        match get(self.app_outbound, "greeter", "/").await {
            Ok((200, body)) => body
                .strip_prefix("hello from ")
                .map(|s| s.trim().to_owned()),
            _ => None,
        }
    }

    /// Calls back to back from `killed` on until a call is answered by another datacenter
    /// than dc1: how long that took, and how many calls failed meanwhile.
    async fn until_served_elsewhere(&self, killed: Instant) -> Result<(Duration, usize)> {
        let mut failed = 0;
        loop {
            match self.answered_by().await {
                Some(who) if who != "greeter-dc1" => return Ok((killed.elapsed(), failed)),
                Some(_) => {}
                None => failed += 1,
            }
            if killed.elapsed() > PATIENCE {
                return Err(Error::Timeout {
                    what: "a call served by another datacenter after dc1's greeter died".into(),
                    seconds: PATIENCE.as_secs(),
                    hint: String::new(),
                });
            }
        }
    }

    async fn until_served_by_dc1(&self) -> Result<Duration> {
        time_until("calls served by dc1", || async {
            self.answered_by().await.as_deref() == Some("greeter-dc1")
        })
        .await
    }

    /// Kills dc1's greeter while calling it back to back; returns the time to the first call
    /// answered elsewhere and the calls that failed before it. Then restarts it and returns
    /// the time to the first call answered by it again.
    pub(super) async fn failover_trial(&mut self) -> Result<(Duration, usize, Duration)> {
        self.until_served_by_dc1().await?;
        self.greeter1.kill();
        let (failover, failed) = self.until_served_elsewhere(Instant::now()).await?;
        self.greeter1.restart().await?;
        let failback = self.until_served_by_dc1().await?;
        Ok((failover, failed, failback))
    }

    /// Kills the sidecar in front of dc1's greeter (`kill -9`, which tells no peer) while
    /// calling back to back: the time to the first call answered elsewhere and the calls that
    /// failed before it. Then starts the sidecar again and waits until dc1 serves.
    pub(super) async fn node_failover_trial(&mut self) -> Result<(Duration, usize)> {
        self.until_served_by_dc1().await?;
        // Dropping a process kills it with SIGKILL.
        drop(self.svc1.1.take());
        let result = self.until_served_elsewhere(Instant::now()).await;
        let started = ferry::start(&self.ferry_bin, &self.svc1.0, &self.dir, None)?;
        self.svc1.1 = Some(started);
        self.until_served_by_dc1().await?;
        result
    }

    /// Rewrites svc3's config with `services` and tells it to reload.
    fn reload_svc3(&mut self, services: Vec<(String, SocketAddr, &'static str)>) -> Result<()> {
        self.svc3.services = services;
        let path = self.dir.join(format!("{}.toml", self.svc3.name));
        std::fs::write(&path, self.svc3.to_toml())
            .map_err(Error::io(format!("writing {}", path.display())))?;
        let hup = std::process::Command::new("kill")
            .args(["-HUP", &self.svc3_pid.to_string()])
            .status()
            .map_err(Error::io("running kill -HUP"))?;
        if !hup.success() {
            return Err(Error::Output {
                what: "kill -HUP svc3".into(),
                detail: hup.to_string(),
            });
        }
        Ok(())
    }

    /// Adds a service to dc3's sidecar, then removes it: how long app took to see each.
    pub(super) async fn convergence_trial(&mut self, trial: usize) -> Result<(Duration, Duration)> {
        let base = self.svc3.services.clone();
        let name = format!("fresh{trial}");
        let mut with = base.clone();
        with.push((
            name.clone(),
            SocketAddr::from((ip(3, 3), GREETER_PORT)),
            "http",
        ));
        let admin = self.app_admin;
        self.reload_svc3(with)?;
        let announced = time_until(&format!("app learning {name}"), || {
            has_routes(admin, &name, &["dc3"], true)
        })
        .await?;
        self.reload_svc3(base)?;
        let withdrawn = time_until(&format!("app forgetting {name}"), || async {
            !has_routes(admin, &name, &["dc3"], false).await
        })
        .await?;
        Ok((announced, withdrawn))
    }

    /// Starts a new sidecar in dc1 and times how long until it knows every datacenter's
    /// greeter; the sidecar is stopped again.
    pub(super) async fn join_trial(&mut self) -> Result<Duration> {
        let spec = NodeSpec {
            name: "joiner".into(),
            key_file: self.dir.join("joiner.key"),
            tunnel: SocketAddr::from((ip(1, 5), TUNNEL_PORT)),
            admin: SocketAddr::from((ip(1, 5), ADMIN_PORT)),
            peers: self.dc1_gateways.clone(),
            trust: vec![],
            services: vec![],
            http_outbound: None,
            tcp_outbounds: vec![],
            mesh: Some(MeshPlace {
                datacenter: "dc1".into(),
                gateway: false,
            }),
        };
        let started = Instant::now();
        let mut joiner = ferry::start(&self.ferry_bin, &spec, &self.dir, None)?;
        let learned = time_until("a joining sidecar learning every greeter", || {
            has_routes(spec.admin, "greeter", &["dc1", "dc2", "dc3"], true)
        })
        .await;
        joiner.check_running()?;
        // Killed without a word: the gateways drop its link when it times out, and the next
        // trial's joiner (same key) links afresh meanwhile, as a restarted node would.
        drop(joiner);
        learned.map(|_| started.elapsed())
    }

    pub(crate) fn check_running(&mut self) -> Result<()> {
        if let Some(svc1) = &mut self.svc1.1 {
            svc1.check_running()?;
        }
        self.nodes.iter_mut().try_for_each(Process::check_running)
    }
}
