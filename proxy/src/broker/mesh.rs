//! The mesh broker: the node an application publishes to keeps each message until one member
//! of every matching group has acknowledged it. Subscriptions come from the catalogs the mesh
//! carries (`Subscribers`); members are picked by the routing rule calls follow
//! (`members.rs`); each try is an HTTP call (`send.rs`) whose answer `delivery.rs` judges.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::delivery::{Attempts, Next, Outcome};
use super::members::{self, Load, Member};
use super::send::{self, rfc3339};
use super::topic::Topic;
use super::{
    metrics, BrokerSettings, Held, Ids, Message, Publication, PublishError, Subscribers, Taken,
};
use crate::pool::Upstreams;

/// Each held message counts this much beyond its body and topic, so that a flood of empty
/// messages is bounded too (what a message's task, headers and id take, roughly).
const MESSAGE_OVERHEAD: usize = 512;

pub(super) struct Mesh {
    settings: BrokerSettings,
    subscribers: Arc<dyn Subscribers>,
    upstreams: Upstreams,
    queued: Arc<AtomicUsize>,
    ids: Ids,
    load: Load,
    losses: metrics::LossLog,
}

impl Mesh {
    pub(super) fn new(
        settings: BrokerSettings,
        subscribers: Arc<dyn Subscribers>,
        upstreams: Upstreams,
    ) -> Mesh {
        Mesh {
            settings,
            subscribers,
            upstreams,
            queued: Arc::new(AtomicUsize::new(0)),
            ids: Ids::new(),
            load: Load::default(),
            losses: metrics::LossLog::default(),
        }
    }

    /// Takes a message for every group subscribed to `topic`; the node keeps it until each
    /// group acknowledged it, or its attempts are spent.
    pub(super) fn publish(
        self: &Arc<Self>,
        topic: Topic,
        publication: Publication,
    ) -> Result<Taken, PublishError> {
        let held = self.hold(&topic, publication.body.len(), false)?;
        let groups = members::matching(self.subscribers.members(), &topic);
        let id = self.ids.next();
        if groups.is_empty() {
            // Taken and dropped at once, as NATS does: nobody wanted it.
            self.losses.lost(
                topic.as_str(),
                "no-subscriber",
                "no group subscribes to the topic",
            );
            return Ok(Taken::NoSubscriber(id));
        }
        let message = Arc::new(Message {
            id: id.clone(),
            topic,
            source: self.settings.node.clone(),
            time: rfc3339(SystemTime::now()),
            accepted: Instant::now(),
            content_type: publication.content_type,
            traceparent: publication.traceparent,
            body: publication.body,
            dead_letter_of: None,
            _held: Some(held),
        });
        self.dispatch(&message, groups);
        Ok(Taken::Accepted(id))
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
        let seed = self.ids.seed();
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
            id: self.ids.next(),
            topic: dead_topic,
            source: self.settings.node.clone(),
            time: rfc3339(SystemTime::now()),
            accepted: Instant::now(),
            content_type: message.content_type.clone(),
            traceparent: message.traceparent.clone(),
            body: message.body.clone(),
            dead_letter_of: Some((topic.to_owned(), reason)),
            _held: Some(held),
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
