//! A running node: the tunnel, the proxy's listeners, the local services and the admin API,
//! wired together from a [`Config`]. Its state, and the views the admin API serves of it, are
//! in `state.rs` and `views.rs`.

mod access;
mod intercept;
mod state;
mod trust;
mod views;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use ferry_proxy::access::Access;
use ferry_proxy::broker::{serve_application_api, Broker, BrokerSettings, NatsSettings};
use ferry_proxy::{InboundCalls, Outbound, OutboundSettings, ServiceName, Upstreams};
use ferry_tunnel::{Identity, Network, NetworkConfig, PeerAddress, Trust};

use crate::config::{BrokerKind, Config, OutboundKind, DEFAULT_NATS_PREFIX, DEFAULT_NATS_STREAM};
use crate::directory::NodeDirectory;
use crate::registry::{self, NodeRecord};
use crate::services::LocalServices;
use crate::subscribers::NodeSubscribers;

pub use state::NodeState;
pub use trust::{expires_in, TrustConfig, TrustError};
pub use views::{PeerRow, RegistryView, RouteRow, ServiceRow, Status};

/// How long a stopping node waits for its listeners, and then for the calls peers sent it, to
/// finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(12);
/// How often a draining node looks whether the calls peers sent it have finished.
const INBOUND_POLL: Duration = Duration::from_millis(10);

/// The addresses a node's sockets were bound to (ports chosen by the OS when asked for 0).
#[derive(Clone, Debug)]
pub struct Addresses {
    /// The tunnel's UDP address.
    pub tunnel: SocketAddr,
    /// The outbound listeners', in the config's order.
    pub outbounds: Vec<SocketAddr>,
    /// The admin API's, when it is served.
    pub admin: Option<SocketAddr>,
    /// The application API's.
    pub api: SocketAddr,
    /// Interception's DNS, when interception is enabled.
    pub dns: Option<SocketAddr>,
}

/// How long a link this node dialed for calls stays up without a stream: a node that calls
/// another every few minutes keeps its link (a new one costs a handshake round trip and a
/// catalog exchange), and one that called hundreds of nodes once does not keep sending
/// keep-alives to each of them.
const IDLE_LINK: Duration = Duration::from_secs(300);

/// The peers to dial. Each needs its key: the handshake (Noise IK) proves the dialed node
/// holds it, so it must be known before the first packet.
pub fn peer_addresses(config: &Config) -> Result<Vec<PeerAddress>, String> {
    config
        .tunnel
        .peers
        .iter()
        .map(|p| {
            let key = p.key.as_deref().ok_or_else(|| {
                format!(
                    "peer {} has no key: the tunnel's handshake must know the key of the node it dials \
                     (add key = \"...\", from `ferry pubkey` on that node)",
                    p.address
                )
            })?;
            let key = key.parse().map_err(|e| format!("peer {}: {e}", p.address))?;
            Ok(PeerAddress {
                address: p.address.clone(),
                key,
            })
        })
        .collect()
}

fn broker_settings(config: &Config) -> BrokerSettings {
    let bytes = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    BrokerSettings {
        node: config.node.name.clone(),
        datacenter: config.node.datacenter.clone(),
        max_message_bytes: bytes(config.broker.max_message_bytes),
        queue_bytes: bytes(config.broker.queue_bytes),
        delivery_timeout: config.broker.delivery_timeout,
    }
}

fn outbound_settings(config: &Config) -> OutboundSettings {
    OutboundSettings {
        deadline: config.deadlines.default,
        service_deadlines: config.deadlines.per_service.clone().into_iter().collect(),
    }
}

/// A running node.
pub struct Node {
    /// What the admin API shows and the signal handlers act on; shared with both.
    pub state: Arc<NodeState>,
    listeners: Vec<JoinHandle<()>>,
    admin: Option<std::thread::JoinHandle<()>>,
    /// Stops the admin API, last of all: it answers `/readyz` ("draining") during the drain.
    admin_stop: watch::Sender<bool>,
}

/// Options that are not config: how this process wants the node run.
#[derive(Default)]
pub struct StartOptions {
    /// The process's metrics recorder, which `GET /metrics` renders; `None` when the process
    /// records none (the demo), and `/metrics` answers 404.
    pub metrics: Option<PrometheusHandle>,
    /// Serve the admin API (the demo's nodes do too, on ports of their own).
    pub admin: bool,
}

