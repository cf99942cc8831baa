//! What the broker tests share: subscriptions in a node's config, publishing through its
//! application API, and reading what a subscriber (`tests/python/subscriber.py`) received,
//! from its log, which outlives a kill.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::{
    curl, curl_in, eventually, python_script, require_tool, wait_ready, Backend, Node, NodeBuilder,
    Response, Service,
};

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

/// `POST /v1/publish-batch/TOPIC` with `body`.
pub(crate) fn publish_batch(node: &Node, topic: &str, body: &str) -> Response {
    let url = format!("http://{}/v1/publish-batch/{topic}", node.api);
    let args = [
        "-X",
        "POST",
        &url,
        "-H",
        "content-type: application/cloudevents-batch+json",
        "--data-binary",
        body,
    ];
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

/// The events of a delivery of a CloudEvents batch; empty for any other delivery.
pub(crate) fn events(delivery: &Value) -> Vec<Value> {
    if header(delivery, "content-type") != "application/cloudevents-batch+json" {
        return Vec::new();
    }
    let body = delivery["body"].as_str().unwrap_or("");
    serde_json::from_str::<Vec<Value>>(body).expect("a batch is a JSON array")
}

/// The ids of the messages a subscriber received: `ce-id` of each delivery, or of each event
/// of a batch.
pub(crate) fn ids(subscriber: &Backend) -> Vec<String> {
    let mut ids = Vec::new();
    for delivery in received(subscriber) {
        let batch = events(&delivery);
        if batch.is_empty() {
            ids.push(header(&delivery, "ce-id").to_owned());
        }
        ids.extend(
            batch
                .iter()
                .filter_map(|e| e["id"].as_str().map(str::to_owned)),
        );
    }
    ids
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

/// Publishes `count` messages at `rate` a second with the Python publisher, calling `midway`
/// once a third of them are taken; returns the ids of those answered 202.
pub(crate) fn publish_stream(
    node: &Node,
    topic: &str,
    count: usize,
    rate: u32,
    midway: impl FnOnce(),
) -> Vec<String> {
    require_tool("python3");
    let mut child = Command::new("python3")
        .arg(python_script("publisher.py"))
        .args([
            &node.api.to_string(),
            topic,
            &count.to_string(),
            &rate.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let stdout = child.stdout.take().expect("piped");
    let mut ids = Vec::new();
    let mut midway = Some(midway);
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
        if line == "DONE" {
            break;
        }
        let (status, rest) = line.split_once(' ').unwrap_or((&line, ""));
        assert_eq!(status, "202", "a publish was refused: {line}");
        ids.push(rest.to_owned());
        if ids.len() == count / 3 {
            if let Some(midway) = midway.take() {
                midway();
            }
        }
    }
    let _ = child.wait();
    ids
}

/// Starts `b` and `c` and a publishing node `app` linked to both; returns them once `app`
/// knows the `subscriptions` they announce.
pub(crate) fn with_publisher(
    b: NodeBuilder,
    c: NodeBuilder,
    subscriptions: usize,
) -> (Node, Node, Node) {
    let app = Node::builder("app");
    let (b, c) = (b.trust(app.public_key()), c.trust(app.public_key()));
    let app = app
        .peer(b.tunnel(), b.public_key())
        .peer(c.tunnel(), c.public_key())
        .start();
    let (b, c) = (b.start(), c.start());
    for node in [&app, &b, &c] {
        wait_ready(node);
    }
    wait_subscriptions(&app, subscriptions);
    (app, b, c)
}

/// Every published id reached the group at least once (at least once: a member that died
/// after taking a message and before answering may have it again on the other).
pub(crate) fn assert_none_lost(published: &[String], members: &[&Backend]) {
    eventually(Duration::from_secs(30), || {
        let got: BTreeSet<String> = members.iter().flat_map(|m| ids(m)).collect();
        let missing: Vec<&String> = published.iter().filter(|id| !got.contains(*id)).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} of {} not delivered: {missing:?}",
                missing.len(),
                published.len()
            ))
        }
    });
}
