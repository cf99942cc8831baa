//! Publish and subscribe: the application API and the two brokers behind it.
//!
//! - **mesh** (`mesh.rs`, the default, no dependency): a node announces its services'
//!   subscriptions in its catalog, which the mesh carries as it carries services (through
//!   gateways, withdrawn as fast as announced). The node an application publishes to keeps
//!   the message until one member of every matching group has acknowledged it: it picks a
//!   member by the routing rule calls follow (`members.rs`), POSTs the message to it
//!   (`send.rs`), and retries on another member with backoff, dead-letters or drops as the
//!   answer says (`delivery.rs`, plain state). Messages held count against `queue_bytes`:
//!   past it, publishers are refused, not queued without end.
//! - Batches (`cloudevents.rs`): `POST /v1/publish-batch/TOPIC` takes many messages in one
//!   request, and a subscription with `batch` above 1 receives many in one delivery, both as
//!   CloudEvents batches; past the API, each message is kept, tried and judged as one.
//! - **nats** (`nats.rs`): messages are stored in a NATS JetStream stream, so they outlive the
//!   node that took them; each group is a durable consumer that its members' nodes pull from,
//!   delivering with the same `send.rs` and judging answers with the same `delivery.rs`.
//!
//! ```text
//! api.rs ─▶ Broker::publish ─▶ mesh: members::matching ─▶ per group, a task per message
//!                                  (or per batch):
//!                                  Load::pick ─▶ send::deliver ─▶ Attempts ─▶ done | retry | give up
//!                          └─▶ nats: JetStream publish ─▶ consumer per group on its members' nodes:
//!                                  send::deliver ─▶ delivery::decide ─▶ ack | nak | dead letter, term
//! ```

mod api;
mod cloudevents;
mod delivery;
mod members;
mod mesh;
mod metrics;
mod nats;
mod send;
pub mod topic;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderValue;

use self::topic::{Topic, TopicError};
use crate::pool::Upstreams;

pub(crate) use api::percent_decoded;
pub use api::serve_application_api;
pub use cloudevents::{read_batch, write_batch_for_fuzzing, BatchError};
pub use members::Member;
pub use nats::{check_server, NatsSettings};

/// What the node tells its broker.
#[derive(Clone, Debug)]
pub struct BrokerSettings {
    /// The node's name: `ce-source` of the messages it takes.
    pub node: String,
    /// The node's datacenter: members there are preferred.
    pub datacenter: String,
    /// The largest message body accepted.
    pub max_message_bytes: usize,
    /// The most the node holds for delivery, bodies and overhead together (mesh broker).
    pub queue_bytes: usize,
    /// How long a member's service has to answer a delivery.
    pub delivery_timeout: Duration,
}

/// Where the broker learns the subscriptions of the mesh, this node's own included.
pub trait Subscribers: Send + Sync + 'static {
    /// Every subscription known, with how each subscribing service is reached.
    fn members(&self) -> Vec<Member>;
    /// This node's own subscriptions, delivered to its local services.
    fn local_members(&self) -> Vec<Member>;
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
    /// The broker's backend (NATS) cannot take it now.
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
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
    /// What is known of the body's form, so that a batch need not check it again.
    pub form: BodyForm,
}

/// What is known of a message's body when it is taken: a body read from a batch was checked
/// there already, and writing it into a delivered batch need not check it again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyForm {
    /// Nothing: any bytes.
    #[default]
    Bytes,
    /// UTF-8 text that needs no escaping in a JSON string (it was one without escapes).
    Text,
    /// A JSON value, valid as it is written.
    Json,
}

/// What became of messages a broker took (all of one topic, so alike).
pub(crate) enum Taken {
    /// Held until every matching group has them; their ids.
    Accepted(Vec<String>),
    /// No group subscribes to their topic: dropped, and counted. Their ids all the same.
    NoSubscriber(Vec<String>),
}

/// A message on its way to a member: what a delivery sends.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) id: String,
    pub(crate) topic: Topic,
    /// The publishing node's name, shared by the messages it took at once.
    pub(crate) source: Arc<str>,
    /// When it was published, as `ce-time` says it.
    pub(crate) time: Arc<str>,
    pub(crate) accepted: Instant,
    pub(crate) content_type: Option<HeaderValue>,
    pub(crate) traceparent: Option<HeaderValue>,
    pub(crate) body: Bytes,
    pub(crate) form: BodyForm,
    /// For a dead letter: the topic it was published on, and why it could not be delivered.
    pub(crate) dead_letter_of: Option<(String, String)>,
    /// The bytes it counts against the mesh broker's queue until the last delivery is done.
    pub(crate) _held: Option<Held>,
}

