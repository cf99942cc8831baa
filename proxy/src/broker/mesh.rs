//! The mesh broker: the node an application publishes to keeps each message until one member
//! of every matching group has acknowledged it. Subscriptions come from the catalogs the mesh
//! carries (`Subscribers`); members are picked by the routing rule calls follow
//! (`members.rs`); each try is an HTTP call (`send.rs`) whose answer `delivery.rs` judges.
//!
//! A group whose subscription takes one message at a time gets a delivery per message, as
//! many at once as are published. A group that takes batches gets at most
//! [`BATCHES_IN_FLIGHT`] deliveries at once from this node: messages published meanwhile wait
//! and go together in the next, so that batches grow with the load and a lone message is not
//! held back.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use ferry_tunnel::CatalogSubscription;

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

/// Deliveries in flight from this node to a group that takes batches, at most.
const BATCHES_IN_FLIGHT: usize = 16;

pub(super) struct Mesh {
    settings: BrokerSettings,
    subscribers: Arc<dyn Subscribers>,
    upstreams: Upstreams,
    queued: Arc<AtomicUsize>,
    ids: Ids,
    load: Load,
    losses: metrics::LossLog,
    /// Per group that takes batches: the messages waiting for its next delivery.
    waiting: Mutex<HashMap<String, Waiting>>,
}

/// The messages waiting for a group that takes batches, and its deliveries under way.
struct Waiting {
    messages: VecDeque<Arc<Message>>,
    /// Deliveries under way, each of which takes the next batch when it is done.
    running: usize,
    /// The group's policy when the first waiting message came (attempts, dead letter, batch).
    policy: CatalogSubscription,
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
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// Takes messages for every group subscribed to `topic`, all or none; the node keeps each
    /// until each group acknowledged it, or its attempts are spent.
    pub(super) fn publish(
        self: &Arc<Self>,
        topic: Topic,
        publications: Vec<Publication>,
    ) -> Result<Taken, PublishError> {
        let sizes = publications.iter().map(|p| p.body.len());
        let held = self.hold(&topic, sizes, false)?;
        let groups = members::matching(self.subscribers.members(), &topic);
        let ids: Vec<String> = held.iter().map(|_| self.ids.next()).collect();
        if groups.is_empty() {
            // Taken and dropped at once, as NATS does: nobody wanted them.
            self.losses.lost(
                topic.as_str(),
                "no-subscriber",
                "no group subscribes to the topic",
                ids.len() as u64,
            );
            return Ok(Taken::NoSubscriber(ids));
        }
        // Shared by the messages of one publish: one allocation, not one per message.
        let time: Arc<str> = rfc3339(SystemTime::now()).into();
        let source: Arc<str> = self.settings.node.as_str().into();
        let accepted = Instant::now();
        for ((publication, held), id) in publications.into_iter().zip(held).zip(&ids) {
            let message = Arc::new(Message {
                id: id.clone(),
                topic: topic.clone(),
                source: source.clone(),
                time: time.clone(),
                accepted,
                content_type: publication.content_type,
                traceparent: publication.traceparent,
                body: publication.body,
                form: publication.form,
                dead_letter_of: None,
                _held: Some(held),
            });
            self.dispatch(&message, &groups);
        }
        Ok(Taken::Accepted(ids))
    }

    /// Counts messages of `bodies` bytes on `topic` against the queue, all or none; refused
    /// when they would pass `queue_bytes`, unless `forced` (a dead letter, whose original is
    /// about to give its bytes back).
    fn hold(
        &self,
        topic: &Topic,
        bodies: impl Iterator<Item = usize>,
        forced: bool,
    ) -> Result<Vec<Held>, PublishError> {
        let each: Vec<usize> = bodies
            .map(|body| body + topic.as_str().len() + MESSAGE_OVERHEAD)
            .collect();
        let bytes: usize = each.iter().sum();
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
        let held = each.into_iter().map(|bytes| Held {
            queued: self.queued.clone(),
            bytes,
        });
        Ok(held.collect())
    }

    /// Starts a delivery per group, or queues the message for a group that takes batches.
    fn dispatch(self: &Arc<Self>, message: &Arc<Message>, groups: &BTreeMap<String, Vec<Member>>) {
        for (group, members) in groups {
            let Some(first) = members.first() else {
                continue;
            };
            if first.subscription.batch > 1 {
                self.enqueue(message.clone(), group, &first.subscription);
                continue;
            }
            let policy = first.subscription.clone();
            let (inner, message) = (self.clone(), message.clone());
            let (group, members) = (group.clone(), members.clone());
            tokio::spawn(async move {
                inner.deliver(vec![message], &group, &policy, members).await;
            });
        }
    }

