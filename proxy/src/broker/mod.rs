//! The mesh broker: publish and subscribe across the mesh, with no dependency.
//!
//! A node announces its services' subscriptions in its catalog, which the mesh carries as it
//! carries services (through gateways, withdrawn as fast as announced). The node an
//! application publishes to keeps the message until one member of every matching group has
//! acknowledged it: it picks a member by the routing rule calls follow (`members.rs`), POSTs
//! the message to it (`send.rs`), and retries on another member with backoff, dead-letters or
//! drops as the answer says (`delivery.rs`, plain state). Messages held count against
//! `queue_bytes`: past it, publishers are refused, not queued without end.
//!
//! ```text
//! api.rs ─▶ Broker::publish ─▶ members::matching ─▶ one task per group:
//!              Load::pick ─▶ send::deliver ─▶ Attempts::record ─▶ done | retry | give up
//! ```

mod api;
mod delivery;
mod members;
mod metrics;
mod send;
pub mod topic;

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::HeaderValue;

use self::delivery::{Attempts, Next, Outcome};
use self::members::Load;
use self::topic::{Topic, TopicError};
use crate::pool::Upstreams;

pub use api::serve_application_api;
pub use members::Member;

/// Each held message counts this much beyond its body and topic, so that a flood of empty
/// messages is bounded too (what a message's task, headers and id take, roughly).
const MESSAGE_OVERHEAD: usize = 512;

/// What the node tells its broker.
#[derive(Clone, Debug)]
pub struct BrokerSettings {
    /// The node's name: `ce-source` of the messages it takes.
    pub node: String,
    /// The node's datacenter: members there are preferred.
    pub datacenter: String,
    /// The largest message body accepted.
    pub max_message_bytes: usize,
    /// The most the node holds for delivery, bodies and overhead together.
    pub queue_bytes: usize,
    /// How long a member's service has to answer a delivery.
    pub delivery_timeout: Duration,
}

/// Where the broker learns the subscriptions of the mesh, this node's own included.
pub trait Subscribers: Send + Sync + 'static {
    /// Every subscription known, with how each subscribing service is reached.
    fn members(&self) -> Vec<Member>;
}

/// Why a message was not taken.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The topic is not one a message may be published on.
    #[error("bad topic: {0}")]
    BadTopic(#[from] TopicError),
    /// The body is larger than `max_message_bytes`.
    #[error("the message is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Taking it would hold more than `queue_bytes`.
    #[error("the broker holds {queued} of its {limit} bytes: try again later")]
    Full {
        /// What the node holds now.
        queued: usize,
        /// `queue_bytes`.
        limit: usize,
    },
}

/// A message to publish, as the application sent it.
#[derive(Debug, Default)]
pub struct Publication {
    /// The body, kept as it came.
    pub body: Bytes,
    /// Its content type, passed on to subscribers.
    pub content_type: Option<HeaderValue>,
    /// The publisher's W3C trace context, passed on to subscribers.
    pub traceparent: Option<HeaderValue>,
}

/// A message the broker holds: what deliveries send, and the bytes it counts against the
/// queue until the last delivery is done with it.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) id: String,
    pub(crate) topic: Topic,
    pub(crate) source: String,
    pub(crate) time: SystemTime,
    pub(crate) accepted: Instant,
    pub(crate) content_type: Option<HeaderValue>,
    pub(crate) traceparent: Option<HeaderValue>,
    pub(crate) body: Bytes,
    /// For a dead letter: the topic it was published on, and why it could not be delivered.
    pub(crate) dead_letter_of: Option<(String, String)>,
    _held: Held,
}

/// Bytes counted against `queue_bytes`, given back when dropped.
#[derive(Debug)]
struct Held {
    queued: Arc<AtomicUsize>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        let left = self.queued.fetch_sub(self.bytes, Ordering::AcqRel) - self.bytes;
        metrics::queued(left);
    }
}

