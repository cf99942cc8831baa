//! Publish and subscribe through the mesh broker, with real parts: `curl`, `ferry publish` and
//! a Python publisher on the application side; subscribers that are real HTTP servers
//! (`tests/python/subscriber.py`) behind real nodes. Needs no root.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::Value;
use support::broker::{
    answer_with, assert_none_lost, header, ids, publish, publish_stream, published, received,
    subscribing, subscription, with_publisher,
};
use support::{curl, eventually, ferry, metric, wait_ready, Backend, Node, Service};

#[test]
fn a_message_reaches_one_member_of_every_matching_group() {
    let (billing_b, billing_c, audit) = (
        Backend::subscriber("billing-b"),
        Backend::subscriber("billing-c"),
        Backend::subscriber("audit"),
    );
    let b = subscribing("b", "billing", &billing_b, "orders.*");
    let c = subscribing("c", "billing", &billing_c, "orders.*")
        .service(Service::http("audit", audit.address).health("/healthz"))
        .raw(&subscription(">", "audit", ""));
    let (app, b, c) = with_publisher(b, c, 3);

    let traceparent = "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut published_ids = Vec::new();
    for n in 0..20 {
        let body = format!("{{\"order\": {n}}}");
        let headers = ["content-type: application/json", traceparent];
        let answer = publish(&app, "orders.created", &body, &headers);
        assert_eq!(answer.status, 202, "{answer:?}");
        let json: Value = serde_json::from_str(&answer.body).expect("JSON");
        published_ids.push(json["id"].as_str().expect("an id").to_owned());
    }
    eventually(Duration::from_secs(20), || {
        let (billing, audited) = (
            ids(&billing_b).len() + ids(&billing_c).len(),
            ids(&audit).len(),
        );
        if billing == 20 && audited == 20 {
            Ok(())
        } else {
            Err(format!(
                "billing has {billing} of 20, audit {audited} of 20"
            ))
        }
    });
    // Within the billing group each message went to one member, and both members had a share.
    let mut billing: Vec<String> = ids(&billing_b);
    billing.extend(ids(&billing_c));
    billing.sort();
    let mut want = published_ids.clone();
    want.sort();
    assert_eq!(billing, want, "each message once to the billing group");
    assert!(
        ids(&billing_b).len() >= 5 && ids(&billing_c).len() >= 5,
        "shared: b got {}, c got {}; attempts at b: {:?}",
        ids(&billing_b).len(),
        ids(&billing_c).len(),
        received(&billing_b)
            .iter()
            .map(|d| header(d, "ferry-attempt").to_owned())
            .collect::<Vec<_>>()
    );
    // What a subscriber sees: the body and content type as published, CloudEvents headers.
    let delivery = &received(&audit)[0];
    assert_eq!(delivery["path"], "/events");
    assert_eq!(delivery["body"], "{\"order\": 0}");
    assert_eq!(header(delivery, "content-type"), "application/json");
    assert_eq!(header(delivery, "ce-specversion"), "1.0");
    assert_eq!(header(delivery, "ce-id"), published_ids[0]);
    assert_eq!(header(delivery, "ce-source"), "app");
    assert_eq!(header(delivery, "ce-type"), "ferry.message");
    assert!(header(delivery, "ce-time").ends_with('Z'), "{delivery}");
    assert_eq!(header(delivery, "ferry-topic"), "orders.created");
    assert_eq!(header(delivery, "ferry-attempt"), "1");
    assert_eq!(
        header(delivery, "traceparent"),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );

    // Wildcards: `orders.*` is one token after `orders`; `>` anything.
    published(&app, "orders.created.late", "deep");
    published(&app, "payments.settled", "paid");
    // `ferry publish`, as a script would.
    let ran = ferry(
        &[
            "publish",
            "orders",
            "--data",
            "from the CLI",
            "--api",
            &app.api.to_string(),
        ],
        app.dir().path(),
    );
    assert!(ran.success(), "ferry publish: {ran:?}");
    eventually(Duration::from_secs(20), || match ids(&audit).len() {
        23 => Ok(()),
        n => Err(format!("audit has {n} of 23")),
    });
    let bodies: BTreeSet<String> = received(&audit)
        .iter()
        .filter_map(|d| d["body"].as_str().map(str::to_owned))
        .collect();
    for body in ["deep", "paid", "from the CLI"] {
        assert!(bodies.contains(body), "{body} missing from {bodies:?}");
    }
    assert_eq!(
        ids(&billing_b).len() + ids(&billing_c).len(),
        20,
        "billing matched no topic but orders.ONE"
    );

    // `ferry subscriptions` shows the mesh's subscriptions with their groups.
    let ran = ferry(
        &["subscriptions", "--admin", &app.admin.to_string()],
        app.dir().path(),
    );
    assert!(ran.success(), "{ran:?}");
    for text in ["TOPIC", "orders.*", "billing", "audit", "c"] {
        assert!(ran.stdout.contains(text), "{text}: {}", ran.stdout);
    }
    let accepted = metric(
        &app,
        "ferry_broker_published_total",
        &["result=\"accepted\""],
    );
    assert!(accepted.is_some(), "{}", app.admin_get("/metrics").body);
    drop((b, c));
}

