//! The publish-and-subscribe sections: `[api]`, `[broker]` and `[[subscription]]`.

use super::access::Named;
use super::convert::{expected, quoted, text};
use super::document::Table;
use super::{Reader, ADDRESS_EXAMPLE, DURATION_EXAMPLE};
use crate::config::values;
use crate::config::{ApiConfig, BrokerConfig, BrokerKind, SubscriptionConfig};
use crate::config::{DEFAULT_NATS_PREFIX, DEFAULT_NATS_STREAM};

const SIZE_EXAMPLE: &str = "\"1MiB\"";
/// Where the nats broker connects when `servers` is not given.
const DEFAULT_NATS_SERVER: &str = "nats://127.0.0.1:4222";

/// A `[[subscription]]` read: the subscription when every key of it is good, and where its
/// service was named, for the check against the file's services (made even when another key
/// of the subscription is bad, so that one pass reports both).
pub(super) struct SubscriptionRead {
    pub(super) subscription: Option<SubscriptionConfig>,
    service: Option<Named>,
}

impl SubscriptionRead {
    /// The service it delivers to, and where the file names it.
    pub(super) fn service(&self) -> Option<Named> {
        self.service.clone()
    }
}

impl Reader<'_> {
    pub(super) fn api(&mut self, table: &Table, api: &mut ApiConfig) -> bool {
        self.known_keys(table, &["listen"]);
        let listen = self.field_at(
            table,
            "listen",
            &quoted(values::socket_addr, ADDRESS_EXAMPLE),
        );
        let Some((listen, line)) = listen else {
            return false;
        };
        api.listen = listen;
        self.add_listener("api.listen".into(), listen, line);
        true
    }

    pub(super) fn broker(&mut self, table: &Table, broker: &mut BrokerConfig) {
        let known = [
            "kind",
            "servers",
            "prefix",
            "stream",
            "max_message_bytes",
            "queue_bytes",
            "delivery_timeout",
        ];
        self.known_keys(table, &known);
        let kind = self.field(table, "kind", &text(values::keyword::<BrokerKind>));
        if let Some(kind) = kind {
            broker.kind = kind;
        }
        if let Some(servers) = self.list(table, "servers", &text(values::nats_server)) {
            broker.servers = servers;
        }
        broker.prefix = self.field(table, "prefix", &text(values::topic));
        broker.stream = self.field(table, "stream", &text(values::service_name));
        // The nats-only keys, under another kind, would be silently unused.
        if broker.kind != BrokerKind::Nats {
            for key in ["servers", "prefix", "stream"] {
                if let Some(span) = table.key_span(key) {
                    let message = format!(
                        "only the nats broker uses this key; kind is \"{}\"",
                        broker.kind
                    );
                    self.error(span, table.child_key(key), message);
                }
            }
        } else {
            if broker.servers.is_empty() {
                broker.servers = vec![DEFAULT_NATS_SERVER.to_string()];
            }
            broker
                .prefix
                .get_or_insert_with(|| DEFAULT_NATS_PREFIX.to_string());
            broker
                .stream
                .get_or_insert_with(|| DEFAULT_NATS_STREAM.to_string());
        }
        let size = quoted(values::positive_size, SIZE_EXAMPLE);
        if let Some(bytes) = self.field(table, "max_message_bytes", &size) {
            broker.max_message_bytes = bytes;
        }
        if let Some(bytes) = self.field(table, "queue_bytes", &size) {
            broker.queue_bytes = bytes;
        }
        let duration = quoted(values::positive_duration, DURATION_EXAMPLE);
        if let Some(timeout) = self.field(table, "delivery_timeout", &duration) {
            broker.delivery_timeout = timeout;
        }
    }

    pub(super) fn subscription(&mut self, table: &Table) -> SubscriptionRead {
        let known = [
            "topic",
            "service",
            "path",
            "group",
            "max_attempts",
            "dead_letter",
            "batch",
        ];
        self.known_keys(table, &known);
        let topic = self.required(table, "topic", &text(values::topic_pattern));
        let service = self.required_at(table, "service", &text(values::service_name));
        let path = self.required(table, "path", &text(values::delivery_path));
        let group = self.field(table, "group", &text(values::service_name));
        let max_attempts = self.field(table, "max_attempts", &attempts);
        let dead_letter = self.field(table, "dead_letter", &text(values::topic));
        let batch = self.field(table, "batch", &batch);
        let named = service
            .clone()
            .map(|(name, line)| Named::new(name, table.child_key("service"), line));
        let subscription = (|| {
            let (service, _) = service?;
            Some(SubscriptionConfig {
                topic: topic?,
                group: group.unwrap_or_else(|| service.clone()),
                service,
                path: path?,
                max_attempts: max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
                dead_letter,
                batch: batch.unwrap_or(1),
            })
        })();
        SubscriptionRead {
            subscription,
            service: named,
        }
    }
}

/// Tries before a message is given up, unless a subscription says otherwise.
pub(crate) const DEFAULT_MAX_ATTEMPTS: u8 = 5;

/// The most messages one delivery may carry (`batch`).
pub(crate) const MAX_BATCH: u16 = 1000;

fn batch(value: &toml::de::DeValue) -> Result<u16, String> {
    let n = counted(
        value,
        "a number of messages per delivery",
        i64::from(MAX_BATCH),
    )?;
    // Within 1..=MAX_BATCH, so it fits.
    Ok(n as u16)
}

fn attempts(value: &toml::de::DeValue) -> Result<u8, String> {
    let n = counted(value, "a number of attempts", i64::from(u8::MAX))?;
    // Within 1..=255, so it fits.
    Ok(n as u8)
}

/// A whole number from 1 to `most`; `what` names it in the error.
fn counted(value: &toml::de::DeValue, what: &str, most: i64) -> Result<i64, String> {
    let Some(integer) = value.as_integer() else {
        return Err(expected(what, value));
    };
    i64::from_str_radix(integer.as_str(), integer.radix())
        .ok()
        .filter(|n| (1..=most).contains(n))
        .ok_or_else(|| format!("{integer} is not {what} (1-{most})"))
}