impl Node {
    /// Binds every socket and starts serving. Must be called within a tokio runtime.
    pub async fn start(
        config: Config,
        identity: Identity,
        options: StartOptions,
    ) -> Result<Node, String> {
        let peers = peer_addresses(&config)?;
        let trust = Arc::new(Trust::default());
        let trust_config = TrustConfig::read(&config, Some(identity.public()))?;
        for warning in &trust_config.warnings {
            warn!("{warning}");
        }
        trust_config.apply(&trust);
        let network = Network::start(NetworkConfig {
            identity: identity.clone(),
            name: config.node.name.clone(),
            datacenter: config.node.datacenter.clone(),
            listen: config.tunnel.listen,
            advertise: config.tunnel.advertise.clone(),
            gateway: config.tunnel.gateway,
            peers,
            trust,
            idle_link: IDLE_LINK,
            rekey: config.tunnel.rekey,
        })
        .map_err(|e| e.to_string())?;
        let tunnel = network.local_addr().map_err(|e| e.to_string())?;

        let upstreams = Upstreams::new();
        let announcer = network.clone();
        let services = LocalServices::start(
            &config.services,
            upstreams.clone(),
            Arc::new(move |catalog| announcer.announce(catalog)),
        );
        let (record, record_updates) = watch::channel(NodeRecord {
            name: config.node.name.clone(),
            datacenter: config.node.datacenter.clone(),
            key: identity.public().to_string(),
            address: config
                .tunnel
                .advertise
                .clone()
                .unwrap_or_else(|| tunnel.to_string()),
            services: registry::service_records(&config.services),
        });
        let registry = registry::start(
            &config.registry,
            registry::Local {
                key: identity.public(),
                datacenter: config.node.datacenter.clone(),
                record: record_updates,
            },
            network.clone(),
        )?;
        let directory = Arc::new(NodeDirectory {
            datacenter: config.node.datacenter.clone(),
            local: services.clone(),
            network: network.clone(),
            registry: registry.clone(),
        });
        let outbound = Outbound::new(
            directory.clone(),
            upstreams.clone(),
            outbound_settings(&config),
        );
        let (shutdown, _) = watch::channel(false);

        let mut listeners = Vec::new();
        let mut outbound_addrs = Vec::new();
        for entry in &config.outbounds {
            let listener = TcpListener::bind(entry.listen).await.map_err(|e| {
                format!(
                    "cannot listen on tcp {} ({:?} outbound): {e}",
                    entry.listen, entry.kind
                )
            })?;
            outbound_addrs.push(listener.local_addr().map_err(|e| e.to_string())?);
            let stop = shutdown.subscribe();
            let task = match entry.kind {
                OutboundKind::Http => tokio::spawn(ferry_proxy::serve_http_outbound(
                    listener,
                    outbound.clone(),
                    stop,
                )),
                OutboundKind::Tcp => {
                    let target = entry
                        .service
                        .as_deref()
                        .and_then(ServiceName::from_authority)
                        .ok_or_else(|| {
                            format!("tcp outbound on {} names no valid service", entry.listen)
                        })?;
                    tokio::spawn(ferry_proxy::serve_tcp_outbound(
                        listener,
                        target,
                        outbound.clone(),
                        stop,
                    ))
                }
            };
            listeners.push(task);
        }
        let access = Arc::new(Access::default());
        access::apply(&access, &config);
        let inbound = InboundCalls::default();
        network.serve_streams(ferry_proxy::inbound_handler(
            directory.clone(),
            upstreams.clone(),
            access.clone(),
            inbound.clone(),
        ));

        let subscribers = Arc::new(NodeSubscribers::new(
            config.node.name.clone(),
            config.node.datacenter.clone(),
            services.clone(),
            network.clone(),
            &config.subscriptions,
            config.broker.kind == BrokerKind::Mesh,
        ));
        let settings = broker_settings(&config);
        let broker = match config.broker.kind {
            BrokerKind::Mesh => Broker::mesh(settings, subscribers.clone(), upstreams),
            BrokerKind::Nats => {
                let nats = NatsSettings {
                    servers: config.broker.servers.clone(),
                    prefix: (config.broker.prefix.clone())
                        .unwrap_or_else(|| DEFAULT_NATS_PREFIX.into()),
                    stream: (config.broker.stream.clone())
                        .unwrap_or_else(|| DEFAULT_NATS_STREAM.into()),
                };
                Broker::nats(settings, nats, subscribers.clone(), upstreams)
            }
        };
        let api_listener = TcpListener::bind(config.api.listen).await.map_err(|e| {
            format!(
                "cannot listen on tcp {} (application API): {e}",
                config.api.listen
            )
        })?;
        let api_addr = api_listener.local_addr().map_err(|e| e.to_string())?;
        listeners.push(tokio::spawn(serve_application_api(
            api_listener,
            broker,
            shutdown.subscribe(),
        )));
        let dns_addr = if config.intercept.enabled {
            let stop = shutdown.subscribe();
            let (tasks, address) = intercept::start(
                &config.intercept,
                directory.clone(),
                outbound.clone(),
                &stop,
            )
            .await?;
            listeners.extend(tasks);
            Some(address)
        } else {
            None
        };

        let admin_listener = if options.admin {
            let listener = std::net::TcpListener::bind(config.admin.listen).map_err(|e| {
                format!("cannot listen on tcp {} (admin): {e}", config.admin.listen)
            })?;
            Some(listener)
        } else {
            None
        };
        let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
        let state = Arc::new(NodeState {
            key: identity.public(),
            config: RwLock::new(config),
            network,
            services,
            subscribers,
            registry,
            record,
            outbound,
            access,
            inbound,
            shutdown,
            reload_error: RwLock::new(None),
            listeners_up: AtomicBool::new(false),
            metrics: options.metrics,
            started: Instant::now(),
            addresses: Addresses {
                tunnel,
                outbounds: outbound_addrs,
                admin: admin_addr,
                api: api_addr,
                dns: dns_addr,
            },
        });
        let (admin_stop, admin_stopped) = watch::channel(false);
        let admin = match admin_listener {
            Some(listener) => Some(
                crate::admin::spawn(listener, state.clone(), admin_stopped)
                    .map_err(|e| format!("cannot start the admin API: {e}"))?,
            ),
            None => None,
        };
        tokio::spawn(watch_trust_files(state.clone()));
        state.listeners_up.store(true, Ordering::Relaxed);
        info!(key = %state.key, tunnel = %tunnel, "node started");
        Ok(Node {
            state,
            listeners,
            admin,
            admin_stop,
        })
    }

