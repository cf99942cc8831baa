//! `ferry demo`: a self-contained mesh of two datacenters on loopback, and a script of calls
//! through it with live progress. Each datacenter has a gateway and a node fronting `greeter`;
//! dc1 also has the application's node, `dc1-app`. Calls go to dc1's greeter directly, and
//! to dc2's through both gateways, end-to-end encrypted.

mod backend;
mod messages;
mod script;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use ferry_tunnel::Identity;

use crate::config::{Config, OutboundConfig, OutboundKind, PeerConfig, ServiceConfig};
use crate::node::{Node, StartOptions};

pub use backend::DemoService;

const LOOPBACK_ANY: &str = "127.0.0.1:0";

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A node config for the demo: everything on loopback, on ports the OS picks.
pub fn node_config(name: &str, datacenter: &str) -> Config {
    let mut config = Config::defaults();
    config.node.name = name.into();
    config.node.datacenter = datacenter.into();
    config.tunnel.listen = any_port();
    config.admin.listen = any_port();
    config.api.listen = any_port();
    config.outbounds.clear();
    config.health_fast();
    config
}

impl Config {
    /// Health checks fast enough for a demo to show failover without waiting.
    fn health_fast(&mut self) {
        for service in &mut self.services {
            service.health.interval = Duration::from_millis(250);
            service.health.timeout = Duration::from_millis(250);
        }
    }
}

