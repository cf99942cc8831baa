//! A running node's state, and the views of it that the admin API serves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;
use tracing::warn;

use ferry_proxy::access::Access;
use ferry_proxy::{InboundCalls, Outbound};
use ferry_tunnel::{Network, PublicKey};

use super::trust::TrustConfig;
use super::views::{CertificateView, PeerRow, RegistryView, RouteRow, ServiceRow, Status};
use super::Addresses;
use crate::config::Config;
use crate::registry::{self, NodeRecord, RegistryCache};
use crate::services::LocalServices;
use crate::subscribers::{NodeSubscribers, SubscriptionRow};

/// A running node's state: what the admin API shows and the signal handlers act on. The
/// admin API reads it through the views below, never through its parts.
pub struct NodeState {
    pub(super) key: PublicKey,
    pub(super) config: RwLock<Config>,
    pub(super) network: Network,
    pub(super) services: LocalServices,
    /// This node's subscriptions and the mesh's.
    pub(super) subscribers: Arc<NodeSubscribers>,
    /// The registry's cache: what the plugin last answered and whether its backend is up.
    pub(super) registry: Arc<RegistryCache>,
    /// This node as the registry publishes it; changed when its services change.
    pub(super) record: watch::Sender<NodeRecord>,
    pub(super) outbound: Arc<Outbound>,
    /// Who may call the local services, and how often.
    pub(super) access: Arc<Access>,
    /// The calls peers sent that are being served.
    pub(super) inbound: InboundCalls,
    pub(super) shutdown: watch::Sender<bool>,
    /// Why the last reload was refused, until a good one comes.
    pub(super) reload_error: RwLock<Option<String>>,
    pub(super) listeners_up: AtomicBool,
    pub(super) metrics: Option<PrometheusHandle>,
    pub(super) started: Instant,
    pub(super) addresses: Addresses,
}

impl NodeState {
    /// `Ok` once the node can serve: listeners bound, peers tried once, first health checks
    /// done. Otherwise the reason, for `/readyz`.
    pub fn readiness(&self) -> Result<(), String> {
        if *self.shutdown.borrow() {
            return Err("draining".into());
        }
        if !self.listeners_up.load(Ordering::Relaxed) {
            return Err("listeners not up yet".into());
        }
        if !self.network.settled() {
            return Err("registry not synced: waiting to hear from configured peers".into());
        }
        if !self.services.all_checked() {
            return Err("registry not synced: first health checks still running".into());
        }
        self.registry.readiness()?;
        Ok(())
    }

