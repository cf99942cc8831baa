use std::time::Duration;

use super::*;
use crate::catalog::CatalogEntry;
use crate::header::Protocol;

fn catalog(name: &str, dc: &str, key: u8, gateway: bool, services: &[&str]) -> Catalog {
    Catalog {
        node: name.into(),
        datacenter: dc.into(),
        key: PublicKey([key; 32]),
        address: format!("10.0.0.{key}:7700"),
        gateway,
        subscriptions: Vec::new(),
        services: services
            .iter()
            .map(|s| CatalogEntry {
                service: s.to_string(),
                protocol: Protocol::Http,
                healthy: true,
            })
            .collect(),
    }
}

fn neighbor(c: &Catalog) -> Neighbor {
    Neighbor {
        key: c.key,
        datacenter: c.datacenter.clone(),
        gateway: c.gateway,
    }
}

fn hello(c: &Catalog) -> Update {
    Table::new(c.clone()).hello()
}

const MS: Duration = Duration::from_millis(1);

/// Links `table` to the node of catalog `c` and reads its hello.
/// Links `table` to the node of catalog `c` and reads its hello. The session is numbered
/// after the node's key byte.
fn link(table: &mut Table, c: &Catalog, rtt: Duration) -> Vec<Outgoing> {
    let id = id(c);
    let mut out = table.link_up(id, neighbor(c), rtt);
    out.extend(table.receive(id, hello(c)).expect("hello accepted"));
    out
}

fn id(c: &Catalog) -> SessionId {
    c.key.0[0] as SessionId
}

fn announce(c: &Catalog, path: &[&str], metric: u32) -> Update {
    Update::Announce(Advert {
        catalog: Arc::new(c.clone()),
        path: path.iter().map(|s| s.to_string()).collect(),
        metric,
    })
}

fn to(out: &[Outgoing], key: u8) -> Vec<&Update> {
    out.iter()
        .filter(|o| o.to == key as SessionId)
        .map(|o| &o.update)
        .collect()
}

#[test]
fn a_neighbor_announces_itself_and_its_link_down_withdraws_it() {
    let mut a = Table::new(catalog("a", "dc1", 1, false, &[]));
    let b = catalog("b", "dc1", 2, false, &["greeter"]);
    link(&mut a, &b, MS);
    let routes = a.lookup("Greeter", None);
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].via, None, "learned from the node itself");
    assert_eq!(routes[0].metric, MS);
    assert!(a.lookup("greeter", Some("dc2")).is_empty());
    a.link_down(id(&b));
    assert!(a.lookup("greeter", None).is_empty());
    assert!(a.is_empty());
    assert!(a.index.is_empty(), "nothing left in the index");
}

#[test]
fn link_up_sends_every_exported_route_then_synced() {
    let mut gw = Table::new(catalog("gw", "dc1", 1, true, &[]));
    let s1 = catalog("s1", "dc1", 2, false, &["greeter"]);
    let s2 = catalog("s2", "dc1", 3, false, &[]);
    link(&mut gw, &s1, MS);
    let out = link(&mut gw, &s2, MS);
    let sent = to(&out, 3);
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(sent[0], &gw.hello(), "its own catalog first");
    assert!(matches!(sent[1], Update::Announce(a) if a.catalog.key == s1.key));
    assert_eq!(sent[2], &Update::Synced);
    assert!(to(&out, 2)
        .iter()
        .any(|u| matches!(u, Update::Announce(a) if a.catalog.key == s2.key)));
}

#[test]
fn a_sidecar_announces_only_itself() {
    let mut a = Table::new(catalog("a", "dc1", 1, false, &[]));
    let b = catalog("b", "dc1", 2, false, &[]);
    let c = catalog("c", "dc1", 3, false, &["greeter"]);
    link(&mut a, &b, MS);
    assert_eq!(
        a.receive(id(&b), announce(&c, &["dc1"], 0)),
        Err(Refusal::NotAGateway)
    );
    assert!(a.lookup("greeter", None).is_empty());
    // Nor does a sidecar pass on what it learned.
    let mut b_table = Table::new(b.clone());
    link(&mut b_table, &c, MS);
    let out = link(&mut b_table, &catalog("a", "dc1", 1, false, &[]), MS);
    let updates: Vec<&Update> = out.iter().map(|o| &o.update).collect();
    assert_eq!(updates, [&b_table.hello(), &Update::Synced], "itself only");
}

