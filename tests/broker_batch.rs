//! Batches through the mesh broker, with real parts: `curl` publishing CloudEvents batches to
//! `POST /v1/publish-batch/TOPIC`, and Python subscribers (`tests/python/subscriber.py`) whose
//! subscriptions take batches (`batch = N`) or one message at a time. Needs no root.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};
use support::broker::{
    answer_with, assert_none_lost, events, header, ids, publish_batch, publish_stream, received,
    subscribing, subscription, with_publisher,
};
use support::{eventually, metric, Backend, Node, Service};

/// Entry `n` of the test's batch, and the body its subscriber must get back.
fn entry(n: usize) -> (Value, String) {
    match n % 3 {
        0 => {
            let data = json!({"order": n, "note": "a \"quoted\" word"});
            let body = data.to_string();
            (json!({"data": data}), body)
        }
        1 => {
            let text = format!("line {n}\n\ttabbed \u{e9}");
            (json!({"data": text, "datacontenttype": "text/plain"}), text)
        }
        _ => {
            // "hello N" in base64, with a content type of its own.
            let text = format!("hello {n}");
            let encoded = STANDARD.encode(text.as_bytes());
            let entry = json!({"data_base64": encoded, "datacontenttype": "application/x-hello"});
            (entry, text)
        }
    }
}