    /// Queues `message` for `group`, and starts a delivery when fewer than
    /// [`BATCHES_IN_FLIGHT`] are under way.
    fn enqueue(self: &Arc<Self>, message: Arc<Message>, group: &str, policy: &CatalogSubscription) {
        let start = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            // Looked up by `&str` first: the group's name is copied only for a new queue.
            let queue = match waiting.get_mut(group) {
                Some(queue) => queue,
                None => waiting.entry(group.to_owned()).or_insert(Waiting {
                    messages: VecDeque::new(),
                    running: 0,
                    policy: policy.clone(),
                }),
            };
            queue.messages.push_back(message);
            let start = queue.running < BATCHES_IN_FLIGHT;
            queue.running += usize::from(start);
            start
        };
        if start {
            let (inner, group) = (self.clone(), group.to_owned());
            tokio::spawn(async move { inner.deliver_batches(group).await });
        }
    }

    /// Delivers the batches waiting for `group`, one after another, until none waits.
    async fn deliver_batches(self: Arc<Self>, group: String) {
        loop {
            let (batch, policy) = {
                let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
                let Some(queue) = waiting.get_mut(&group) else {
                    return;
                };
                if queue.messages.is_empty() {
                    queue.running -= 1;
                    if queue.running == 0 {
                        waiting.remove(&group);
                    }
                    return;
                }
                let n = queue.messages.len().min(usize::from(queue.policy.batch));
                let batch: Vec<Arc<Message>> = queue.messages.drain(..n).collect();
                (batch, queue.policy.clone())
            };
            let members = members::matching(self.subscribers.members(), &batch[0].topic)
                .remove(&group)
                .unwrap_or_default();
            self.deliver(batch, &group, &policy, members).await;
        }
    }

    /// Delivers `batch` (one message, or several for a group that takes batches) to one member
    /// of `group`, trying others until one acknowledges it or the attempts are spent, as
    /// `policy` says.
    async fn deliver(
        self: &Arc<Self>,
        batch: Vec<Arc<Message>>,
        group: &str,
        policy: &CatalogSubscription,
        mut members: Vec<Member>,
    ) {
        let Some(first) = batch.first() else {
            return;
        };
        let seed = self.ids.seed();
        let mut attempts = Attempts::new(policy.max_attempts, seed);
        let mut tried = Vec::new();
        loop {
            let datacenter = &self.settings.datacenter;
            let outcome = match self.load.pick(group, &members, datacenter, &tried) {
                None => Outcome::NoMember,
                Some((member, _in_flight)) => {
                    tried.push(member.endpoint.id);
                    let attempt = attempts.next_number();
                    let timeout = self.settings.delivery_timeout;
                    send::deliver(&batch, &member, attempt, timeout, &self.upstreams).await
                }
            };
            match attempts.record(&outcome) {
                Next::Done => {
                    for (topic, n) in by_topic(&batch) {
                        metrics::delivery(topic, group, "delivered", n);
                    }
                    for message in &batch {
                        metrics::delivered(message.accepted.elapsed());
                    }
                    return;
                }
                Next::Retry(wait) => {
                    for (topic, n) in by_topic(&batch) {
                        metrics::delivery(topic, group, "retried", n);
                    }
                    tokio::time::sleep(wait).await;
                    // Members may have come or gone meanwhile.
                    members = members::matching(self.subscribers.members(), &first.topic)
                        .remove(group)
                        .unwrap_or_default();
                }
                Next::GiveUp(reason) => {
                    for message in &batch {
                        self.give_up(message, group, &policy.dead_letter, &reason);
                    }
                    return;
                }
            }
        }
    }

    /// A message `group` will never take goes to the group's dead-letter topic, or, without
    /// one, is dropped; either way it is counted and logged.
    fn give_up(self: &Arc<Self>, message: &Message, group: &str, dead_letter: &str, reason: &str) {
        let topic = message.topic.as_str();
        // A dead letter that cannot be delivered either is dropped: never a loop.
        let dead_topic = match Topic::parse(dead_letter) {
            Ok(dead_topic) if message.dead_letter_of.is_none() => Some(dead_topic),
            _ => None,
        };
        let Some(dead_topic) = dead_topic else {
            metrics::delivery(topic, group, "dropped", 1);
            let detail = format!("group {group}: {reason}");
            self.losses.lost(topic, "undeliverable", &detail, 1);
            return;
        };
        metrics::delivery(topic, group, "dead-lettered", 1);
        let held = self.hold(&dead_topic, std::iter::once(message.body.len()), true);
        let Some(held) = held.ok().and_then(|mut held| held.pop()) else {
            return;
        };
        let dead = Arc::new(Message {
            id: self.ids.next(),
            topic: dead_topic,
            source: self.settings.node.as_str().into(),
            time: rfc3339(SystemTime::now()).into(),
            accepted: Instant::now(),
            content_type: message.content_type.clone(),
            traceparent: message.traceparent.clone(),
            body: message.body.clone(),
            form: message.form,
            dead_letter_of: Some((topic.to_owned(), reason.to_owned())),
            _held: Some(held),
        });
        let groups = members::matching(self.subscribers.members(), &dead.topic);
        if groups.is_empty() {
            metrics::published(dead.topic.as_str(), "no-subscriber", 1);
            self.losses.lost(
                dead.topic.as_str(),
                "no-subscriber",
                "no group subscribes to the dead-letter topic",
                1,
            );
            return;
        }
        metrics::published(dead.topic.as_str(), "accepted", 1);
        self.dispatch(&dead, &groups);
    }
}

/// The topics of `batch` with how many messages in a row have each: metrics are counted per
/// run rather than per message (a batch usually has one topic).
fn by_topic(batch: &[Arc<Message>]) -> Vec<(&str, u64)> {
    let mut runs: Vec<(&str, u64)> = Vec::new();
    for message in batch {
        let topic = message.topic.as_str();
        match runs.last_mut() {
            Some((last, n)) if *last == topic => *n += 1,
            _ => runs.push((topic, 1)),
        }
    }
    runs
}