#[test]
fn bad_publishes_get_clear_answers_and_unwanted_messages_are_counted() {
    let node = Node::builder("solo")
        .raw("[broker]\nmax_message_bytes = \"1KiB\"\n")
        .start();
    wait_ready(&node);
    let long_topic = "a".repeat(256);
    // '>' cannot stand in a URI: a client sends it percent-encoded, as curl is told to here.
    for topic in [
        "orders..created",
        "orders.*",
        "orders.%3E",
        ".orders",
        "or%2Aders",
        "%zz",
        &long_topic,
    ] {
        let answer = publish(&node, topic, "x", &[]);
        assert_eq!(answer.status, 400, "{topic}: {answer:?}");
        assert_eq!(answer.header("ferry-error"), Some("bad-topic"), "{topic}");
    }
    let big = "x".repeat(1025);
    let answer = publish(&node, "orders.created", &big, &[]);
    assert_eq!(answer.status, 413, "{answer:?}");
    let fits = "x".repeat(1024);
    assert_eq!(publish(&node, "orders.created", &fits, &[]).status, 202);

    let url = format!("http://{}/v1/publish/orders", node.api);
    assert_eq!(curl(&[&url]).status, 405, "GET is not a publish");
    let elsewhere = format!("http://{}/v1/other", node.api);
    assert_eq!(curl(&["-X", "POST", &elsewhere]).status, 404);

    // Nobody subscribes: taken, dropped, and counted, never silently.
    let dropped = metric(
        &node,
        "ferry_broker_published_total",
        &["topic=\"orders.created\"", "result=\"no-subscriber\""],
    );
    assert_eq!(dropped, Some(1.0), "{}", node.admin_get("/metrics").body);
    let lost = metric(
        &node,
        "ferry_broker_dropped_total",
        &["reason=\"no-subscriber\""],
    );
    assert_eq!(lost, Some(1.0));
    assert!(node.log().contains("message dropped"), "logged");
}

#[test]
fn failed_deliveries_are_retried_then_dead_lettered_or_dropped_by_their_answer() {
    let (flaky, gone, doomed, dead) = (
        Backend::subscriber("flaky"),
        Backend::subscriber("gone"),
        Backend::subscriber("doomed"),
        Backend::subscriber("dead"),
    );
    answer_with(&flaky, 503, 0);
    answer_with(&gone, 404, 0);
    answer_with(&doomed, 500, 0);
    let dead_letter = "dead_letter = \"jobs.dead\"";
    let node = Node::builder("solo")
        .service(Service::http("flaky", flaky.address))
        .service(Service::http("gone", gone.address))
        .service(Service::http("doomed", doomed.address))
        .service(Service::http("dead", dead.address))
        .raw(&subscription(
            "jobs.flaky",
            "flaky",
            &format!("max_attempts = 3\n{dead_letter}"),
        ))
        .raw(&subscription("jobs.gone", "gone", dead_letter))
        .raw(&subscription("jobs.doomed", "doomed", "max_attempts = 2"))
        .raw(&subscription("jobs.dead", "dead", ""))
        .start();
    wait_ready(&node);
    let flaky_id = published(&node, "jobs.flaky", "try me");
    let gone_id = published(&node, "jobs.gone", "no such thing");
    published(&node, "jobs.doomed", "never");

    // 503 is retried with backoff until the attempts are spent, then dead-lettered; 404 cannot
    // succeed and is dead-lettered at once.
    eventually(Duration::from_secs(20), || match received(&dead).len() {
        2 => Ok(()),
        n => Err(format!("{n} dead letters of 2")),
    });
    let attempts: Vec<String> = received(&flaky)
        .iter()
        .map(|d| format!("{}#{}", header(d, "ce-id"), header(d, "ferry-attempt")))
        .collect();
    assert_eq!(
        attempts,
        ["1", "2", "3"].map(|n| format!("{flaky_id}#{n}")),
        "three tries of one message"
    );
    assert_eq!(ids(&gone), [gone_id], "a 404 is not tried again");
    let letters: HashMap<String, String> = received(&dead)
        .iter()
        .map(|d| {
            let from = header(d, "ferry-dead-letter-topic").to_owned();
            (from, d["body"].as_str().unwrap_or("").to_owned())
        })
        .collect();
    assert_eq!(
        letters.get("jobs.flaky").map(String::as_str),
        Some("try me")
    );
    assert_eq!(
        letters.get("jobs.gone").map(String::as_str),
        Some("no such thing")
    );

    // Without a dead-letter topic, a message whose attempts are spent is dropped and counted.
    eventually(Duration::from_secs(20), || {
        let dropped = metric(
            &node,
            "ferry_broker_deliveries_total",
            &["topic=\"jobs.doomed\"", "result=\"dropped\""],
        );
        match dropped {
            Some(1.0) => Ok(()),
            other => Err(format!("dropped: {other:?}")),
        }
    });
    assert_eq!(received(&doomed).len(), 2, "two attempts");
    let dead_lettered = metric(
        &node,
        "ferry_broker_deliveries_total",
        &["topic=\"jobs.flaky\"", "result=\"dead-lettered\""],
    );
    assert_eq!(dead_lettered, Some(1.0));
}

