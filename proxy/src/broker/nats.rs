//! The `nats` broker: messages kept in a NATS JetStream stream, so that they outlive the node
//! that took them.
//!
//! A topic becomes the subject `PREFIX.TOPIC` of one stream (`[broker] stream`, subjects
//! `PREFIX.>`, kept on disk, each message until every consumer has it). Each group is a
//! durable pull consumer of that stream, filtered by the group's pattern; every node with a
//! member of the group pulls from it, so NATS gives each message to one of them. A node
//! delivers what it pulled to its local service as the mesh broker does (`send.rs`), then
//! acknowledges it on a `2xx`, naks it with the backoff on a retryable answer (NATS counts the
//! tries, a node that died mid-try included), or publishes it to the dead-letter topic and
//! terminates it. A publish is answered only once JetStream has stored the message; while NATS
//! cannot be reached it is refused at once with `503`, and nothing answered `202` is lost.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use async_nats::connection::State;
use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, stream, AckKind};
use async_nats::{HeaderMap, ServerAddr};
use futures_util::{FutureExt, StreamExt};
use http::HeaderValue;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::delivery::{decide, Next, Outcome};
use super::members::Member;
use super::send::{self, rfc3339};
use super::topic::Topic;
use super::{
    metrics, BodyForm, BrokerSettings, Ids, Message, Publication, PublishError, Subscribers, Taken,
};
use crate::pool::Upstreams;
use ferry_tunnel::backoff::Jitter;

/// How long a publish waits for NATS to store the message before answering `503`.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
/// Deliveries one node makes at once for one group.
const DELIVERIES_IN_FLIGHT: usize = 64;
/// Between tries to set up the stream or a consumer while NATS cannot be reached.
const SETUP_RETRY: Duration = Duration::from_millis(500);

const ID: &str = "Nats-Msg-Id";
const SOURCE: &str = "Ferry-Source";
const TIME: &str = "Ferry-Time";
const CONTENT_TYPE: &str = "Content-Type";
const TRACEPARENT: &str = "traceparent";
const DEAD_LETTER_TOPIC: &str = "Ferry-Dead-Letter-Topic";
const DEAD_LETTER_REASON: &str = "Ferry-Dead-Letter-Reason";

/// Where the `nats` broker keeps messages.
#[derive(Clone, Debug)]
pub struct NatsSettings {
    /// The NATS servers, `nats://HOST:PORT`.
    pub servers: Vec<String>,
    /// Topics become subjects under it: `PREFIX.TOPIC`.
    pub prefix: String,
    /// The JetStream stream that holds the messages.
    pub stream: String,
}

/// Checks a NATS server address as the client will read it.
pub fn check_server(text: &str) -> Result<(), String> {
    let bad = |why: String| {
        format!("\"{text}\" is not a NATS server address such as nats://127.0.0.1:4222: {why}")
    };
    let addr = text.parse::<ServerAddr>().map_err(|e| bad(e.to_string()))?;
    if addr.host().is_empty() {
        return Err(bad("no host".into()));
    }
    Ok(())
}

pub(super) struct Nats {
    settings: BrokerSettings,
    nats: NatsSettings,
    subscribers: Arc<dyn Subscribers>,
    upstreams: Upstreams,
    ids: Ids,
    /// Set once the client is made and the stream exists; the client reconnects by itself
    /// from then on.
    connected: OnceLock<(async_nats::Client, jetstream::Context)>,
    losses: metrics::LossLog,
}

impl Nats {
    pub(super) fn start(
        settings: BrokerSettings,
        nats: NatsSettings,
        subscribers: Arc<dyn Subscribers>,
        upstreams: Upstreams,
    ) -> Arc<Nats> {
        let broker = Arc::new(Nats {
            settings,
            nats,
            subscribers,
            upstreams,
            ids: Ids::new(),
            connected: OnceLock::new(),
            losses: metrics::LossLog::default(),
        });
        tokio::spawn(broker.clone().run());
        broker
    }

    fn subject(&self, topic: &str) -> String {
        format!("{}.{topic}", self.nats.prefix)
    }