    /// Runs until the node is told to stop (drain, SIGTERM), then lets calls in flight finish
    /// for a bounded time and closes the tunnel so that peers withdraw its routes at once.
    pub async fn run(self) {
        let mut stop = self.state.shutdown.subscribe();
        let _ = stop.wait_for(|stop| *stop).await;
        info!("draining");
        let drained = async {
            for task in self.listeners {
                let _ = task.await;
            }
        };
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        if tokio::time::timeout_at(deadline, drained).await.is_err() {
            warn!("drain timed out; stopping anyway");
        }
        // Withdrawn from the registry and the mesh before the links close, so that no peer
        // redials a node that is going away or sends it new calls; then the calls peers sent
        // here finish before the links that carry their responses close.
        self.state.registry.deregister().await;
        self.state.network.announce(Vec::new());
        let served = async {
            while self.state.inbound.in_flight() > 0 {
                tokio::time::sleep(INBOUND_POLL).await;
            }
        };
        if tokio::time::timeout_at(deadline, served).await.is_err() {
            warn!(
                in_flight = self.state.inbound.in_flight(),
                "calls from peers still in flight after the drain timeout; closing them"
            );
        }
        self.state.network.close();
        // Last, the admin API: it finishes what it is answering (the reply to POST /drain) and
        // its thread ends, before the process does.
        self.admin_stop.send_replace(true);
        if let Some(admin) = self.admin {
            let _ = tokio::task::spawn_blocking(move || admin.join()).await;
        }
        info!("stopped");
    }
}

/// How often the trust files are checked for changes.
const TRUST_FILE_POLL: Duration = Duration::from_secs(1);

/// Rereads the trust file, the CAs and the certificate whenever one's modification time or
/// size changes, so that a key added by a provisioning tool is trusted, or a renewed
/// certificate presented, within a second, with no signal needed. Also keeps the expiry
/// gauges current, and warns of a certificate as it comes within 7 days of its end.
async fn watch_trust_files(state: Arc<NodeState>) {
    let stamp = |state: &NodeState| {
        trust::watched_files(&state.config())
            .iter()
            .map(|path| {
                let meta = std::fs::metadata(path).ok()?;
                Some((meta.modified().ok(), meta.len()))
            })
            .collect::<Vec<_>>()
    };
    let mut seen = stamp(&state);
    // Reading the files at start warned of these already.
    let mut warned = trust::record_expiry(state.network.trust());
    let mut stop = state.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TRUST_FILE_POLL) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        // A certificate that comes within 7 days of its end while the node runs is logged
        // once, as it crosses the line (and once more when it expires).
        let near = trust::record_expiry(state.network.trust());
        for warning in near.iter().filter(|w| !warned.contains(w)) {
            warn!("{warning}");
        }
        warned = near;
        let now = stamp(&state);
        if now != seen {
            seen = now;
            match state.refresh_trust() {
                Ok(count) => info!(keys = count, "trust files changed: trust reloaded"),
                Err(e) => {
                    error!("trust files changed but are unusable; keeping the trust before: {e}")
                }
            }
        }
    }
}

/// Applies `load()`'s config on SIGHUP, keeping the last good one when it fails.
pub fn reload_with(state: &NodeState, loaded: Result<Config, String>) {
    let checked = |config: Config| {
        TrustConfig::read(&config, Some(state.key))
            .map(|_| config)
            .map_err(String::from)
    };
    match loaded.and_then(checked) {
        Ok(config) => {
            for note in state.reload(config) {
                warn!("{note}");
            }
            info!("config reloaded");
        }
        Err(why) => {
            error!("config reload refused, keeping the last good config: {why}");
            state.reload_failed(why);
        }
    }
}
