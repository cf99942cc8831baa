//! Interception on a node: its DNS server, answering the mesh's names and sending every other
//! query to the resolvers the system had, and the listener redirected connections land on.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use ferry_proxy::intercept::{serve_dns, serve_intercepted, Resolvers, VirtualNames};
use ferry_proxy::{Directory, Outbound};

use crate::config::InterceptConfig;

/// Binds interception's DNS (UDP and TCP) and its listener, and serves them until
/// `shutdown`. Returns their tasks and the DNS's address.
pub(super) async fn start(
    config: &InterceptConfig,
    directory: Arc<dyn Directory>,
    outbound: Arc<Outbound>,
    shutdown: &watch::Receiver<bool>,
) -> Result<(Vec<JoinHandle<()>>, SocketAddr), String> {
    let bound = |kind: &str, e: std::io::Error| {
        format!(
            "cannot listen on {kind} {} (interception's DNS): {e}",
            config.dns
        )
    };
    let udp = UdpSocket::bind(config.dns)
        .await
        .map_err(|e| bound("udp", e))?;
    let address = udp.local_addr().map_err(|e| bound("udp", e))?;
    // TCP on the port UDP got, so that port 0 gives one address for both.
    let tcp = TcpListener::bind(address)
        .await
        .map_err(|e| bound("tcp", e))?;
    let upstreams = match config.upstreams.is_empty() {
        true => system_resolvers(),
        false => config.upstreams.clone(),
    };
    let upstreams = not_ours(upstreams, address);
    if upstreams.is_empty() {
        warn!("no resolver in the system's configuration: names outside the mesh will not resolve");
    }
    info!(dns = %address, upstreams = ?upstreams, network = %config.virtual_network, "interception's DNS serving");
    let names = VirtualNames::new(directory, config.virtual_network);
    let listener = TcpListener::bind(config.listen).await.map_err(|e| {
        format!(
            "cannot listen on tcp {} (intercepted connections): {e}",
            config.listen
        )
    })?;
    let resolvers = Resolvers {
        names: names.clone(),
        upstreams: upstreams.into(),
    };
    let tasks = vec![
        tokio::spawn(serve_dns(udp, tcp, resolvers, shutdown.clone())),
        tokio::spawn(serve_intercepted(
            listener,
            names,
            outbound,
            shutdown.clone(),
        )),
    ];
    Ok((tasks, address))
}

/// The name servers of `/etc/resolv.conf` (read once, at start: a rule that redirects DNS to
/// Ferry leaves the file as it was).
fn system_resolvers() -> Vec<SocketAddr> {
    match hickory_resolver::system_conf::read_system_conf() {
        Ok((config, _)) => config
            .name_servers()
            .iter()
            .map(|s| s.socket_addr)
            .collect(),
        Err(e) => {
            warn!(error = %e, "cannot read the system's resolver configuration");
            Vec::new()
        }
    }
}

/// `servers` without `ours`, which would send queries in a circle, and without repeats.
fn not_ours(servers: Vec<SocketAddr>, ours: SocketAddr) -> Vec<SocketAddr> {
    let mut kept: Vec<SocketAddr> = Vec::new();
    for address in servers {
        let loops = address == ours
            || (address.port() == ours.port()
                && ours.ip().is_unspecified()
                && address.ip().is_loopback());
        if !loops && !kept.contains(&address) {
            kept.push(address);
        }
    }
    kept
}