#[test]
fn paths_that_crossed_this_datacenter_are_refused() {
    let mut gw = Table::new(catalog("gw1", "dc1", 1, true, &[]));
    let remote = catalog("gw2", "dc2", 2, true, &[]);
    link(&mut gw, &remote, MS);
    let far = catalog("x", "dc3", 9, false, &["greeter"]);
    assert_eq!(
        gw.receive(id(&remote), announce(&far, &["dc3", "DC1", "dc2"], 0)),
        Err(Refusal::Loop)
    );
    let ours = catalog("y", "dc1", 8, false, &["greeter"]);
    assert_eq!(
        gw.receive(id(&remote), announce(&ours, &["dc1", "dc2"], 0)),
        Err(Refusal::Loop)
    );
    assert_eq!(
        gw.receive(id(&remote), announce(&far, &["dc2"], 0)),
        Err(Refusal::BadPath)
    );
    assert_eq!(
        gw.receive(id(&remote), announce(gw.me().as_ref(), &["dc1"], 0)),
        Err(Refusal::Ourselves)
    );
    assert!(gw.is_empty() || gw.len() == 1, "only gw2 itself");
    assert!(!gw.knows("greeter"));
}

#[test]
fn gateways_reflect_client_routes_but_not_each_others() {
    let me = catalog("gw1", "dc1", 1, true, &[]);
    let peer_gw = catalog("gw1b", "dc1", 2, true, &[]);
    let client = catalog("s1", "dc1", 3, false, &["greeter"]);
    let other = catalog("s2", "dc1", 4, false, &[]);
    let mut gw = Table::new(me);
    link(&mut gw, &peer_gw, MS);
    link(&mut gw, &other, MS);
    let out = link(&mut gw, &client, MS);
    assert!(
        to(&out, 2)
            .iter()
            .any(|u| matches!(u, Update::Announce(a) if a.catalog.key == client.key)),
        "a client's route goes to the other gateway"
    );
    assert!(to(&out, 4)
        .iter()
        .any(|u| matches!(u, Update::Announce(a) if a.catalog.key == client.key)));
    // A route learned from the other gateway goes to clients, not back to gateways.
    let hidden = catalog("s3", "dc1", 5, false, &["billing"]);
    let out = gw
        .receive(id(&peer_gw), announce(&hidden, &["dc1"], 100))
        .expect("accepted");
    assert_eq!(to(&out, 4).len(), 1);
    assert!(to(&out, 2).is_empty(), "never echoed to its sender");
    let third_gw = catalog("gw1c", "dc1", 6, true, &[]);
    let out = link(&mut gw, &third_gw, MS);
    assert!(
        !to(&out, 6)
            .iter()
            .any(|u| matches!(u, Update::Announce(a) if a.catalog.key == hidden.key)),
        "not reflected to another gateway of the datacenter"
    );
}

#[test]
fn a_gateway_passes_its_datacenter_abroad_and_appends_itself_to_transit_paths() {
    let mut gw = Table::new(catalog("gw1", "dc1", 1, true, &[]));
    let client = catalog("s1", "dc1", 3, false, &["greeter"]);
    let dc2 = catalog("gw2", "dc2", 2, true, &[]);
    let dc3 = catalog("gw3", "dc3", 4, true, &[]);
    link(&mut gw, &client, MS);
    let out = link(&mut gw, &dc2, 10 * MS);
    let local = to(&out, 2)
        .into_iter()
        .find_map(|u| match u {
            Update::Announce(a) if a.catalog.key == client.key => Some(a.clone()),
            _ => None,
        })
        .expect("the client is announced abroad");
    assert_eq!(local.path, vec!["dc1"]);
    assert_eq!(local.metric, 1000, "the gateway's cost to its client");
    link(&mut gw, &dc3, 20 * MS);
    let far = catalog("x", "dc2", 9, false, &["billing"]);
    let out = gw
        .receive(id(&dc2), announce(&far, &["dc2"], 500))
        .expect("accepted");
    let transit = to(&out, 4);
    assert_eq!(transit.len(), 1);
    let Update::Announce(a) = transit[0] else {
        panic!("an announcement")
    };
    assert_eq!(a.path, vec!["dc2", "dc1"]);
    assert_eq!(a.metric, 10_500);
    let to_client = to(&out, 3);
    assert!(matches!(to_client[0], Update::Announce(a) if a.path == vec!["dc2"]));
    assert!(to(&out, 2).is_empty(), "not back to where it came from");
}

