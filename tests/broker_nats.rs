//! The `nats` broker against a real `nats-server` with JetStream: messages stored in NATS
//! outlive the node that took them, a NATS outage is a fast `503` that loses nothing answered
//! `202`, and retries and dead letters follow the subscribers' answers as with the mesh
//! broker. The nodes here are not even linked: NATS carries the messages. Needs no root.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::broker::{
    answer_with, header, ids, publish, published, received, subscribing, subscription,
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
        let got_set: BTreeSet<String> = got.iter().cloned().collect();
        if got_set == sent && got.len() == sent.len() {
            Ok(())
        } else {
            Err(format!(
                "{} deliveries of {} messages",
                got.len(),
                got_set.len()
            ))
        }
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
