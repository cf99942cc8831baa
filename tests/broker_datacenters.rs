//! The mesh broker across datacenters, in network namespaces: dc1 and dc2 are LANs joined by
//! a WAN that only their gateways touch. Subscriptions travel through the gateways as
//! services do; a message goes to a group's member in the publisher's datacenter first, else
//! to the nearest datacenter that has one. Needs root and `ip` (iproute2).

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::broker::{self, published, subscription};
use support::lab::Lab;
use support::mesh::{one_at_a_time, MeshPlan};
use support::{eventually, wait_ready, Backend, Node, Service};

/// The ids of the messages a subscriber received, as a set.
fn ids(subscriber: &Backend) -> BTreeSet<String> {
    broker::ids(subscriber).into_iter().collect()
}

/// The subscriptions `node` knows, as `GROUP@DATACENTER` sorted.
fn known(node: &Node) -> Vec<String> {
    let rows = node.admin_json("/subscriptions");
    let mut known: Vec<String> = rows
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{}@{}",
                r["group"].as_str().unwrap_or("?"),
                r["datacenter"].as_str().unwrap_or("?")
            )
        })
        .collect();
    known.sort();
    known
}

#[test]
fn messages_cross_datacenters_to_groups_that_have_no_local_member() {
    let _serial = one_at_a_time();
    let mut lab = Lab::new();
    for network in ["lan1", "lan2", "wan"] {
        lab.network(network);
    }
    let app_host = lab.host("app", &["lan1"]);
    let sub1_host = lab.host("sub1", &["lan1"]);
    let sub2_host = lab.host("sub2", &["lan2"]);
    let gw1 = lab.host("dc1-gw", &["lan1", "wan"]);
    let gw2 = lab.host("dc2-gw", &["lan2", "wan"]);
    let mut billing1 = Backend::subscriber_in(sub1_host.netns(), "billing-dc1");
    let billing2 = Backend::subscriber_in(sub2_host.netns(), "billing-dc2");
    let ledger2 = Backend::subscriber_in(sub2_host.netns(), "ledger-dc2");

    let mut plan = MeshPlan::new();
    plan.gateway(&gw1, "dc1", "lan1");
    plan.gateway(&gw2, "dc2", "lan2");
    let app = plan.sidecar(&app_host, "dc1");
    let sub1 = plan
        .sidecar(&sub1_host, "dc1")
        .service(Service::http("billing", billing1.address).health("/healthz"))
        .raw(&subscription("orders.>", "billing", ""));
    let sub2 = plan
        .sidecar(&sub2_host, "dc2")
        .service(Service::http("billing", billing2.address).health("/healthz"))
        .service(Service::http("ledger", ledger2.address).health("/healthz"))
        .raw(&subscription("orders.>", "billing", ""))
        .raw(&subscription("orders.*", "ledger", ""));
    let gateways = plan.start_gateways();
    let (app, sub1, sub2) = (app.start(), sub1.start(), sub2.start());
    for node in gateways.iter().chain([&app, &sub1, &sub2]) {
        wait_ready(node);
    }
    // dc2's subscriptions reach dc1 through the gateways.
    let want = ["billing@dc1", "billing@dc2", "ledger@dc2"].map(str::to_owned);
    eventually(Duration::from_secs(20), || match known(&app) {
        k if k == want => Ok(()),
        k => Err(format!("app knows {k:?}")),
    });

    // billing has a member in dc1: every message stays there; ledger's only member is in dc2.
    let first: BTreeSet<String> = (0..10)
        .map(|n| published(&app, "orders.created", &format!("m{n}")))
        .collect();
    eventually(Duration::from_secs(20), || {
        let (b1, l2) = (ids(&billing1), ids(&ledger2));
        if b1 == first && l2 == first {
            Ok(())
        } else {
            Err(format!(
                "billing in dc1 has {} of 10, ledger in dc2 {} of 10",
                b1.len(),
                l2.len()
            ))
        }
    });
    assert!(
        ids(&billing2).is_empty(),
        "billing in dc2 got {:?}",
        ids(&billing2)
    );

    // dc1's billing member goes: billing's messages now cross to dc2.
    billing1.kill();
    let second: BTreeSet<String> = (0..10)
        .map(|n| published(&app, "orders.paid", &format!("p{n}")))
        .collect();
    eventually(Duration::from_secs(30), || {
        let got = ids(&billing2);
        match second.is_subset(&got) {
            true => Ok(()),
            false => Err(format!(
                "billing in dc2 has {} of 10",
                second.intersection(&got).count()
            )),
        }
    });

    // A subscriber that goes away is withdrawn as fast as it was announced.
    let stopped = Instant::now();
    sub2.kill();
    eventually(Duration::from_secs(5), || match known(&app) {
        k if k == ["billing@dc1"] => Ok(()),
        k => Err(format!("app still knows {k:?}")),
    });
    let withdrawn = stopped.elapsed();
    println!("dc2's subscriptions withdrawn from app {withdrawn:?} after sub2 was killed");
}