#[test]
fn the_cheapest_route_wins_and_small_rtt_changes_are_not_news() {
    let mut s = Table::new(catalog("s1", "dc1", 1, false, &[]));
    let g1 = catalog("g1", "dc1", 2, true, &[]);
    let g2 = catalog("g2", "dc1", 3, true, &[]);
    link(&mut s, &g1, MS);
    link(&mut s, &g2, 2 * MS);
    let far = catalog("x", "dc2", 9, false, &["greeter"]);
    s.receive(id(&g1), announce(&far, &["dc2"], 10_000))
        .expect("ok");
    s.receive(id(&g2), announce(&far, &["dc2"], 10_000))
        .expect("ok");
    assert_eq!(s.next_hop(&far.key), Some(g1.key));
    assert_eq!(s.lookup("greeter", None)[0].metric, 11 * MS);
    // A little jitter changes nothing; a big change moves the route.
    s.set_rtt(id(&g1), Duration::from_micros(1500));
    assert_eq!(s.lookup("greeter", None)[0].metric, 11 * MS);
    s.set_rtt(id(&g1), 5 * MS);
    assert_eq!(s.next_hop(&far.key), Some(g2.key));
    // Losing the gateway in use moves to the other at once.
    s.set_rtt(id(&g1), MS);
    assert_eq!(s.next_hop(&far.key), Some(g1.key));
    s.link_down(id(&g1));
    assert_eq!(s.next_hop(&far.key), Some(g2.key));
    s.link_down(id(&g2));
    assert_eq!(s.next_hop(&far.key), None);
    assert!(!s.knows("greeter"));
}

#[test]
fn a_node_reached_directly_is_preferred_to_a_relayed_offer() {
    let mut s = Table::new(catalog("s1", "dc1", 1, false, &[]));
    let g = catalog("g", "dc1", 2, true, &[]);
    let b = catalog("b", "dc1", 3, false, &["greeter"]);
    link(&mut s, &g, Duration::from_micros(50));
    s.receive(id(&g), announce(&b, &["dc1"], 50)).expect("ok");
    assert_eq!(s.lookup("greeter", None)[0].via, Some(g.key));
    link(&mut s, &b, 5 * MS);
    assert_eq!(s.lookup("greeter", None)[0].via, None);
    assert_eq!(s.next_hop(&b.key), Some(b.key));
}

#[test]
fn losing_the_best_route_withdraws_it_from_those_told() {
    let mut gw = Table::new(catalog("gw1", "dc1", 1, true, &[]));
    let client = catalog("s1", "dc1", 3, false, &[]);
    let dc2 = catalog("gw2", "dc2", 2, true, &[]);
    link(&mut gw, &client, MS);
    link(&mut gw, &dc2, MS);
    let far = catalog("x", "dc2", 9, false, &["greeter"]);
    gw.receive(id(&dc2), announce(&far, &["dc2"], 0))
        .expect("ok");
    let out = gw.link_down(id(&dc2));
    assert!(to(&out, 3).contains(&&Update::Withdraw(far.key)));
    assert!(to(&out, 3).contains(&&Update::Withdraw(dc2.key)));
    assert!(!gw.knows("greeter"));
}

#[test]
fn a_changed_catalog_is_announced_to_every_neighbor() {
    let me = catalog("s1", "dc1", 1, false, &[]);
    let mut s = Table::new(me.clone());
    link(&mut s, &catalog("g", "dc1", 2, true, &[]), MS);
    let out = s.set_local(catalog("s1", "dc1", 1, false, &["greeter"]));
    assert_eq!(out.len(), 1);
    assert!(matches!(&out[0].update, Update::Announce(a) if a.catalog.fronts("greeter")));
    assert!(s
        .set_local(catalog("s1", "dc1", 1, false, &["greeter"]))
        .is_empty());
}

#[test]
fn a_certificate_limits_a_node_to_the_services_it_names() {
    let node = catalog(
        "web-1",
        "dc1",
        9,
        false,
        &["greeter", "billing", "Greeter-Admin"],
    );
    let advert = Advert {
        catalog: Arc::new(node),
        path: vec!["dc1".into()],
        metric: 0,
    };
    let (kept, refused) =
        rules::permitted(advert.clone(), &["GREETER".into(), "greeter-admin".into()]);
    let names: Vec<_> = kept.catalog.services.iter().map(|s| &s.service).collect();
    assert_eq!(
        names,
        ["greeter", "Greeter-Admin"],
        "names match without case"
    );
    assert_eq!(refused, ["billing"]);
    let (all, none) = rules::permitted(
        advert.clone(),
        &["greeter".into(), "billing".into(), "greeter-admin".into()],
    );
    assert_eq!((all, none.len()), (advert, 0));
}