/// `ferry demo`: starts the mesh, runs the script and, unless `once`, keeps the mesh up until
/// Ctrl-C. The status is success only if every step worked.
pub fn main(once: bool) -> ExitCode {
    // The demo's own lines are the show; node logs would drown them unless asked for.
    crate::telemetry::init_logs(crate::config::LogFormat::Text, "warn");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ferry demo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match run(once).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("ferry demo: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// `ferry demo-service`: the demo's workload alone, on `listen`, until SIGTERM or SIGINT.
pub fn serve(listen: SocketAddr, greeting: String) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ferry demo-service: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            eprintln!("ferry demo-service: cannot install signal handlers");
            return ExitCode::FAILURE;
        };
        let service = match DemoService::start(listen, greeting).await {
            Ok(service) => service,
            Err(e) => {
                eprintln!("ferry demo-service: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!("ferry demo-service: listening on {}", service.addr);
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        ExitCode::SUCCESS
    })
}

/// The demo's mesh, as the script drives it.
pub struct Mesh {
    /// The application's sidecar in dc1: it fronts nothing and gives the app its outbound.
    pub app: Node,
    /// The other four: both gateways and both greeters' sidecars.
    pub nodes: Vec<Node>,
    /// dc1's greeter, which the script kills and restarts.
    pub greeter: Option<DemoService>,
    /// Where dc1's greeter listens: it comes back on the same address, which its sidecar
    /// still names.
    pub greeter_addr: SocketAddr,
    /// dc2's greeter, which stays up as long as the mesh is kept.
    pub far_greeter: DemoService,
    /// The app sidecar's HTTP outbound, where the script's calls go in.
    pub outbound: SocketAddr,
    /// The app sidecar's application API, where the script publishes.
    pub api: SocketAddr,
}

/// Starts a node of the demo holding `identity`; `peers` are the nodes it dials, `trust` the
/// keys of nodes that will dial it.
async fn start_node(
    mut config: Config,
    identity: &Identity,
    peers: &[(&Node, &Identity)],
    trust: &[&Identity],
) -> Result<Node, String> {
    for (node, id) in peers {
        config.tunnel.peers.push(PeerConfig {
            address: node.state.addresses().tunnel.to_string(),
            key: Some(id.public().to_string()),
            certificate: None,
        });
    }
    config
        .tunnel
        .trust
        .extend(trust.iter().map(|id| id.public().to_string()));
    config.health_fast();
    Node::start(
        config,
        identity.clone(),
        StartOptions {
            metrics: None,
            admin: true,
        },
    )
    .await
}

fn fronting(mut config: Config, service: &DemoService) -> Config {
    config.services.push(ServiceConfig {
        name: "greeter".into(),
        address: service.addr,
        protocol: crate::config::Protocol::Http,
        health: Default::default(),
    });
    config
}

fn gateway(name: &str, datacenter: &str) -> Config {
    let mut config = node_config(name, datacenter);
    config.tunnel.gateway = true;
    config
}

/// Two datacenters: in each a gateway and a sidecar fronting `greeter`; in dc1 also the
/// application's sidecar. Gateways start first, trusting the keys of the nodes that will
/// dial them; the sidecars trust nobody by name: the mesh vouches for its members.
async fn start_mesh() -> Result<Mesh, String> {
    let near = DemoService::start(any_port(), "hello from greeter in dc1".into())
        .await
        .map_err(|e| format!("cannot start the demo service: {e}"))?;
    let far = DemoService::start(any_port(), "hello from greeter in dc2".into())
        .await
        .map_err(|e| format!("cannot start the demo service: {e}"))?;
    let key = || Identity::generate().map_err(|e| e.to_string());
    let (gw1_id, gw2_id, near_id, far_id, app_id) = (key()?, key()?, key()?, key()?, key()?);
    let gw2 = start_node(gateway("dc2-gw", "dc2"), &gw2_id, &[], &[&gw1_id, &far_id]).await?;
    let gw1 = start_node(
        gateway("dc1-gw", "dc1"),
        &gw1_id,
        &[(&gw2, &gw2_id)],
        &[&near_id, &app_id],
    )
    .await?;
    let far_node = start_node(
        messages::subscribed(
            fronting(node_config("dc2-greeter", "dc2"), &far),
            &["greeters", "archive"],
        ),
        &far_id,
        &[(&gw2, &gw2_id)],
        &[],
    )
    .await?;
    let near_node = start_node(
        messages::subscribed(
            fronting(node_config("dc1-greeter", "dc1"), &near),
            &["greeters"],
        ),
        &near_id,
        &[(&gw1, &gw1_id)],
        &[],
    )
    .await?;
    let mut app_config = node_config("dc1-app", "dc1");
    app_config.outbounds.push(OutboundConfig {
        kind: OutboundKind::Http,
        listen: LOOPBACK_ANY.parse().map_err(|e| format!("{e}"))?,
        service: None,
    });
    let app = start_node(app_config, &app_id, &[(&gw1, &gw1_id)], &[]).await?;
    let outbound = *app
        .state
        .addresses()
        .outbounds
        .first()
        .ok_or("the app's node has no outbound listener")?;
    let api = app.state.addresses().api;
    Ok(Mesh {
        app,
        nodes: vec![gw1, gw2, near_node, far_node],
        greeter_addr: near.addr,
        greeter: Some(near),
        far_greeter: far,
        outbound,
        api,
    })
}

async fn run(once: bool) -> Result<bool, String> {
    println!("Ferry demo: two datacenters on loopback, each with a gateway and a greeter.\n");
    let mut mesh = start_mesh().await?;
    let ok = script::run(&mut mesh).await;
    if once {
        return Ok(ok);
    }
    let admin = |n: &Node| {
        n.state
            .addresses()
            .admin
            .map(|a| a.to_string())
            .unwrap_or_default()
    };
    println!("\nThe mesh keeps running; try it (Ctrl-C to stop):");
    println!("  curl -H 'Host: greeter' http://{}/", mesh.outbound);
    println!("  curl -x http://{} http://greeter/hello", mesh.outbound);
    println!("  curl -H 'Host: greeter.dc2' http://{}/", mesh.outbound);
    println!(
        "  ferry publish {} --data hi --api {}   ferry subscriptions --admin {}",
        messages::TOPIC,
        mesh.api,
        admin(&mesh.app)
    );
    println!(
        "  ferry routes --admin {}     ferry peers --admin {}",
        admin(&mesh.app),
        admin(&mesh.app)
    );
    for node in &mesh.nodes {
        println!(
            "  ferry status --admin {}   # {}",
            admin(node),
            node.state.config().node.name
        );
    }
    let _ = tokio::signal::ctrl_c().await;
    Ok(ok)
}
