//! The `nats` broker against a real `nats-server` with JetStream: messages stored in NATS
//! outlive the node that took them, a NATS outage is a fast `503` that loses nothing answered
//! `202`, and retries and dead letters follow the subscribers' answers as with the mesh
//! broker. The nodes here are not even linked: NATS carries the messages. Needs no root.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::broker::{
    answer_with, events, header, ids, publish, publish_batch, published, received, subscribing,
    subscription,
};
use support::nats::NatsServer;
use support::{eventually, wait_ready, Backend, Node, Service};

/// Waits until the node's broker has reached NATS: a publish on a topic nobody subscribes to
/// is answered 202.
fn wait_connected(node: &Node) {
    eventually(Duration::from_secs(20), || {
        match publish(node, "warm.up", "", &[]).status {
            202 => Ok(()),
            status => Err(format!("publish answered {status}")),
        }
    });
}

/// Whether the ids delivered, `got`, are those `sent`, each once.
fn once_each(got: &[String], sent: &BTreeSet<String>) -> Result<(), String> {
    let distinct: BTreeSet<&String> = got.iter().collect();
    if distinct.len() == got.len() && distinct.into_iter().eq(sent.iter()) {
        Ok(())
    } else {
        Err(format!(
            "{} deliveries of {} messages",
            got.len(),
            sent.len()
        ))
    }
}

/// The deliveries of message `id` a subscriber answered 200.
fn acknowledged(subscriber: &Backend, id: &str) -> usize {
    received(subscriber)
        .iter()
        .filter(|d| header(d, "ce-id") == id && d["status"] == 200)
        .count()
}

#[test]
fn messages_go_through_jetstream_and_outlive_the_node_that_took_them() {
    let nats = NatsServer::start();
    let (on_b, on_c) = (
        Backend::subscriber("billing-b"),
        Backend::subscriber("billing-c"),
    );
    let app = Node::builder("app").raw(&nats.broker_config()).start();
    let b = subscribing("b", "billing", &on_b, "orders.>")
        .raw(&nats.broker_config())
        .start();
    let c = subscribing("c", "billing", &on_c, "orders.>")
        .raw(&nats.broker_config())
        .start();
    for node in [&app, &b, &c] {
        wait_ready(node);
        wait_connected(node);
    }
    // Each of 20 messages reaches the group once.
    let sent: BTreeSet<String> = (0..20)
        .map(|n| published(&app, "orders.created", &format!("m{n}")))
        .collect();
    eventually(Duration::from_secs(20), || {
        let mut got = ids(&on_b);
        got.extend(ids(&on_c));
        once_each(&got, &sent)
    });
    let delivery = &received(&on_b)
        .into_iter()
        .chain(received(&on_c))
        .next()
        .expect("one");
    assert_eq!(header(delivery, "ce-source"), "app");
    assert_eq!(header(delivery, "ferry-topic"), "orders.created");

    // Both members failing: the message waits in NATS while its publisher dies, and reaches
    // the group once a member takes it.
    answer_with(&on_b, 503, 0);
    answer_with(&on_c, 503, 0);
    let id = published(&app, "orders.paid", "kept");
    app.kill();
    eventually(Duration::from_secs(20), || {
        let tries = received(&on_b).len() + received(&on_c).len();
        match tries > 20 {
            true => Ok(()),
            false => Err("not tried yet".to_owned()),
        }
    });
    answer_with(&on_c, 200, 0);
    eventually(Duration::from_secs(30), || match acknowledged(&on_c, &id) {
        1 => Ok(()),
        n => Err(format!("{n} acknowledged deliveries")),
    });
    let attempts: Vec<String> = received(&on_b)
        .into_iter()
        .chain(received(&on_c))
        .filter(|d| header(d, "ce-id") == id)
        .map(|d| header(&d, "ferry-attempt").to_owned())
        .collect();
    assert!(attempts.len() >= 2, "retried with backoff: {attempts:?}");
    drop((b, c));
}

