//! The node's answer to "who subscribes?", for its broker: this node's own `[[subscription]]`s,
//! delivered to its local services, and those other nodes announced over the mesh, delivered
//! through the tunnel. Its own are announced to the mesh from here too.

use std::sync::{Arc, RwLock};

use serde::Serialize;

use ferry_proxy::broker::{Member, Subscribers};
use ferry_proxy::{Endpoint, EndpointId, Target};
use ferry_tunnel::{CatalogSubscription, Network};

use crate::config::SubscriptionConfig;
use crate::services::LocalServices;

/// This node's subscriptions and the mesh's.
pub struct NodeSubscribers {
    node: String,
    datacenter: String,
    local: LocalServices,
    network: Network,
    own: RwLock<Arc<Vec<CatalogSubscription>>>,
    /// Whether the mesh hears of this node's subscriptions: with the mesh broker, publishers
    /// need them; with NATS, the consumers in NATS are what counts.
    announce: bool,
}

/// One row of `GET /subscriptions`.
#[derive(Debug, Serialize)]
pub struct SubscriptionRow {
    /// The topic pattern.
    pub topic: String,
    /// The group it belongs to.
    pub group: String,
    /// The service that receives.
    pub service: String,
    /// Where messages are POSTed on it.
    pub path: String,
    /// The subscribing node.
    pub node: String,
    /// Its datacenter.
    pub datacenter: String,
    /// Whether it is this node's own.
    pub local: bool,
    /// Whether the receiving service is healthy.
    pub healthy: bool,
    /// Tries before a message is given up.
    pub max_attempts: u8,
    /// Where given-up messages go, if anywhere.
    pub dead_letter: Option<String>,
    /// The most messages one delivery carries.
    pub batch: u16,
}

impl NodeSubscribers {
    /// Starts with `subscriptions`, and announces them to the mesh when `announce`.
    pub fn new(
        node: String,
        datacenter: String,
        local: LocalServices,
        network: Network,
        subscriptions: &[SubscriptionConfig],
        announce: bool,
    ) -> NodeSubscribers {
        let subscribers = NodeSubscribers {
            node,
            datacenter,
            local,
            network,
            own: RwLock::new(Arc::new(Vec::new())),
            announce,
        };
        subscribers.replace(subscriptions);
        subscribers
    }

    /// Replaces this node's subscriptions (on reload); the mesh hears of the change at once.
    pub fn replace(&self, subscriptions: &[SubscriptionConfig]) {
        let own: Vec<CatalogSubscription> = subscriptions
            .iter()
            .map(|s| CatalogSubscription {
                pattern: s.topic.clone(),
                group: s.group.clone(),
                service: s.service.clone(),
                path: s.path.clone(),
                max_attempts: s.max_attempts,
                dead_letter: s.dead_letter.clone().unwrap_or_default(),
                batch: s.batch,
            })
            .collect();
        *self.own.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(own.clone());
        if self.announce {
            self.network.announce_subscriptions(own);
        }
    }

    fn own(&self) -> Arc<Vec<CatalogSubscription>> {
        self.own.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `GET /subscriptions`: this node's, then the mesh's, by node.
    pub fn rows(&self) -> Vec<SubscriptionRow> {
        let row = |s: &CatalogSubscription, node: &str, dc: &str, local: bool, healthy: bool| {
            SubscriptionRow {
                topic: s.pattern.clone(),
                group: s.group.clone(),
                service: s.service.clone(),
                path: s.path.clone(),
                node: node.to_owned(),
                datacenter: dc.to_owned(),
                local,
                healthy,
                max_attempts: s.max_attempts,
                dead_letter: (!s.dead_letter.is_empty()).then(|| s.dead_letter.clone()),
                batch: s.batch,
            }
        };
        let mut rows: Vec<SubscriptionRow> = self
            .own()
            .iter()
            .map(|s| {
                let healthy = self.local.get(&s.service).is_some_and(|l| l.healthy());
                row(s, &self.node, &self.datacenter, true, healthy)
            })
            .collect();
        for (route, _) in self.network.subscriptions() {
            rows.push(row(
                &route.subscription,
                &route.node,
                &route.datacenter,
                false,
                route.healthy,
            ));
        }
        rows
    }
}

impl Subscribers for NodeSubscribers {
    fn members(&self) -> Vec<Member> {
        let mut members = self.local_members();
        for (route, remote) in self.network.subscriptions() {
            members.push(Member {
                node: route.node.clone(),
                endpoint: Endpoint {
                    id: EndpointId::Node(route.key),
                    target: Target::Node {
                        remote,
                        name: route.node,
                        metric: route.metric,
                    },
                    // Messages are plain HTTP posts, whatever else the service speaks.
                    protocol: ferry_tunnel::Protocol::Http,
                    datacenter: route.datacenter,
                    healthy: route.healthy,
                },
                subscription: route.subscription,
            });
        }
        members
    }

    fn local_members(&self) -> Vec<Member> {
        self.own()
            .iter()
            .filter_map(|s| {
                let service = self.local.get(&s.service)?;
                Some(Member {
                    subscription: s.clone(),
                    node: self.node.clone(),
                    endpoint: Endpoint {
                        id: EndpointId::Address(service.address()),
                        target: Target::Address(service.address()),
                        // Messages are plain HTTP posts, whatever else the service speaks.
                        protocol: ferry_tunnel::Protocol::Http,
                        datacenter: self.datacenter.clone(),
                        healthy: service.healthy(),
                    },
                })
            })
            .collect()
    }
}