/// The bytes an event of a delivered batch carries: `data` (JSON written back as text, a
/// string as itself) or `data_base64` decoded.
fn event_body(event: &Value) -> String {
    if let Some(encoded) = event["data_base64"].as_str() {
        let decoded = STANDARD.decode(encoded).expect("data_base64 is base64");
        return String::from_utf8(decoded).expect("the test's texts are UTF-8");
    }
    match &event["data"] {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The distinct ids a subscriber received.
fn distinct(subscriber: &Backend) -> BTreeSet<String> {
    ids(subscriber).into_iter().collect()
}

/// The ids a subscriber received on a first try (`ferry-attempt: 1`, or `ferryattempt` 1 in a
/// batch), as often as they came so.
fn tried_first(subscriber: &Backend) -> Vec<String> {
    let mut first = Vec::new();
    for delivery in received(subscriber) {
        let batch = events(&delivery);
        if batch.is_empty() && header(&delivery, "ferry-attempt") == "1" {
            first.push(header(&delivery, "ce-id").to_owned());
        }
        let batched = batch.iter().filter(|e| e["ferryattempt"] == 1);
        first.extend(batched.filter_map(|e| e["id"].as_str().map(str::to_owned)));
    }
    first
}

#[test]
fn a_published_batch_reaches_batched_and_single_subscribers() {
    let (batched, single) = (
        Backend::subscriber("batched"),
        Backend::subscriber("single"),
    );
    let b = Node::builder("b")
        .service(Service::http("ledger", batched.address).health("/healthz"))
        .raw(&subscription("orders.>", "ledger", "batch = 50"));
    let c = subscribing("c", "audit", &single, "orders.>");
    let (app, _b, _c) = with_publisher(b, c, 2);

    let (entries, bodies): (Vec<Value>, Vec<String>) = (0..120).map(entry).unzip();
    let answer = publish_batch(&app, "orders.created", &Value::from(entries).to_string());
    assert_eq!(answer.status, 202, "{answer:?}");
    let answer: Value = serde_json::from_str(&answer.body).expect("a JSON answer");
    let published: Vec<String> = answer["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|id| id.as_str().expect("an id").to_owned())
        .collect();
    assert_eq!(published.len(), 120);
    assert_eq!(
        published.iter().collect::<BTreeSet<_>>().len(),
        120,
        "ids are distinct"
    );

    // Every message reaches each group. A copy more than the one is only ever a retry: a
    // delivery its service took but whose answer was lost (120 at once to one Python server
    // on a loaded machine can take longer than the delivery deadline).
    let want: BTreeSet<String> = published.iter().cloned().collect();
    eventually(Duration::from_secs(30), || {
        let (b, s) = (distinct(&batched), distinct(&single));
        match (b.len(), s.len()) {
            (120, 120) if b == want && s == want => Ok(()),
            (b, s) => Err(format!("batched has {b} of 120, single {s} of 120")),
        }
    });
    for subscriber in [&batched, &single] {
        let got = ids(subscriber);
        let first_tries = tried_first(subscriber);
        assert_eq!(
            first_tries.len(),
            first_tries.iter().collect::<BTreeSet<_>>().len(),
            "a message was sent twice as a first try"
        );
        assert!(got.len() < 130, "{} deliveries of 120 messages", got.len());
    }

    // The batched subscriber got batches of at most 50, more than one message in some.
    let deliveries = received(&batched);
    let sizes: Vec<usize> = deliveries.iter().map(|d| events(d).len()).collect();
    assert!(sizes.iter().all(|n| (1..=50).contains(n)), "{sizes:?}");
    assert!(
        sizes.iter().any(|n| *n > 1),
        "no delivery was a batch: {sizes:?}"
    );
    let delivery = &deliveries[0];
    assert_eq!(delivery["path"], "/events");
    assert_eq!(
        header(delivery, "content-type"),
        "application/cloudevents-batch+json"
    );
    // Batches may arrive in any order, as they are delivered side by side; within one, the
    // messages keep the order they were published in.
    let mut batch: Vec<(usize, Value)> = Vec::new();
    for delivery in &deliveries {
        let at = |e: &Value| published.iter().position(|id| e["id"] == id.as_str());
        let positions: Vec<usize> = events(delivery).iter().filter_map(at).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        batch.extend(positions.into_iter().zip(events(delivery)));
    }
    batch.sort_by_key(|(n, _)| *n);
    // A retried batch brings its messages again: each is checked once.
    batch.dedup_by_key(|(n, _)| *n);
    let batch: Vec<Value> = batch.into_iter().map(|(_, event)| event).collect();
    for (n, event) in batch.iter().enumerate() {
        assert_eq!(event["specversion"], "1.0", "{event}");
        assert_eq!(event["type"], "ferry.message");
        assert_eq!(event["source"], "app");
        assert_eq!(event["id"], published[n].as_str());
        assert_eq!(event["ferrytopic"], "orders.created");
        assert!(event["ferryattempt"].as_u64() >= Some(1), "{event}");
        assert!(
            event["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{event}"
        );
        assert_eq!(event_body(event), bodies[n], "{event}");
    }
    assert_eq!(batch[1]["datacontenttype"], "text/plain");
    assert_eq!(batch[2]["datacontenttype"], "application/x-hello");
    assert!(
        batch[0]["data"].is_object(),
        "JSON stays JSON: {}",
        batch[0]
    );

    // The group that takes one message at a time gets each in binary mode, bytes as sent.
    let by_id: Vec<(String, String, String)> = received(&single)
        .iter()
        .map(|d| {
            let body = d["body"].as_str().unwrap_or("").to_owned();
            let id = header(d, "ce-id").to_owned();
            (id, body, header(d, "content-type").to_owned())
        })
        .collect();
    for (n, id) in published.iter().enumerate() {
        let (_, body, content_type) = by_id.iter().find(|(i, ..)| i == id).expect("delivered");
        assert_eq!(body, &bodies[n]);
        let want = ["application/json", "text/plain", "application/x-hello"][n % 3];
        assert_eq!(content_type, want, "message {n}");
    }
    let accepted = metric(
        &app,
        "ferry_broker_published_total",
        &["result=\"accepted\""],
    );
    assert_eq!(accepted, Some(120.0));
}

#[test]
fn a_batch_is_retried_whole_and_dead_lettered_message_by_message() {
    let (flaky, doomed, dead) = (
        Backend::subscriber("flaky"),
        Backend::subscriber("doomed"),
        Backend::subscriber("dead"),
    );
    let b = Node::builder("b")
        .service(Service::http("flaky", flaky.address).health("/healthz"))
        .raw(&subscription("jobs.retried", "flaky", "batch = 10"));
    let c = Node::builder("c")
        .service(Service::http("doomed", doomed.address).health("/healthz"))
        .service(Service::http("dead", dead.address).health("/healthz"))
        .raw(&subscription(
            "jobs.doomed",
            "doomed",
            "batch = 10\ndead_letter = \"jobs.dead\"",
        ))
        .raw(&subscription("jobs.dead", "dead", ""));
    let (app, _b, _c) = with_publisher(b, c, 3);

    // A 503 is worth another try: the whole batch comes again, marked as try 2.
    answer_with(&flaky, 503, 0);
    let entries = Value::from((0..5).map(|n| json!({"data": n})).collect::<Vec<_>>());
    assert_eq!(
        publish_batch(&app, "jobs.retried", &entries.to_string()).status,
        202
    );
    eventually(Duration::from_secs(10), || match received(&flaky).len() {
        0 => Err("no try yet".to_owned()),
        _ => Ok(()),
    });
    answer_with(&flaky, 200, 0);
    eventually(Duration::from_secs(20), || {
        let acknowledged = received(&flaky)
            .iter()
            .filter(|d| d["status"] == 200)
            .flat_map(events)
            .count();
        match acknowledged {
            5 => Ok(()),
            n => Err(format!("{n} of 5 acknowledged")),
        }
    });
    let last = received(&flaky).pop().expect("a delivery");
    assert!(
        events(&last)
            .iter()
            .all(|e| e["ferryattempt"].as_u64() >= Some(2)),
        "{last}"
    );

    // A 422 cannot succeed: each message of the batch goes to the dead-letter topic at once.
    answer_with(&doomed, 422, 0);
    assert_eq!(
        publish_batch(&app, "jobs.doomed", &entries.to_string()).status,
        202
    );
    eventually(Duration::from_secs(20), || match ids(&dead).len() {
        5 => Ok(()),
        n => Err(format!("{n} of 5 dead-lettered")),
    });
    assert_eq!(received(&doomed).len(), 1, "tried once, as one batch");
    let letter = &received(&dead)[0];
    assert_eq!(header(letter, "ferry-dead-letter-topic"), "jobs.doomed");
    assert!(
        header(letter, "ferry-dead-letter-reason").contains("422"),
        "{letter}"
    );
}

#[test]
fn batched_deliveries_lose_nothing_when_a_member_is_killed_mid_stream() {
    let (on_b, mut on_c) = (
        Backend::subscriber("billing-b"),
        Backend::subscriber("billing-c"),
    );
    let b = Node::builder("b")
        .service(Service::http("billing", on_b.address).health("/healthz"))
        .raw(&subscription("orders.>", "billing", "batch = 20"));
    let c = Node::builder("c")
        .service(Service::http("billing", on_c.address).health("/healthz"))
        .raw(&subscription("orders.>", "billing", "batch = 20"));
    let (app, _b, _c) = with_publisher(b, c, 2);
    let published = publish_stream(&app, "orders.created", 300, 200, || on_c.kill());
    assert_eq!(published.len(), 300);
    assert_none_lost(&published, &[&on_b, &on_c]);
    assert!(!ids(&on_c).is_empty(), "c had a share before it died");
}

#[test]
fn bad_batches_get_clear_answers() {
    let node = Node::builder("solo")
        .raw("[broker]\nmax_message_bytes = \"1KiB\"\n")
        .start();
    support::wait_ready(&node);
    let refused = |body: &str, status: u16, error: &str, says: &str| {
        let answer = publish_batch(&node, "orders", body);
        assert_eq!(answer.status, status, "{body}: {answer:?}");
        assert_eq!(
            answer.header("ferry-error"),
            Some(error),
            "{body}: {answer:?}"
        );
        assert!(answer.body.contains(says), "{body}: {}", answer.body);
    };
    refused("{\"data\": 1}", 400, "bad-batch", "not a CloudEvents batch");
    refused(
        "[{\"data\": 1, \"id\": \"mine\"}]",
        400,
        "bad-batch",
        "unknown field `id`",
    );
    refused("[]", 400, "bad-batch", "no message");
    refused(
        "[{\"data_base64\": \"!!\"}]",
        400,
        "bad-batch",
        "data_base64",
    );
    let big = json!([{"data": "x".repeat(2000)}]).to_string();
    refused(&big, 413, "too-large", "larger than");
    let answer = publish_batch(&node, "orders.*", "[{\"data\": 1}]");
    assert_eq!(answer.status, 400);
    assert_eq!(answer.header("ferry-error"), Some("bad-topic"));
    // Nothing refused was taken.
    let taken = metric(
        &node,
        "ferry_broker_published_total",
        &["result=\"accepted\""],
    );
    assert_eq!(taken, None);
}