#[test]
fn nats_down_is_a_fast_503_and_nothing_answered_202_is_lost() {
    let mut nats = NatsServer::start();
    let subscriber = Backend::subscriber("work");
    let node = subscribing("solo", "work", &subscriber, "jobs.*")
        .raw(&nats.broker_config())
        .start();
    wait_ready(&node);
    wait_connected(&node);
    // Held in NATS: the subscriber fails it until NATS has been down and back.
    answer_with(&subscriber, 503, 0);
    let before = published(&node, "jobs.before", "stored before the outage");

    nats.stop();
    let refused = Instant::now();
    let answer = eventually(Duration::from_secs(10), || {
        let answer = publish(&node, "jobs.during", "x", &[]);
        match answer.status {
            503 => Ok(answer),
            status => Err(format!("still {status}")),
        }
    });
    assert_eq!(answer.header("ferry-error"), Some("broker-unavailable"));
    let asked = Instant::now();
    let again = publish(&node, "jobs.during", "x", &[]);
    assert_eq!(again.status, 503);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "a publish while NATS is down took {:?}",
        asked.elapsed()
    );
    println!(
        "publishes refused {:?} after NATS stopped",
        refused.elapsed()
    );

    nats.start_again();
    answer_with(&subscriber, 200, 0);
    wait_connected(&node);
    let after = published(&node, "jobs.after", "after the outage");
    eventually(Duration::from_secs(30), || {
        match (
            acknowledged(&subscriber, &before),
            acknowledged(&subscriber, &after),
        ) {
            (1, 1) => Ok(()),
            other => Err(format!("acknowledged (before, after): {other:?}")),
        }
    });
    assert!(ids(&subscriber).iter().all(|i| *i == before || *i == after));
}

#[test]
fn answers_that_cannot_succeed_are_dead_lettered_through_nats() {
    let nats = NatsServer::start();
    let (gone, dead) = (Backend::subscriber("gone"), Backend::subscriber("dead"));
    answer_with(&gone, 404, 0);
    let node = Node::builder("solo")
        .service(Service::http("gone", gone.address))
        .service(Service::http("dead", dead.address))
        .raw(&subscription(
            "jobs.gone",
            "gone",
            "dead_letter = \"jobs.dead\"",
        ))
        .raw(&subscription("jobs.dead", "dead", ""))
        .raw(&nats.broker_config())
        .start();
    wait_ready(&node);
    wait_connected(&node);
    let id = published(&node, "jobs.gone", "nobody home");
    eventually(Duration::from_secs(20), || match received(&dead).len() {
        1 => Ok(()),
        n => Err(format!("{n} dead letters")),
    });
    let letter = &received(&dead)[0];
    assert_eq!(letter["body"], "nobody home");
    assert_eq!(header(letter, "ferry-dead-letter-topic"), "jobs.gone");
    assert_eq!(ids(&gone), [id], "a 404 is not tried again");
}

#[test]
fn batches_are_stored_whole_and_delivered_in_batches() {
    let nats = NatsServer::start();
    let ledger = Backend::subscriber("ledger");
    let app = Node::builder("app").raw(&nats.broker_config()).start();
    let b = Node::builder("b")
        .service(Service::http("ledger", ledger.address).health("/healthz"))
        .raw(&subscription("orders.>", "ledger", "batch = 25"))
        .raw(&nats.broker_config())
        .start();
    for node in [&app, &b] {
        wait_ready(node);
        wait_connected(node);
    }
    let entries: Vec<serde_json::Value> = (0..60)
        .map(|n| serde_json::json!({"data": format!("m{n}")}))
        .collect();
    let answer = publish_batch(
        &app,
        "orders.created",
        &serde_json::Value::from(entries).to_string(),
    );
    assert_eq!(answer.status, 202, "{answer:?}");
    let answer: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON");
    let sent: BTreeSet<String> = answer["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect();
    assert_eq!(sent.len(), 60);
    eventually(Duration::from_secs(20), || once_each(&ids(&ledger), &sent));
    // Every delivery is a batch of at most 25, the messages' text as published.
    for delivery in received(&ledger) {
        let batch = events(&delivery);
        assert!((1..=25).contains(&batch.len()), "{delivery}");
        for event in batch {
            assert!(
                event["data"].as_str().is_some_and(|d| d.starts_with('m')),
                "{event}"
            );
            assert_eq!(event["ferrytopic"], "orders.created");
        }
    }
}
