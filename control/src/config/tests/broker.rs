//! `[api]`, `[broker]` and `[[subscription]]`: read, defaulted, checked, printed back.

use super::{addr, at, errors, full_errors, message_of, parse};
use crate::config::*;

const SUBSCRIBER: &str = r#"
[[service]]
name = "billing"
address = "127.0.0.1:8080"

[[subscription]]
topic = "orders.*"
service = "billing"
path = "/events/orders"
"#;

#[test]
fn a_subscription_takes_the_reference_defaults() {
    let config = parse(SUBSCRIBER);
    assert_eq!(
        config.subscriptions,
        [SubscriptionConfig {
            topic: "orders.*".into(),
            service: "billing".into(),
            path: "/events/orders".into(),
            group: "billing".into(),
            max_attempts: 5,
            dead_letter: None,
            batch: 1,
        }]
    );
    assert_eq!(config.api.listen, addr("127.0.0.1:7703"));
    assert_eq!(config.broker.kind, BrokerKind::Mesh);
    assert_eq!(config.broker.max_message_bytes, 1 << 20);
    assert_eq!(config.broker.queue_bytes, 64 << 20);
}

#[test]
fn every_key_is_read_and_printed_back() {
    let text = format!(
        r#"[api]
listen = "127.0.0.1:9703"
[broker]
kind = "mesh"
max_message_bytes = "64KiB"
queue_bytes = "2MiB"
delivery_timeout = "3s"
{SUBSCRIBER}group = "ledger"
max_attempts = 9
dead_letter = "orders.dead"
batch = 100
"#
    );
    let config = parse(&text);
    assert_eq!(config.api.listen, addr("127.0.0.1:9703"));
    assert_eq!(config.broker.max_message_bytes, 64 << 10);
    assert_eq!(config.broker.queue_bytes, 2 << 20);
    assert_eq!(
        config.broker.delivery_timeout,
        std::time::Duration::from_secs(3)
    );
    let s = &config.subscriptions[0];
    assert_eq!((s.group.as_str(), s.max_attempts), ("ledger", 9));
    assert_eq!(s.dead_letter.as_deref(), Some("orders.dead"));
    assert_eq!(s.batch, 100);
    let printed = config.to_toml();
    assert!(printed.contains("queue_bytes = \"2MiB\""), "{printed}");
    assert_eq!(parse(&printed).subscriptions, config.subscriptions);
}

#[test]
fn bad_subscriptions_name_their_line_and_key() {
    let text = r#"[[service]]
name = "billing"
address = "127.0.0.1:8080"
[[subscription]]
topic = "orders.>.x"
service = "biling"
path = "events"
max_attempts = 0
dead_letter = "orders.*"
batch = 1001
colour = "red"
[broker]
kind = "kafka"
queue_bytes = "lots"
"#;
    assert_eq!(
        errors(text),
        [
            at(5, "subscription[0].topic"),
            at(6, "subscription[0].service"),
            at(7, "subscription[0].path"),
            at(8, "subscription[0].max_attempts"),
            at(9, "subscription[0].dead_letter"),
            at(10, "subscription[0].batch"),
            at(11, "subscription[0].colour"),
            at(13, "broker.kind"),
            at(14, "broker.queue_bytes"),
        ]
    );
    let errors = full_errors(text);
    assert!(message_of(&errors, "subscription[0].service").contains("no [[service]] named"));
    assert!(message_of(&errors, "subscription[0].dead_letter").contains("no wildcard"));
    assert!(message_of(&errors, "subscription[0].topic").contains("'>' may only be the last"));
    assert!(message_of(&errors, "subscription[0].batch").contains("(1-1000)"));
}

#[test]
fn the_api_cannot_share_an_address_with_another_listener() {
    let text = "[admin]\nlisten = \"127.0.0.1:9000\"\n[api]\nlisten = \"127.0.0.1:9000\"\n";
    assert_eq!(errors(text), [at(4, "api.listen")]);
}

#[test]
fn the_nats_broker_takes_its_servers_and_defaults_them() {
    let config = parse(
        "[broker]\nkind = \"nats\"\nservers = [\"nats://10.0.0.1:4222\"]\nprefix = \"app\"\n",
    );
    assert_eq!(config.broker.kind, BrokerKind::Nats);
    assert_eq!(config.broker.servers, ["nats://10.0.0.1:4222"]);
    assert_eq!(config.broker.prefix.as_deref(), Some("app"));
    assert_eq!(config.broker.stream.as_deref(), Some("FERRY"));
    let config = parse("[broker]\nkind = \"nats\"\n");
    assert_eq!(config.broker.servers, ["nats://127.0.0.1:4222"]);
}

#[test]
fn nats_keys_under_the_mesh_broker_and_bad_servers_are_errors() {
    let text = "[broker]\nservers = [\"nats://10.0.0.1:4222\"]\n";
    assert_eq!(errors(text), [at(2, "broker.servers")]);
    let text = "[broker]\nkind = \"nats\"\nservers = [\"nats://\"]\nprefix = \"a.*\"\n";
    assert_eq!(
        errors(text),
        [at(3, "broker.servers[0]"), at(4, "broker.prefix")]
    );
}