/// Two members of one group behind two nodes, and a publishing node.
fn billing_pair() -> (Node, Node, Node, Backend, Backend) {
    let (on_b, on_c) = (
        Backend::subscriber("billing-b"),
        Backend::subscriber("billing-c"),
    );
    let b = subscribing("b", "billing", &on_b, "orders.>");
    let c = subscribing("c", "billing", &on_c, "orders.>");
    let (app, b, c) = with_publisher(b, c, 2);
    (app, b, c, on_b, on_c)
}

#[test]
fn a_subscriber_killed_mid_stream_loses_no_message() {
    let (app, _b, _c, on_b, mut on_c) = billing_pair();
    let published = publish_stream(&app, "orders.created", 150, 100, || on_c.kill());
    assert_eq!(published.len(), 150);
    assert_none_lost(&published, &[&on_b, &on_c]);
    assert!(!ids(&on_c).is_empty(), "c had a share before it died");
}

#[test]
fn a_subscribing_node_killed_mid_stream_loses_no_message() {
    let (app, _b, c, on_b, on_c) = billing_pair();
    let published = publish_stream(&app, "orders.created", 150, 100, || c.kill());
    assert_eq!(published.len(), 150);
    assert_none_lost(&published, &[&on_b, &on_c]);
    assert!(!ids(&on_c).is_empty(), "c had a share before it died");
}

#[test]
fn a_full_queue_refuses_publishers_with_429_until_it_drains() {
    let slow = Backend::subscriber("slow");
    answer_with(&slow, 200, 2000);
    let node = Node::builder("solo")
        .service(Service::http("slow", slow.address))
        .raw(&subscription("work", "slow", ""))
        .raw("[broker]\nmax_message_bytes = \"1KiB\"\nqueue_bytes = \"8KiB\"\n")
        .start();
    wait_ready(&node);
    let body = "x".repeat(1000);
    let mut accepted = 0;
    let refused = loop {
        let answer = publish(&node, "work", &body, &[]);
        if answer.status != 202 {
            break answer;
        }
        accepted += 1;
        assert!(
            accepted < 20,
            "8 KiB held {accepted} messages of 1000 bytes"
        );
    };
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.header("ferry-error"), Some("broker-full"));
    assert!(
        accepted >= 3,
        "only {accepted} taken before the queue was full"
    );
    let queued = metric(&node, "ferry_broker_queued_bytes", &[]).unwrap_or(0.0);
    assert!(
        queued <= 8192.0,
        "queued {queued} bytes over the 8 KiB limit"
    );

    // Once the subscriber catches up, publishers are served again and nothing taken was lost.
    answer_with(&slow, 200, 0);
    eventually(Duration::from_secs(30), || {
        match publish(&node, "work", &body, &[]).status {
            202 => Ok(()),
            status => Err(format!("still {status}")),
        }
    });
    eventually(Duration::from_secs(30), || match received(&slow).len() {
        n if n == accepted + 1 => Ok(()),
        n => Err(format!("{n} of {} delivered", accepted + 1)),
    });
}