    /// Connects, makes sure the stream exists, then pulls for each of this node's groups.
    async fn run(self: Arc<Self>) {
        let servers: Vec<ServerAddr> = self
            .nats
            .servers
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        let options = async_nats::ConnectOptions::new()
            .name(&self.settings.node)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|tries| {
                Duration::from_millis(100u64.saturating_mul(1 << tries.min(5)))
            })
            .event_callback(|event| async move { info!(%event, "nats") });
        let client = match options.connect(servers).await {
            Ok(client) => client,
            Err(e) => {
                warn!(error = %e, "cannot start the NATS client; publishes will be refused");
                return;
            }
        };
        let context = jetstream::new(client.clone());
        let config = stream::Config {
            name: self.nats.stream.clone(),
            subjects: vec![self.subject(">")],
            // A message is kept until every group has it; one no group wants is not kept,
            // as with the mesh broker.
            retention: stream::RetentionPolicy::Interest,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        loop {
            match context.get_or_create_stream(config.clone()).await {
                Ok(_) => break,
                Err(e) => debug!(error = %e, "NATS stream not set up yet"),
            }
            tokio::time::sleep(SETUP_RETRY).await;
        }
        info!(stream = %self.nats.stream, "NATS stream ready");
        let _ = self.connected.set((client, context.clone()));
        let mut groups = std::collections::HashSet::new();
        for member in self.subscribers.local_members() {
            // One consumer per group: a second subscription of this node in the same group
            // would fight the first over the consumer's filter.
            if groups.insert(member.subscription.group.clone()) {
                tokio::spawn(self.clone().consume(context.clone(), member));
            } else {
                warn!(group = %member.subscription.group, "a second subscription in one group is ignored by the nats broker");
            }
        }
    }

    /// Stores `publications` in JetStream and answers once it has stored every one. On an
    /// error some may have been stored: publishing them again may deliver those twice, which
    /// at-least-once allows.
    pub(super) async fn publish(
        &self,
        topic: Topic,
        publications: Vec<Publication>,
    ) -> Result<Taken, PublishError> {
        let Some((client, context)) = self.connected.get() else {
            return Err(PublishError::Unavailable(
                "not connected to NATS yet".into(),
            ));
        };
        if client.connection_state() != State::Connected {
            return Err(PublishError::Unavailable("NATS cannot be reached".into()));
        }
        let subject = self.subject(topic.as_str());
        let time = rfc3339(SystemTime::now());
        let mut ids = Vec::with_capacity(publications.len());
        let mut stored = Vec::with_capacity(publications.len());
        for publication in publications {
            let id = self.ids.next();
            let mut headers = HeaderMap::new();
            headers.insert(ID, id.as_str());
            headers.insert(SOURCE, self.settings.node.as_str());
            headers.insert(TIME, time.as_str());
            for (name, value) in [
                (CONTENT_TYPE, &publication.content_type),
                (TRACEPARENT, &publication.traceparent),
            ] {
                if let Some(value) = value.as_ref().and_then(|v| v.to_str().ok()) {
                    headers.insert(name, value);
                }
            }
            ids.push(id);
            stored.push((subject.clone(), headers, publication.body));
        }
        store(context, stored).await?;
        Ok(Taken::Accepted(ids))
    }