/// Bytes counted against `queue_bytes`, given back when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    queued: Arc<AtomicUsize>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        let left = self.queued.fetch_sub(self.bytes, Ordering::AcqRel) - self.bytes;
        metrics::queued(left);
    }
}

/// Message ids: a random prefix for this run of the node, then a count.
struct Ids {
    boot: u64,
    sequence: AtomicU64,
}

impl Ids {
    fn new() -> Ids {
        Ids {
            boot: RandomState::new().build_hasher().finish(),
            sequence: AtomicU64::new(0),
        }
    }

    fn next(&self) -> String {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}-{n:x}", self.boot)
    }

    /// A seed for a jitter, different for each caller.
    fn seed(&self) -> u64 {
        self.boot ^ self.sequence.load(Ordering::Relaxed).rotate_left(17)
    }
}

/// The broker an application publishes to. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    backend: Backend,
    max_message_bytes: usize,
}

#[derive(Clone)]
enum Backend {
    Mesh(Arc<mesh::Mesh>),
    Nats(Arc<nats::Nats>),
}

impl Broker {
    /// The mesh broker, delivering to `subscribers` through `upstreams`.
    pub fn mesh(
        settings: BrokerSettings,
        subscribers: Arc<dyn Subscribers>,
        upstreams: Upstreams,
    ) -> Broker {
        Broker {
            max_message_bytes: settings.max_message_bytes,
            backend: Backend::Mesh(Arc::new(mesh::Mesh::new(settings, subscribers, upstreams))),
        }
    }

    /// The `nats` broker. It connects in the background (publishes are refused with
    /// [`PublishError::Unavailable`] until it has) and pulls the messages of this node's own
    /// subscriptions for its local services. Must be called within a tokio runtime.
    pub fn nats(
        settings: BrokerSettings,
        nats: NatsSettings,
        subscribers: Arc<dyn Subscribers>,
        upstreams: Upstreams,
    ) -> Broker {
        Broker {
            max_message_bytes: settings.max_message_bytes,
            backend: Backend::Nats(nats::Nats::start(settings, nats, subscribers, upstreams)),
        }
    }

    /// The largest body [`Broker::publish`] takes.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Takes a message for every group subscribed to `topic`, and returns its id. Once this
    /// returns `Ok`, the message is kept until each group acknowledged it, or its attempts
    /// are spent.
    pub async fn publish(
        &self,
        topic: &str,
        publication: Publication,
    ) -> Result<String, PublishError> {
        let ids = self.publish_batch(topic, vec![publication]).await?;
        Ok(ids.into_iter().next().unwrap_or_default())
    }

    /// Takes messages for every group subscribed to `topic`, all or none, and returns their
    /// ids in order. Once this returns `Ok`, each is kept until each group acknowledged it, or
    /// its attempts are spent.
    pub async fn publish_batch(
        &self,
        topic: &str,
        publications: Vec<Publication>,
    ) -> Result<Vec<String>, PublishError> {
        let n = publications.len() as u64;
        let parsed = match Topic::parse(topic) {
            Ok(parsed) => parsed,
            Err(e) => {
                // A topic that is not one stays out of the labels: any string could be sent.
                metrics::published("", "bad-topic", n);
                return Err(e.into());
            }
        };
        if publications
            .iter()
            .any(|p| p.body.len() > self.max_message_bytes)
        {
            metrics::published(topic, "too-large", n);
            return Err(PublishError::TooLarge {
                limit: self.max_message_bytes,
            });
        }
        let taken = match &self.backend {
            Backend::Mesh(mesh) => mesh.publish(parsed, publications),
            Backend::Nats(nats) => nats.publish(parsed, publications).await,
        };
        let (label, result) = match taken {
            Ok(Taken::Accepted(ids)) => ("accepted", Ok(ids)),
            Ok(Taken::NoSubscriber(ids)) => ("no-subscriber", Ok(ids)),
            Err(e @ PublishError::Full { .. }) => ("full", Err(e)),
            Err(e @ PublishError::Unavailable(_)) => ("unavailable", Err(e)),
            Err(e @ PublishError::TooLarge { .. }) => ("too-large", Err(e)),
            Err(e @ PublishError::BadTopic(_)) => ("bad-topic", Err(e)),
        };
        metrics::published(topic, label, n);
        result
    }
}