    /// What a ready node should still tell: a refused reload, a registry backend that is down
    /// while its last answer serves.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(why) = self
            .reload_error
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            warnings.push(format!(
                "last config reload refused, serving the previous config: {why}"
            ));
        }
        if let Ok(Some(why)) = self.registry.readiness() {
            warnings.push(why);
        }
        warnings
    }

    /// The config in force: the one the node started with, or the last good reload.
    pub fn config(&self) -> Config {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies a new config to the running node. What can change live (services, their
    /// health checks, deadlines) changes now; what needs new sockets or a new identity is
    /// named in the returned notes and takes effect on restart.
    pub fn reload(&self, new: Config) -> Vec<String> {
        let old = self.config();
        let mut notes = Vec::new();
        let restart = |what: &str, notes: &mut Vec<String>| {
            notes.push(format!("{what} changed: takes effect on restart"))
        };
        if old.node != new.node {
            restart("[node]", &mut notes);
        }
        if (
            &old.tunnel.listen,
            &old.tunnel.advertise,
            old.tunnel.gateway,
            &old.tunnel.peers,
        ) != (
            &new.tunnel.listen,
            &new.tunnel.advertise,
            new.tunnel.gateway,
            &new.tunnel.peers,
        ) {
            restart("[tunnel] listen, advertise, gateway or peers", &mut notes);
        }
        if old.registry != new.registry {
            restart("[registry]", &mut notes);
        }
        if old.outbounds != new.outbounds {
            restart("[[outbound]]", &mut notes);
        }
        if old.admin != new.admin {
            restart("[admin]", &mut notes);
        }
        if old.api != new.api {
            restart("[api]", &mut notes);
        }
        if old.broker != new.broker {
            restart("[broker]", &mut notes);
        }
        self.services.replace(&new.services);
        if old.subscriptions != new.subscriptions {
            self.subscribers.replace(&new.subscriptions);
        }
        let services = registry::service_records(&new.services);
        self.record.send_if_modified(|record| {
            let changed = record.services != services;
            record.services = services;
            changed
        });
        self.outbound.set_settings(super::outbound_settings(&new));
        if old.authorization != new.authorization || old.rate_limits != new.rate_limits {
            super::access::apply(&self.access, &new);
        }
        match TrustConfig::read(&new, Some(self.key)) {
            Ok(trust) => {
                notes.extend(trust.warnings.iter().cloned());
                trust.apply(self.network.trust());
            }
            Err(e) => notes.push(format!("trust unchanged: {e}")),
        }
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = new;
        *self.reload_error.write().unwrap_or_else(|e| e.into_inner()) = None;
        notes
    }

    /// Rereads the trust file, the CAs and the certificate (on change) and replaces what the
    /// tunnel trusts and presents; a bad file keeps the trust before. Returns how many keys
    /// the lists name.
    pub fn refresh_trust(&self) -> Result<usize, String> {
        let trust = TrustConfig::read(&self.config(), Some(self.key))?;
        for warning in &trust.warnings {
            warn!("{warning}");
        }
        let count = trust.keys.len();
        trust.apply(self.network.trust());
        Ok(count)
    }

    /// Records a refused reload: the node keeps its last good config.
    pub fn reload_failed(&self, why: String) {
        *self.reload_error.write().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    /// Starts draining: listeners stop accepting and the node exits once calls finish.
    pub fn drain(&self) {
        self.shutdown.send_replace(true);
    }

    /// The addresses the node's sockets were bound to.
    pub fn addresses(&self) -> &Addresses {
        &self.addresses
    }

    /// The recorder's handle, when this process records metrics.
    pub fn metrics(&self) -> Option<&PrometheusHandle> {
        self.metrics.as_ref()
    }

    /// `GET /status`: who the node is, and a count of what it knows.
    pub fn status(&self) -> Status {
        let config = self.config();
        let ready = self.readiness();
        Status {
            name: config.node.name,
            datacenter: config.node.datacenter,
            key: self.key.to_string(),
            version: env!("CARGO_PKG_VERSION"),
            ready: ready.is_ok(),
            reason: ready.err(),
            uptime_seconds: self.started.elapsed().as_secs(),
            tunnel: self.addresses.tunnel.to_string(),
            outbounds: self
                .addresses
                .outbounds
                .iter()
                .map(|a| a.to_string())
                .collect(),
            peers: self
                .network
                .peers()
                .iter()
                .filter(|p| p.state.as_str() == "up")
                .count(),
            services: self.services.list().len(),
            routes: self.network.routes().len(),
            registry: self.registry.kind().as_str(),
            certificates: self.certificates(),
        }
    }

    /// The node's own certificate, then the CAs it trusts.
    fn certificates(&self) -> Vec<CertificateView> {
        let now = std::time::SystemTime::now();
        super::trust::held(self.network.trust())
            .into_iter()
            .map(|(kind, cert)| {
                let left = super::expires_in(&cert, now).unwrap_or_default();
                CertificateView {
                    kind,
                    name: cert.subject.name.clone(),
                    issuer: PublicKey(cert.issuer).to_string(),
                    valid: cert.validity(),
                    expires_in_seconds: left as i64,
                    warning: super::trust::expiry_warning(left),
                }
            })
            .collect()
    }

    /// `GET /subscriptions`.
    pub fn subscriptions(&self) -> Vec<SubscriptionRow> {
        self.subscribers.rows()
    }

    /// `GET /peers`.
    pub fn peers(&self) -> Vec<PeerRow> {
        self.network
            .peers()
            .into_iter()
            .map(PeerRow::from)
            .collect()
    }

    /// `GET /routes`: this node's own services, the registry's plain addresses, and the routes
    /// the mesh knows.
    pub fn routes(&self) -> Vec<RouteRow> {
        let config = self.config();
        let here = &config.node.datacenter;
        let mut rows: Vec<RouteRow> = self
            .services
            .list()
            .iter()
            .map(|s| RouteRow {
                service: s.name().to_owned(),
                datacenter: here.clone(),
                node: Some(config.node.name.clone()),
                endpoint: s.address().to_string(),
                via: "local".into(),
                metric: 0.0,
                healthy: s.healthy(),
                key: None,
            })
            .collect();
        let registry = self.registry.status();
        for (service, set) in &registry.addresses {
            rows.extend(set.iter().map(|address| RouteRow {
                service: service.clone(),
                datacenter: here.clone(),
                node: None,
                endpoint: address.to_string(),
                via: format!("registry {}", registry.kind),
                metric: 0.0,
                healthy: true,
                key: None,
            }));
        }
        for r in self.network.routes() {
            // A route through a gateway names the gateway.
            let via = match r.via {
                None => "direct".to_owned(),
                Some(gateway) => self
                    .network
                    .node_name(&gateway)
                    .unwrap_or_else(|| gateway.to_string()),
            };
            rows.push(RouteRow {
                service: r.service,
                datacenter: r.datacenter,
                node: Some(r.node),
                endpoint: self.network.node_address(&r.key).unwrap_or_default(),
                via,
                metric: r.metric.as_secs_f64() * 1000.0,
                healthy: r.healthy,
                key: Some(r.key.to_string()),
            });
        }
        rows
    }

    /// `GET /services`: the local services with their health.
    pub fn services(&self) -> Vec<ServiceRow> {
        self.services
            .list()
            .iter()
            .map(|s| ServiceRow {
                name: s.name().to_owned(),
                address: s.address().to_string(),
                protocol: s.protocol().as_str(),
                healthy: s.healthy(),
                checked: s.checked(),
                check: s
                    .config
                    .health
                    .http
                    .as_deref()
                    .map_or("tcp".to_owned(), |p| format!("http {p}")),
            })
            .collect()
    }

    /// `GET /registry`: the registry's cache, its backend's state and what it last answered.
    pub fn registry(&self) -> RegistryView {
        RegistryView::from(self.registry.status())
    }

    /// `GET /metrics`: the metrics in Prometheus text, with the gauges read from live state
    /// now, so they never lag. `None` when this process records no metrics.
    pub fn render_metrics(&self) -> Option<String> {
        let handle = self.metrics.as_ref()?;
        let peers = self.network.peers();
        for s in ["up", "connecting", "down"] {
            let n = peers.iter().filter(|p| p.state.as_str() == s).count();
            metrics::gauge!("ferry_tunnel_peers", "state" => s).set(n as f64);
        }
        for p in &peers {
            if let Some(rtt) = p.rtt {
                metrics::gauge!("ferry_tunnel_rtt_seconds", "peer" => p.key.to_string())
                    .set(rtt.as_secs_f64());
            }
        }
        let mut by_dc = std::collections::BTreeMap::<String, usize>::new();
        let dc = self.config().node.datacenter;
        *by_dc.entry(dc).or_default() += self.services.list().len();
        for r in self.network.routes() {
            *by_dc.entry(r.datacenter).or_default() += 1;
        }
        for (dc, n) in by_dc {
            metrics::gauge!("ferry_routes", "datacenter" => dc).set(n as f64);
        }
        let registry = self.registry.status();
        let kind = registry.kind.as_str();
        metrics::gauge!("ferry_registry_up", "kind" => kind).set(f64::from(u8::from(registry.up)));
        metrics::gauge!("ferry_registry_nodes", "kind" => kind).set(registry.nodes.len() as f64);
        let addresses: usize = registry.addresses.values().map(Vec::len).sum();
        metrics::gauge!("ferry_registry_addresses", "kind" => kind).set(addresses as f64);
        Some(handle.render())
    }
}