    /// Pulls the messages of `member`'s group and delivers them to its local service, for as
    /// long as the node runs; set up again whenever NATS drops it.
    async fn consume(self: Arc<Self>, context: jetstream::Context, member: Member) {
        let subscription = member.subscription.clone();
        let config = pull::Config {
            durable_name: Some(subscription.group.clone()),
            filter_subject: self.subject(&subscription.pattern),
            ack_policy: AckPolicy::Explicit,
            // NATS gives an unanswered message to another member after this.
            ack_wait: self.settings.delivery_timeout + Duration::from_secs(5),
            // Ferry counts the tries and gives up itself, dead-lettering: never NATS silently.
            max_deliver: -1,
            ..Default::default()
        };
        let in_flight = Arc::new(Semaphore::new(DELIVERIES_IN_FLIGHT));
        let member = Arc::new(member);
        loop {
            let messages = async {
                let stream = context.get_stream(&self.nats.stream).await?;
                let consumer = stream
                    .get_or_create_consumer(&subscription.group, config.clone())
                    .await?;
                consumer.messages().await.map_err(async_nats::Error::from)
            };
            let mut messages = match messages.await {
                Ok(messages) => messages,
                Err(e) => {
                    debug!(group = %subscription.group, error = %e, "NATS consumer not set up yet");
                    tokio::time::sleep(SETUP_RETRY).await;
                    continue;
                }
            };
            info!(group = %subscription.group, "pulling from NATS");
            let mut errors = 0;
            while let Some(next) = messages.next().await {
                match next {
                    Ok(message) => {
                        errors = 0;
                        // A group that takes batches gets, with this one, what NATS has
                        // handed over already: batches grow with the load, a lone message
                        // is not held back.
                        let mut pulled = vec![message];
                        while pulled.len() < usize::from(subscription.batch) {
                            match messages.next().now_or_never() {
                                Some(Some(Ok(more))) => pulled.push(more),
                                // An error is the stream's (a missed heartbeat): no message
                                // is lost with it, and the next pull reports it again.
                                _ => break,
                            }
                        }
                        let Ok(permit) = in_flight.clone().acquire_owned().await else {
                            return;
                        };
                        let (broker, member, context) =
                            (self.clone(), member.clone(), context.clone());
                        tokio::spawn(async move {
                            broker.handle(&context, &member, pulled).await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        debug!(group = %subscription.group, error = %e, "NATS pull failed");
                        errors += 1;
                        // The client recovers from a missed heartbeat or two by itself; more in
                        // a row, and the consumer is set up again.
                        if errors >= 3 {
                            break;
                        }
                    }
                }
            }
            tokio::time::sleep(SETUP_RETRY).await;
        }
    }

    /// Delivers pulled messages to the local member, in one request, and tells NATS how each
    /// went.
    async fn handle(
        &self,
        context: &jetstream::Context,
        member: &Member,
        pulled: Vec<jetstream::Message>,
    ) {
        let mut batch = Vec::with_capacity(pulled.len());
        let mut kept = Vec::with_capacity(pulled.len());
        for pulled in pulled {
            let made = pulled
                .info()
                .map_or(1, |info| u32::try_from(info.delivered).unwrap_or(1));
            match self.message(&pulled) {
                Some(message) => {
                    batch.push(Arc::new(message));
                    kept.push((pulled, made));
                }
                // Not a message Ferry published: nothing can deliver it.
                None => {
                    let _ = pulled.ack_with(AckKind::Term).await;
                }
            }
        }
        let Some(most) = kept.iter().map(|(_, made)| *made).max() else {
            return;
        };
        let attempt = u8::try_from(most).unwrap_or(u8::MAX);
        let timeout = self.settings.delivery_timeout;
        let outcome = send::deliver(&batch, member, attempt, timeout, &self.upstreams).await;
        for ((pulled, made), message) in kept.into_iter().zip(&batch) {
            self.settle(context, member, pulled, message, made, &outcome)
                .await;
        }
    }

    /// Tells NATS what became of `pulled` (try number `made`), whose delivery ended with
    /// `outcome`.
    async fn settle(
        &self,
        context: &jetstream::Context,
        member: &Member,
        pulled: jetstream::Message,
        message: &Message,
        made: u32,
        outcome: &Outcome,
    ) {
        let topic = message.topic.as_str();
        let group = &member.subscription.group;
        let max = u32::from(member.subscription.max_attempts);
        let mut jitter = Jitter::new(self.ids.seed());
        let acked = match decide(made, max, outcome, &mut jitter) {
            Next::Done => {
                metrics::delivery(topic, group, "delivered", 1);
                pulled.ack().await
            }
            Next::Retry(wait) => {
                metrics::delivery(topic, group, "retried", 1);
                pulled.ack_with(AckKind::Nak(Some(wait))).await
            }
            Next::GiveUp(reason) => {
                let dead_letter = &member.subscription.dead_letter;
                // A dead letter that cannot be delivered either is dropped: never a loop.
                if dead_letter.is_empty() || message.dead_letter_of.is_some() {
                    metrics::delivery(topic, group, "dropped", 1);
                    let detail = format!("group {group}: {reason}");
                    self.losses.lost(topic, "undeliverable", &detail, 1);
                    pulled.ack_with(AckKind::Term).await
                } else {
                    match self
                        .dead_letter(context, &pulled, dead_letter, &reason)
                        .await
                    {
                        Ok(()) => {
                            metrics::delivery(topic, group, "dead-lettered", 1);
                            pulled.ack_with(AckKind::Term).await
                        }
                        // Kept in NATS, to be tried again: nothing is lost.
                        Err(e) => {
                            warn!(error = %e, "cannot publish a dead letter; the message stays");
                            pulled
                                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                                .await
                        }
                    }
                }
            }
        };
        if let Err(e) = acked {
            // NATS gives the message to a member again after its ack wait: at least once.
            debug!(error = %e, "cannot answer NATS about a delivery");
        }
    }

    /// What a delivery sends, from a pulled message; `None` when its subject is no topic
    /// under the prefix.
    fn message(&self, pulled: &jetstream::Message) -> Option<Message> {
        let header = |name: &str| {
            let value = pulled.headers.as_ref()?.get(name)?;
            Some(value.as_str().to_owned())
        };
        let value = |name: &str| header(name).and_then(|v| HeaderValue::from_str(&v).ok());
        let prefix = format!("{}.", self.nats.prefix);
        let topic = Topic::parse(pulled.subject.as_str().strip_prefix(&prefix)?).ok()?;
        Some(Message {
            id: header(ID).unwrap_or_else(|| self.ids.next()),
            topic,
            source: header(SOURCE).unwrap_or_default().into(),
            time: header(TIME)
                .unwrap_or_else(|| rfc3339(SystemTime::now()))
                .into(),
            accepted: Instant::now(),
            content_type: value(CONTENT_TYPE),
            traceparent: value(TRACEPARENT),
            body: pulled.payload.clone(),
            form: BodyForm::Bytes,
            dead_letter_of: header(DEAD_LETTER_TOPIC).zip(header(DEAD_LETTER_REASON)),
            _held: None,
        })
    }

    /// Publishes `pulled` again on `dead_letter`, saying where it came from and why.
    async fn dead_letter(
        &self,
        context: &jetstream::Context,
        pulled: &jetstream::Message,
        dead_letter: &str,
        reason: &str,
    ) -> Result<(), PublishError> {
        let mut headers = pulled.headers.clone().unwrap_or_default();
        let topic = pulled
            .subject
            .as_str()
            .strip_prefix(&format!("{}.", self.nats.prefix))
            .unwrap_or_default()
            .to_owned();
        headers.insert(ID, self.ids.next().as_str());
        headers.insert(DEAD_LETTER_TOPIC, topic.as_str());
        headers.insert(DEAD_LETTER_REASON, reason);
        let subject = self.subject(dead_letter);
        store(context, vec![(subject, headers, pulled.payload.clone())]).await?;
        metrics::published(dead_letter, "accepted", 1);
        Ok(())
    }
}

/// Publishes to JetStream and waits until it has stored every message: all are sent before
/// the first acknowledgement is awaited, so that a batch costs one round trip, not one each.
async fn store(
    context: &jetstream::Context,
    messages: Vec<(String, HeaderMap, bytes::Bytes)>,
) -> Result<(), PublishError> {
    let stored = tokio::time::timeout(PUBLISH_TIMEOUT, async {
        let mut acks = Vec::with_capacity(messages.len());
        for (subject, headers, body) in messages {
            acks.push(context.publish_with_headers(subject, headers, body).await?);
        }
        for ack in acks {
            ack.await?;
        }
        Ok::<(), async_nats::Error>(())
    });
    match stored.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(PublishError::Unavailable(format!(
            "NATS did not store it: {e}"
        ))),
        Err(_) => Err(PublishError::Unavailable(format!(
            "NATS did not store it within {PUBLISH_TIMEOUT:?}"
        ))),
    }
}
