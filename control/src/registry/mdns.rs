//! The `mdns` registry, through `mdns-sd`: each node announces itself as a `_ferry._udp`
//! service (its tunnel address and port, with its key, datacenter and services in TXT), and
//! browses for the others continuously. Lookups never send a query and wait: they read what
//! browsing has found, and a first lookup waits only until a record arrives
//! ([`super::RegistryCache::converging`]), not for a fixed time.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use mdns_sd::{ResolvedService, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::sync::watch;
use tracing::{debug, info};

use super::{EndpointSet, NodeRecord, Registry, RegistryError, Scope, ServiceRecord, Sink};
use crate::config::RegistryKind;

const SERVICE_TYPE: &str = "_ferry._udp.local.";
/// A TXT string holds at most 255 bytes; the services list is cut below that. It is shown to
/// operators only: routes come from the node's catalog once it is linked.
const MAX_SERVICES_TXT: usize = 240;

fn error(what: &str, e: mdns_sd::Error) -> RegistryError {
    RegistryError(format!("mdns {what}: {e}"))
}

pub(super) struct Mdns {
    daemon: ServiceDaemon,
    /// What this node announced, to withdraw when it stops.
    announced: Mutex<Option<ServiceInfo>>,
}

impl Mdns {
    pub(super) fn new() -> Result<Mdns, String> {
        let daemon =
            ServiceDaemon::new().map_err(|e| format!("cannot start the mdns responder: {e}"))?;
        // Interfaces are listed again every second rather than every 5: a sidecar often
        // starts before its network is fully up (a container's veth, a Wi-Fi link), and is
        // not heard until it joins the multicast group there.
        daemon
            .set_ip_check_interval(1)
            .map_err(|e| format!("cannot configure the mdns responder: {e}"))?;
        Ok(Mdns {
            daemon,
            announced: Mutex::new(None),
        })
    }

    fn set_announced(&self, info: Option<ServiceInfo>) -> Option<ServiceInfo> {
        std::mem::replace(
            &mut *self.announced.lock().unwrap_or_else(|e| e.into_inner()),
            info,
        )
    }

    fn announce(&self, record: &NodeRecord) -> Result<(), RegistryError> {
        let address: SocketAddr = record.address.parse().map_err(|_| {
            RegistryError(format!(
                "mdns announces IP:PORT tunnel addresses; \"{}\" is not one (set [tunnel] advertise)",
                record.address
            ))
        })?;
        // A label of letters, digits and '-': the node name and a piece of its key, unique
        // even when two nodes share a name.
        let id: String = record
            .key
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect();
        let name: String = record
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(40)
            .collect();
        let instance = format!("{name}-{id}");
        let mut services: Vec<String> = Vec::new();
        let mut length = 0;
        for s in &record.services {
            let entry = format!("{}/{}", s.name, s.protocol);
            length += entry.len() + 1;
            if length > MAX_SERVICES_TXT {
                break;
            }
            services.push(entry);
        }
        let properties = [
            ("key", record.key.as_str()),
            ("dc", record.datacenter.as_str()),
            ("name", record.name.as_str()),
            ("services", &services.join(",")),
        ];
        let host = format!("{instance}.local.");
        let info = if address.ip().is_unspecified() {
            ServiceInfo::new(
                SERVICE_TYPE,
                &instance,
                &host,
                "",
                address.port(),
                &properties[..],
            )
            .map(ServiceInfo::enable_addr_auto)
        } else {
            ServiceInfo::new(
                SERVICE_TYPE,
                &instance,
                &host,
                address.ip(),
                address.port(),
                &properties[..],
            )
        }
        .map_err(|e| error("service record", e))?;
        // RFC 6762 probing (three queries 250 ms apart) guards a name against a clash before
        // announcing it; ours carry a piece of the node's key, so it would only delay the
        // announcement by most of a second.
        let mut info = info;
        info.set_requires_probe(false);
        let fullname = info.get_fullname().to_owned();
        self.daemon
            .register(info.clone())
            .map_err(|e| error("announce", e))?;
        if let Some(old) = self.set_announced(Some(info)) {
            if old.get_fullname() != fullname {
                let _ = self.daemon.unregister(old.get_fullname());
            }
        }
        info!(name = %fullname, "announced over mdns");
        Ok(())
    }
}

/// A node as its announcement describes it; `None` for one that is not a Ferry node's.
fn node_record(service: &ResolvedService) -> Option<NodeRecord> {
    let txt = |key: &str| service.get_property_val_str(key).map(str::to_owned);
    let ip: IpAddr = service
        .get_addresses_v4()
        .into_iter()
        .min()
        .map(IpAddr::V4)
        .or_else(|| service.get_addresses().iter().map(|a| a.to_ip_addr()).min())?;
    let services = txt("services")
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.split_once('/'))
        .map(|(name, protocol)| ServiceRecord {
            name: name.to_owned(),
            protocol: protocol.to_owned(),
        })
        .collect();
    Some(NodeRecord {
        name: txt("name").unwrap_or_default(),
        datacenter: txt("dc")?,
        key: txt("key")?,
        address: SocketAddr::new(ip, service.get_port()).to_string(),
        services,
    })
}

impl Registry for Mdns {
    fn kind(&self) -> RegistryKind {
        RegistryKind::Mdns
    }

    fn register<'a>(
        &'a self,
        node: &'a mut watch::Receiver<NodeRecord>,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            loop {
                let record = node.borrow_and_update().clone();
                self.announce(&record)?;
                if node.changed().await.is_err() {
                    // The node is going away; deregister withdraws the announcement.
                    std::future::pending::<()>().await;
                }
            }
        })
    }

    fn deregister(&self) -> BoxFuture<'_, Result<(), RegistryError>> {
        Box::pin(async move {
            let Some(info) = self.set_announced(None) else {
                return Ok(());
            };
            let fullname = info.get_fullname();
            // Sends the goodbye packet, so that browsers drop this node now.
            let done = self
                .daemon
                .unregister(fullname)
                .map_err(|e| error("unregister", e))?;
            let _ = tokio::time::timeout(Duration::from_secs(1), done.recv_async()).await;
            Ok(())
        })
    }

    fn watch<'a>(
        &'a self,
        _: &'a Scope,
        sink: &'a Sink,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let events = self
                .daemon
                .browse(SERVICE_TYPE)
                .map_err(|e| error("browse", e))?;
            let mut nodes: HashMap<String, NodeRecord> = HashMap::new();
            loop {
                let event = events
                    .recv_async()
                    .await
                    .map_err(|e| RegistryError(format!("mdns browse ended: {e}")))?;
                match event {
                    // Browsing is under way: an empty answer is an answer, and the node is
                    // ready; records arrive as they come.
                    ServiceEvent::SearchStarted(_) if nodes.is_empty() => {}
                    ServiceEvent::ServiceResolved(service) => match node_record(&service) {
                        Some(node) => {
                            nodes.insert(service.fullname.clone(), node);
                        }
                        None => debug!(name = %service.fullname, "not a ferry node; skipped"),
                    },
                    ServiceEvent::ServiceRemoved(_, fullname) => {
                        nodes.remove(&fullname);
                    }
                    _ => continue,
                }
                sink.set(EndpointSet::of_nodes(nodes.values()));
            }
        })
    }
}