/// The mesh broker. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    settings: BrokerSettings,
    subscribers: Arc<dyn Subscribers>,
    upstreams: Upstreams,
    queued: Arc<AtomicUsize>,
    /// Message ids: a random prefix for this run of the node, then a count.
    boot: u64,
    sequence: AtomicU64,
    load: Load,
    losses: metrics::LossLog,
}

impl Broker {
    /// A broker delivering to `subscribers` through `upstreams`.
    pub fn new(
        settings: BrokerSettings,
        subscribers: Arc<dyn Subscribers>,
        upstreams: Upstreams,
    ) -> Broker {
        Broker {
            inner: Arc::new(Inner {
                settings,
                subscribers,
                upstreams,
                queued: Arc::new(AtomicUsize::new(0)),
                boot: RandomState::new().build_hasher().finish(),
                sequence: AtomicU64::new(0),
                load: Load::default(),
                losses: metrics::LossLog::default(),
            }),
        }
    }

    /// The largest body [`Broker::publish`] takes.
    pub fn max_message_bytes(&self) -> usize {
        self.inner.settings.max_message_bytes
    }

    /// What the node holds for delivery now, in bytes.
    pub fn queued_bytes(&self) -> usize {
        self.inner.queued.load(Ordering::Acquire)
    }

    /// Takes a message for every group subscribed to `topic`, and returns its id. Once this
    /// returns `Ok`, the node keeps the message until each group acknowledged it, or its
    /// attempts are spent.
    pub fn publish(&self, topic: &str, publication: Publication) -> Result<String, PublishError> {
        let taken = self.take(topic, publication);
        match &taken {
            Ok(Some(_)) => metrics::published(topic, "accepted"),
            Ok(None) => metrics::published(topic, "no-subscriber"),
            // A topic that is not one stays out of the labels: any string could be sent.
            Err(PublishError::BadTopic(_)) => metrics::published("", "bad-topic"),
            Err(PublishError::TooLarge { .. }) => metrics::published(topic, "too-large"),
            Err(PublishError::Full { .. }) => metrics::published(topic, "full"),
        }
        match taken {
            Ok(Some(id)) => Ok(id),
            Ok(None) => {
                // Taken and dropped at once, as NATS does: nobody wanted it. Counted above.
                self.inner
                    .losses
                    .lost(topic, "no-subscriber", "no group subscribes to the topic");
                Ok(self.inner.next_id())
            }
            Err(e) => Err(e),
        }
    }

    fn take(&self, topic: &str, publication: Publication) -> Result<Option<String>, PublishError> {
        let topic = Topic::parse(topic)?;
        let limit = self.inner.settings.max_message_bytes;
        if publication.body.len() > limit {
            return Err(PublishError::TooLarge { limit });
        }
        let held = self.inner.hold(&topic, publication.body.len(), false)?;
        let groups = members::matching(self.inner.subscribers.members(), &topic);
        if groups.is_empty() {
            return Ok(None);
        }
        let message = Arc::new(Message {
            id: self.inner.next_id(),
            topic,
            source: self.inner.settings.node.clone(),
            time: SystemTime::now(),
            accepted: Instant::now(),
            content_type: publication.content_type,
            traceparent: publication.traceparent,
            body: publication.body,
            dead_letter_of: None,
            _held: held,
        });
        let id = message.id.clone();
        self.inner.dispatch(&message, groups);
        Ok(Some(id))
    }
}

