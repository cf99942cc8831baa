//! What the broker tests share: subscriptions in a node's config, publishing through its
//! application API, and reading what a subscriber (`tests/python/subscriber.py`) received,
//! from its log, which outlives a kill.

use std::time::Duration;

use serde_json::Value;

use super::{curl, curl_in, eventually, Backend, Node, NodeBuilder, Response, Service};

/// `[[subscription]]` of `service` to `topic`, POSTed to `/events`, with `extra` TOML lines.
pub(crate) fn subscription(topic: &str, service: &str, extra: &str) -> String {
    format!("[[subscription]]\ntopic = \"{topic}\"\nservice = \"{service}\"\npath = \"/events\"\n{extra}\n")
}

/// A node fronting `service`, whose workload is `subscriber`, subscribed to `topic`.
pub(crate) fn subscribing(
    name: &str,
    service: &str,
    subscriber: &Backend,
    topic: &str,
) -> NodeBuilder {
    Node::builder(name)
        .service(Service::http(service, subscriber.address).health("/healthz"))
        .raw(&subscription(topic, service, ""))
}

/// `POST /v1/publish/TOPIC` on the node's application API, from the node's namespace.
pub(crate) fn publish(node: &Node, topic: &str, body: &str, headers: &[&str]) -> Response {
    let url = format!("http://{}/v1/publish/{topic}", node.api);
    let mut args = vec!["-X", "POST", &url, "--data-binary", body];
    for header in headers {
        args.extend(["-H", header]);
    }
    curl_in(node.netns.as_deref(), &args)
}

/// Publishes and returns the message's id; panics unless the answer is 202.
pub(crate) fn published(node: &Node, topic: &str, body: &str) -> String {
    let answer = publish(node, topic, body, &[]);
    assert_eq!(answer.status, 202, "publish to {topic}: {answer:?}");
    let json: Value = serde_json::from_str(&answer.body).expect("a JSON answer");
    json["id"].as_str().expect("an id").to_owned()
}

/// Every delivery a subscriber recorded, including before a kill (from its log).
pub(crate) fn received(subscriber: &Backend) -> Vec<Value> {
    subscriber
        .log()
        .lines()
        .filter_map(|line| line.strip_prefix("RECEIVED "))
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect()
}

pub(crate) fn header<'a>(delivery: &'a Value, name: &str) -> &'a str {
    delivery["headers"][name].as_str().unwrap_or("")
}

/// The `ce-id`s a subscriber received.
pub(crate) fn ids(subscriber: &Backend) -> Vec<String> {
    received(subscriber)
        .iter()
        .map(|d| header(d, "ce-id").to_owned())
        .collect()
}

/// Tells a subscriber how to answer later deliveries.
pub(crate) fn answer_with(subscriber: &Backend, status: u16, delay_ms: u64) {
    let url = format!(
        "http://{}/answer?status={status}&delay_ms={delay_ms}",
        subscriber.address
    );
    assert_eq!(curl(&["-X", "POST", &url]).status, 200);
}

/// Waits until the node knows `count` subscriptions, its own and the mesh's.
pub(crate) fn wait_subscriptions(node: &Node, count: usize) {
    eventually(Duration::from_secs(20), || {
        let rows = node.admin_json("/subscriptions");
        match rows.as_array().map(Vec::len) {
            Some(n) if n == count => Ok(()),
            other => Err(format!("{other:?} subscriptions, want {count}: {rows}")),
        }
    });
}
