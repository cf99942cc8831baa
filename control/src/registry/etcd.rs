//! The `etcd` registry, through `etcd-client`. Each node writes its [`NodeRecord`] as JSON at
//! `PREFIX/nodes/KEY` under a lease it keeps alive, so a node that dies leaves the registry
//! when its lease runs out; every node watches `PREFIX/nodes/` (etcd pushes each change as it
//! commits) and dials the nodes it finds.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, EventType, GetOptions, KeyValue, PutOptions, WatchOptions,
};
use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tracing::{debug, info};

use super::{EndpointSet, NodeRecord, Registry, RegistryError, Scope, Sink};
use crate::config::{RegistryConfig, RegistryKind};

/// The lease's time to live: a node that stops renewing it leaves the registry this long
/// after its last renewal.
const LEASE_TTL: Duration = Duration::from_secs(5);
/// Renewals per lease period: one lost renewal does not lose the lease.
const RENEWALS_PER_TTL: u32 = 3;
/// The default client URL and key prefix.
const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:2379";
const DEFAULT_PREFIX: &str = "/ferry/";

pub(super) struct Etcd {
    endpoints: Vec<String>,
    /// Where node records live: `PREFIX/nodes/`.
    nodes_dir: String,
    /// The lease of this node's registration, to revoke when it stops.
    lease: Mutex<Option<i64>>,
}

fn error(what: &str, e: etcd_client::Error) -> RegistryError {
    RegistryError(format!("etcd {what}: {e}"))
}

impl Etcd {
    pub(super) fn new(config: &RegistryConfig) -> Etcd {
        let endpoints = if config.endpoints.is_empty() {
            vec![DEFAULT_ENDPOINT.to_owned()]
        } else {
            config.endpoints.clone()
        };
        let prefix = config.prefix.as_deref().unwrap_or(DEFAULT_PREFIX);
        Etcd {
            endpoints,
            nodes_dir: format!("{}/nodes/", prefix.trim_end_matches('/')),
            lease: Mutex::new(None),
        }
    }

    async fn connect(&self) -> Result<Client, RegistryError> {
        // Short timeouts and HTTP/2 pings: a dead or hung server must be noticed in about a
        // second, so the cache can say so, and a watch must not hang on a dead connection.
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1))
            .with_keep_alive_while_idle(true);
        Client::connect(&self.endpoints, Some(options))
            .await
            .map_err(|e| error(&format!("connect to {}", self.endpoints.join(",")), e))
    }

    /// The key of a node's record. Base64 keys hold `/` and `+`: made safe for a path.
    fn record_key(&self, key: &str) -> String {
        let safe: String = key
            .chars()
            .map(|c| match c {
                '/' => '_',
                '+' => '-',
                c => c,
            })
            .collect();
        format!("{}{}", self.nodes_dir, safe.trim_end_matches('='))
    }

    fn set_lease(&self, lease: Option<i64>) {
        *self.lease.lock().unwrap_or_else(|e| e.into_inner()) = lease;
    }
}

/// A record as stored, or `None` (logged) for one that is not a node record.
fn parse(kv: &KeyValue) -> Option<NodeRecord> {
    match serde_json::from_slice::<NodeRecord>(kv.value()) {
        Ok(node) => Some(node),
        Err(e) => {
            debug!(key = %String::from_utf8_lossy(kv.key()), error = %e, "not a node record; skipped");
            None
        }
    }
}

impl Registry for Etcd {
    fn kind(&self) -> RegistryKind {
        RegistryKind::Etcd
    }

    fn register<'a>(
        &'a self,
        node: &'a mut watch::Receiver<NodeRecord>,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let mut client = self.connect().await?;
            let ttl = LEASE_TTL.as_secs() as i64;
            let lease = client
                .lease_grant(ttl, None)
                .await
                .map_err(|e| error("lease grant", e))?
                .id();
            self.set_lease(Some(lease));
            let mut record = node.borrow_and_update().clone();
            let put = |client: &mut Client, record: &NodeRecord| {
                let key = self.record_key(&record.key);
                let value = serde_json::to_vec(record).unwrap_or_default();
                let mut client = client.clone();
                async move {
                    client
                        .put(key, value, Some(PutOptions::new().with_lease(lease)))
                        .await
                        .map_err(|e| error("put", e))
                }
            };
            put(&mut client, &record).await?;
            info!(lease, "registered in etcd");
            let (mut keeper, mut renewals) = client
                .lease_keep_alive(lease)
                .await
                .map_err(|e| error("lease keep-alive", e))?;
            let mut tick = tokio::time::interval(LEASE_TTL / RENEWALS_PER_TTL);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        keeper.keep_alive().await.map_err(|e| error("lease keep-alive", e))?;
                    }
                    renewal = renewals.message() => match renewal {
                        Ok(Some(r)) if r.ttl() <= 0 => {
                            return Err(RegistryError("etcd lease expired".into()));
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => return Err(RegistryError("etcd lease keep-alive ended".into())),
                        Err(e) => return Err(error("lease keep-alive", e)),
                    },
                    changed = node.changed() => {
                        if changed.is_err() {
                            // The node is going away; deregister revokes the lease.
                            std::future::pending::<()>().await;
                        }
                        record = node.borrow_and_update().clone();
                        put(&mut client, &record).await?;
                    }
                }
            }
        })
    }

    fn deregister(&self) -> BoxFuture<'_, Result<(), RegistryError>> {
        Box::pin(async move {
            let lease = self.lease.lock().unwrap_or_else(|e| e.into_inner()).take();
            let Some(lease) = lease else {
                return Ok(());
            };
            let mut client = self.connect().await?;
            client
                .lease_revoke(lease)
                .await
                .map_err(|e| error("lease revoke", e))?;
            Ok(())
        })
    }

    fn watch<'a>(
        &'a self,
        _: &'a Scope,
        sink: &'a Sink,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let mut client = self.connect().await?;
            let snapshot = client
                .get(
                    self.nodes_dir.as_str(),
                    Some(GetOptions::new().with_prefix()),
                )
                .await
                .map_err(|e| error("get", e))?;
            let revision = snapshot.header().map_or(0, |h| h.revision());
            let mut nodes: BTreeMap<Vec<u8>, NodeRecord> = snapshot
                .kvs()
                .iter()
                .filter_map(|kv| parse(kv).map(|node| (kv.key().to_vec(), node)))
                .collect();
            sink.set(EndpointSet::of_nodes(nodes.values()));
            // From the revision after the snapshot: no change between the two is missed.
            let options = WatchOptions::new()
                .with_prefix()
                .with_start_revision(revision + 1);
            let mut stream = client
                .watch(self.nodes_dir.as_str(), Some(options))
                .await
                .map_err(|e| error("watch", e))?;
            while let Some(response) = stream.message().await.map_err(|e| error("watch", e))? {
                if response.canceled() {
                    return Err(RegistryError(format!(
                        "etcd watch canceled: {}",
                        response.cancel_reason()
                    )));
                }
                if response.events().is_empty() {
                    continue;
                }
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    match event.event_type() {
                        EventType::Put => match parse(kv) {
                            Some(node) => nodes.insert(kv.key().to_vec(), node),
                            None => nodes.remove(kv.key()),
                        },
                        EventType::Delete => nodes.remove(kv.key()),
                    };
                }
                sink.set(EndpointSet::of_nodes(nodes.values()));
            }
            Err(RegistryError("etcd watch ended".into()))
        })
    }
}