impl Inner {
    fn next_id(&self) -> String {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}-{n:x}", self.boot)
    }

    /// Counts a message of `body` bytes on `topic` against the queue; refused when it would
    /// pass `queue_bytes`, unless `forced` (a dead letter, whose original is about to give
    /// its bytes back).
    fn hold(&self, topic: &Topic, body: usize, forced: bool) -> Result<Held, PublishError> {
        let bytes = body + topic.as_str().len() + MESSAGE_OVERHEAD;
        let limit = self.settings.queue_bytes;
        let mut queued = self.queued.load(Ordering::Acquire);
        loop {
            if !forced && queued + bytes > limit {
                return Err(PublishError::Full { queued, limit });
            }
            match self.queued.compare_exchange_weak(
                queued,
                queued + bytes,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => queued = now,
            }
        }
        metrics::queued(queued + bytes);
        Ok(Held {
            queued: self.queued.clone(),
            bytes,
        })
    }

    /// Starts one delivery per group; each holds the message until it is done.
    fn dispatch(self: &Arc<Self>, message: &Arc<Message>, groups: BTreeMap<String, Vec<Member>>) {
        for (group, members) in groups {
            let inner = self.clone();
            let message = message.clone();
            tokio::spawn(async move { inner.deliver(message, group, members).await });
        }
    }

    /// Delivers `message` to one member of `group`, trying others until one acknowledges it or
    /// the attempts are spent. The group's policy (attempts, dead-letter topic) is that of its
    /// first member by node name when the message was taken.
    async fn deliver(self: Arc<Self>, message: Arc<Message>, group: String, first: Vec<Member>) {
        let Some(policy) = first.first().map(|m| m.subscription.clone()) else {
            return;
        };
        let seed = self.boot ^ self.sequence.load(Ordering::Relaxed).rotate_left(17);
        let mut attempts = Attempts::new(policy.max_attempts, seed);
        let mut members = first;
        let mut tried = Vec::new();
        let topic = message.topic.as_str();
        loop {
            let datacenter = &self.settings.datacenter;
            let outcome = match self.load.pick(&group, &members, datacenter, &tried) {
                None => Outcome::NoMember,
                Some((member, _in_flight)) => {
                    tried.push(member.endpoint.id);
                    let attempt = attempts.next_number();
                    let timeout = self.settings.delivery_timeout;
                    send::deliver(&message, &member, attempt, timeout, &self.upstreams).await
                }
            };
            match attempts.record(&outcome) {
                Next::Done => {
                    metrics::delivered(topic, &group, message.accepted.elapsed());
                    return;
                }
                Next::Retry(wait) => {
                    metrics::delivery(topic, &group, "retried");
                    tokio::time::sleep(wait).await;
                    // Members may have come or gone meanwhile.
                    members = members::matching(self.subscribers.members(), &message.topic)
                        .remove(&group)
                        .unwrap_or_default();
                }
                Next::GiveUp(reason) => {
                    self.give_up(&message, &group, &policy.dead_letter, reason);
                    return;
                }
            }
        }
    }

    /// A message `group` will never take goes to the group's dead-letter topic, or, without
    /// one, is dropped; either way it is counted and logged.
    fn give_up(
        self: &Arc<Self>,
        message: &Message,
        group: &str,
        dead_letter: &str,
        reason: String,
    ) {
        let topic = message.topic.as_str();
        // A dead letter that cannot be delivered either is dropped: never a loop.
        let dead_topic = match Topic::parse(dead_letter) {
            Ok(dead_topic) if message.dead_letter_of.is_none() => Some(dead_topic),
            _ => None,
        };
        let Some(dead_topic) = dead_topic else {
            metrics::delivery(topic, group, "dropped");
            self.losses
                .lost(topic, "undeliverable", &format!("group {group}: {reason}"));
            return;
        };
        metrics::delivery(topic, group, "dead-lettered");
        let Ok(held) = self.hold(&dead_topic, message.body.len(), true) else {
            return;
        };
        let dead = Arc::new(Message {
            id: self.next_id(),
            topic: dead_topic,
            source: self.settings.node.clone(),
            time: SystemTime::now(),
            accepted: Instant::now(),
            content_type: message.content_type.clone(),
            traceparent: message.traceparent.clone(),
            body: message.body.clone(),
            dead_letter_of: Some((topic.to_owned(), reason)),
            _held: held,
        });
        let groups = members::matching(self.subscribers.members(), &dead.topic);
        if groups.is_empty() {
            metrics::published(dead.topic.as_str(), "no-subscriber");
            self.losses.lost(
                dead.topic.as_str(),
                "no-subscriber",
                "no group subscribes to the dead-letter topic",
            );
            return;
        }
        metrics::published(dead.topic.as_str(), "accepted");
        self.dispatch(&dead, groups);
    }
}
