//! `ferry demo`: a self-contained mesh on loopback, and a script of calls through it with
//! live progress. Two nodes: `a` fronts nothing and gives the application its outbound
//! listener; `b` fronts the `greeter` service. Every call goes app → a → tunnel → b → greeter.

mod backend;
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

/// The demo's mesh, as the script drives it.
pub struct Mesh {
    pub a: Node,
    pub b: Node,
    pub greeter: Option<DemoService>,
    pub greeter_addr: SocketAddr,
    pub outbound: SocketAddr,
}

async fn start_mesh() -> Result<Mesh, String> {
    let greeter = DemoService::start(any_port(), "hello from greeter on node b".into())
        .await
        .map_err(|e| format!("cannot start the demo service: {e}"))?;
    let id_a = Identity::generate().map_err(|e| e.to_string())?;
    let id_b = Identity::generate().map_err(|e| e.to_string())?;

    let mut config_b = node_config("b", "dc1");
    config_b.tunnel.trust.push(id_a.public().to_string());
    config_b.services.push(ServiceConfig {
        name: "greeter".into(),
        address: greeter.addr,
        protocol: crate::config::Protocol::Http,
        health: Default::default(),
    });
    config_b.health_fast();
    let b = Node::start(
        config_b,
        id_b.clone(),
        StartOptions {
            metrics: None,
            admin: true,
        },
    )
    .await?;

    let mut config_a = node_config("a", "dc1");
    config_a.tunnel.peers.push(PeerConfig {
        address: b.state.addresses.tunnel.to_string(),
        key: Some(id_b.public().to_string()),
    });
    config_a.outbounds.push(OutboundConfig {
        kind: OutboundKind::Http,
        listen: LOOPBACK_ANY.parse().map_err(|e| format!("{e}"))?,
        service: None,
    });
    let a = Node::start(
        config_a,
        id_a,
        StartOptions {
            metrics: None,
            admin: true,
        },
    )
    .await?;
    let outbound = *a
        .state
        .addresses
        .outbounds
        .first()
        .ok_or("node a has no outbound listener")?;
    Ok(Mesh {
        a,
        b,
        greeter_addr: greeter.addr,
        greeter: Some(greeter),
        outbound,
    })
}

async fn run(once: bool) -> Result<bool, String> {
    println!("Ferry demo: two nodes on loopback, a greeter service behind node b.\n");
    let mut mesh = start_mesh().await?;
    let ok = script::run(&mut mesh).await;
    if once {
        return Ok(ok);
    }
    let admin = |n: &Node| {
        n.state
            .addresses
            .admin
            .map(|a| a.to_string())
            .unwrap_or_default()
    };
    println!("\nThe mesh keeps running; try it (Ctrl-C to stop):");
    println!("  curl -H 'Host: greeter' http://{}/", mesh.outbound);
    println!("  curl -x http://{} http://greeter/hello", mesh.outbound);
    println!(
        "  ferry routes --admin {}     ferry peers --admin {}",
        admin(&mesh.a),
        admin(&mesh.a)
    );
    println!("  ferry services --admin {}", admin(&mesh.b));
    let _ = tokio::signal::ctrl_c().await;
    Ok(ok)
}
