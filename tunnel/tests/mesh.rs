//! Whole meshes simulated through the route table alone: no sockets, no clock but the order
//! of messages. Each link carries updates in order, as a QUIC stream does; a cut link loses
//! what was in flight. These tests check the rules at a scale and with failures that real
//! processes could not reach quickly: partitions, flaps, loops, 1,000 nodes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ferry_tunnel::{
    Catalog, CatalogEntry, Neighbor, Outgoing, Protocol, PublicKey, SessionId, Table, Update,
};

struct Session {
    owner: usize,
    peer: usize,
    peer_session: SessionId,
}

#[derive(Default)]
struct Sim {
    nodes: Vec<Table>,
    sessions: HashMap<SessionId, Session>,
    links: HashMap<(usize, usize), (SessionId, SessionId)>,
    queue: VecDeque<(SessionId, Update)>,
    next_session: SessionId,
    /// Updates delivered so far.
    steps: u64,
}

fn key(n: usize) -> PublicKey {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&(n as u64 + 1).to_be_bytes());
    PublicKey(k)
}

impl Sim {
    fn add(&mut self, name: &str, dc: &str, gateway: bool, services: &[String]) -> usize {
        let n = self.nodes.len();
        self.nodes.push(Table::new(Catalog {
            node: name.into(),
            datacenter: dc.into(),
            key: key(n),
            address: String::new(),
            gateway,
            subscriptions: Vec::new(),
            services: services
                .iter()
                .map(|s| CatalogEntry {
                    service: s.clone(),
                    protocol: Protocol::Http,
                    healthy: true,
                })
                .collect(),
        }));
        n
    }

    fn neighbor(&self, n: usize) -> Neighbor {
        let me = self.nodes[n].me();
        Neighbor {
            key: me.key,
            datacenter: me.datacenter.clone(),
            gateway: me.gateway,
        }
    }

    fn link(&mut self, a: usize, b: usize, rtt: Duration) {
        let (sa, sb) = (self.next_session, self.next_session + 1);
        self.next_session += 2;
        self.sessions.insert(
            sa,
            Session {
                owner: a,
                peer: b,
                peer_session: sb,
            },
        );
        self.sessions.insert(
            sb,
            Session {
                owner: b,
                peer: a,
                peer_session: sa,
            },
        );
        self.links.insert((a.min(b), a.max(b)), (sa, sb));
        for (me, them, session) in [(a, b, sa), (b, a, sb)] {
            let hello = self.nodes[them].hello();
            let neighbor = self.neighbor(them);
            let mut out = self.nodes[me].link_up(session, neighbor, rtt);
            out.extend(self.nodes[me].receive(session, hello).expect("hello"));
            self.send(out);
        }
    }

    fn cut(&mut self, a: usize, b: usize) {
        let Some((sa, sb)) = self.links.remove(&(a.min(b), a.max(b))) else {
            return;
        };
        // What was in flight on the link is lost with it.
        self.queue.retain(|(to, _)| *to != sa && *to != sb);
        for s in [sa, sb] {
            let owner = self.sessions.remove(&s).expect("session").owner;
            let out = self.nodes[owner].link_down(s);
            self.send(out);
        }
    }

    fn isolate(&mut self, n: usize) {
        let linked: Vec<(usize, usize)> = self
            .links
            .keys()
            .filter(|(a, b)| *a == n || *b == n)
            .copied()
            .collect();
        for (a, b) in linked {
            self.cut(a, b);
        }
    }

    fn send(&mut self, out: Vec<Outgoing>) {
        for o in out {
            let peer_session = self.sessions[&o.to].peer_session;
            self.queue.push_back((peer_session, o.update));
        }
    }

    /// Delivers updates until none is left; returns how many were delivered.
    fn run(&mut self) -> u64 {
        let start = self.steps;
        while let Some((to, update)) = self.queue.pop_front() {
            let Some(session) = self.sessions.get(&to) else {
                continue;
            };
            let owner = session.owner;
            if let Ok(out) = self.nodes[owner].receive(to, update) {
                self.send(out);
            }
            self.steps += 1;
        }
        self.steps - start
    }

    /// The nodes a packet from `from` to `to` crosses, following each node's next hop.
    fn walk(&self, from: usize, to: usize) -> Option<Vec<usize>> {
        let target = key(to);
        let mut at = from;
        let mut seen = vec![from];
        while at != to {
            let hop = self.nodes[at].next_hop(&target)?;
            let next = self
                .sessions
                .values()
                .find(|s| s.owner == at && self.nodes[s.peer].me().key == hop)?
                .peer;
            assert!(!seen.contains(&next), "loop: {seen:?} then {next}");
            seen.push(next);
            at = next;
        }
        Some(seen)
    }

    fn knows(&self, n: usize, service: &str) -> Vec<String> {
        self.nodes[n]
            .lookup(service, None)
            .into_iter()
            .map(|r| r.datacenter)
            .collect()
    }
}

const LAN: Duration = Duration::from_micros(200);
const WAN: Duration = Duration::from_millis(20);

/// Datacenters of two gateways (linked to each other) and `sidecars` sidecars linked to
/// both; the gateways of different datacenters fully meshed. Returns each datacenter's
/// gateways and sidecars.
fn mesh(
    sim: &mut Sim,
    dcs: usize,
    sidecars: usize,
    services: impl Fn(usize, usize) -> Vec<String>,
) -> Vec<(Vec<usize>, Vec<usize>)> {
    let mut layout = Vec::new();
    for d in 0..dcs {
        let dc = format!("dc{}", d + 1);
        let gws = vec![
            sim.add(&format!("{dc}-gw-a"), &dc, true, &[]),
            sim.add(&format!("{dc}-gw-b"), &dc, true, &[]),
        ];
        sim.link(gws[0], gws[1], LAN);
        let mut sides = Vec::new();
        for s in 0..sidecars {
            let n = sim.add(&format!("{dc}-s{s}"), &dc, false, &services(d, s));
            for &g in &gws {
                sim.link(n, g, LAN);
            }
            sides.push(n);
        }
        layout.push((gws, sides));
    }
    for a in 0..dcs {
        for b in a + 1..dcs {
            for &ga in &layout[a].0 {
                for &gb in &layout[b].0 {
                    sim.link(ga, gb, WAN * (a + b) as u32);
                }
            }
        }
    }
    layout
}

fn greeter_in_dc2_and_dc3(d: usize, s: usize) -> Vec<String> {
    let mut services = vec![format!("svc-{d}-{s}")];
    if d > 0 && s == 0 {
        services.push("greeter".into());
    }
    services
}

#[test]
fn three_datacenters_converge_and_packets_cross_gateways_without_loops() {
    let mut sim = Sim::default();
    let layout = mesh(&mut sim, 3, 3, greeter_in_dc2_and_dc3);
    let steps = sim.run();
    println!("converged in {steps} updates");
    let total = sim.nodes.len();
    for n in 0..total {
        assert_eq!(sim.nodes[n].len(), total - 1, "node {n} knows every other");
    }
    let dc1_sidecar = layout[0].1[0];
    let dc3_greeter = layout[2].1[0];
    let path = sim.walk(dc1_sidecar, dc3_greeter).expect("a path");
    assert_eq!(
        path.len(),
        4,
        "sidecar, gateway, gateway, sidecar: {path:?}"
    );
    assert!(sim.nodes[path[1]].me().gateway && sim.nodes[path[2]].me().gateway);
    // dc2 is nearer to dc1 than dc3 is: the table says so.
    let routes = sim.nodes[dc1_sidecar].lookup("greeter", None);
    let dc2 = routes.iter().find(|r| r.datacenter == "dc2").expect("dc2");
    let dc3 = routes.iter().find(|r| r.datacenter == "dc3").expect("dc3");
    assert!(
        dc2.metric < dc3.metric,
        "{:?} vs {:?}",
        dc2.metric,
        dc3.metric
    );
}

#[test]
fn a_partitioned_datacenter_is_withdrawn_and_returns_when_healed() {
    let mut sim = Sim::default();
    let layout = mesh(&mut sim, 3, 2, greeter_in_dc2_and_dc3);
    sim.run();
    let watcher = layout[0].1[1];
    assert_eq!(sim.knows(watcher, "greeter").len(), 2);
    let wan: Vec<(usize, usize)> = sim
        .links
        .keys()
        .filter(|(a, b)| layout[2].0.contains(a) != layout[2].0.contains(b))
        .filter(|(a, b)| sim.nodes[*a].me().gateway && sim.nodes[*b].me().gateway)
        .copied()
        .collect();
    for (a, b) in &wan {
        sim.cut(*a, *b);
    }
    let steps = sim.run();
    println!("withdrawn in {steps} updates");
    assert_eq!(sim.knows(watcher, "greeter"), ["dc2"]);
    // Inside the cut-off datacenter, local routes still stand.
    let inside = layout[2].1[1];
    assert_eq!(sim.knows(inside, "greeter"), ["dc3"]);
    assert!(sim.nodes[inside].lookup("svc-0-0", None).is_empty());
    for (a, b) in wan {
        sim.link(a, b, WAN);
    }
    sim.run();
    assert_eq!(sim.knows(watcher, "greeter").len(), 2);
    assert_eq!(sim.knows(inside, "svc-0-0"), ["dc1"]);
}

#[test]
fn a_ring_of_datacenters_carries_transit_and_refuses_loops() {
    let mut sim = Sim::default();
    let gw: Vec<usize> = (1..=3)
        .map(|d| sim.add(&format!("gw{d}"), &format!("dc{d}"), true, &[]))
        .collect();
    let svc: Vec<usize> = (1..=3)
        .map(|d| {
            let n = sim.add(
                &format!("s{d}"),
                &format!("dc{d}"),
                false,
                &[format!("svc{d}")],
            );
            sim.link(n, gw[d - 1], LAN);
            n
        })
        .collect();
    sim.link(gw[0], gw[1], WAN);
    sim.link(gw[1], gw[2], WAN);
    sim.link(gw[2], gw[0], WAN);
    sim.run();
    assert_eq!(sim.walk(svc[0], svc[2]).expect("direct").len(), 4);
    sim.cut(gw[2], gw[0]);
    sim.run();
    let path = sim.walk(svc[0], svc[2]).expect("through dc2");
    assert_eq!(path, vec![svc[0], gw[0], gw[1], gw[2], svc[2]]);
    let route = &sim.nodes[svc[0]].lookup("svc3", None)[0];
    assert_eq!(
        route.metric,
        LAN * 2 + WAN * 2,
        "costs add up along the path"
    );
}

#[test]
fn losing_one_gateway_keeps_every_route() {
    let mut sim = Sim::default();
    let layout = mesh(&mut sim, 2, 3, greeter_in_dc2_and_dc3);
    sim.run();
    let client = layout[0].1[0];
    let far = layout[1].1[0];
    let first = sim.walk(client, far).expect("path")[1];
    sim.isolate(first);
    sim.run();
    let path = sim.walk(client, far).expect("still a path");
    assert!(!path.contains(&first));
    assert_eq!(sim.knows(client, "greeter"), ["dc2"]);
}

#[test]
fn flapping_links_settle_where_a_fresh_mesh_would() {
    let mut sim = Sim::default();
    let layout = mesh(&mut sim, 3, 2, greeter_in_dc2_and_dc3);
    sim.run();
    let snapshot = |sim: &Sim| -> Vec<Vec<(String, String)>> {
        sim.nodes
            .iter()
            .map(|t| {
                t.routes()
                    .into_iter()
                    .map(|r| (r.service, r.node))
                    .collect()
            })
            .collect()
    };
    let settled = snapshot(&sim);
    let (a, b) = (layout[0].0[0], layout[1].0[1]);
    let (c, d) = (layout[2].1[0], layout[2].0[0]);
    for round in 0..50 {
        sim.cut(a, b);
        if round % 3 == 0 {
            sim.cut(c, d);
        }
        // Half the time the link returns before the withdrawals have spread.
        if round % 2 == 0 {
            sim.run();
        }
        sim.link(a, b, WAN);
        if round % 3 == 0 {
            sim.link(c, d, LAN);
        }
    }
    sim.run();
    assert_eq!(snapshot(&sim), settled);
}

#[test]
fn a_sidecar_cannot_speak_for_others() {
    let mut sim = Sim::default();
    let gw = sim.add("gw", "dc1", true, &[]);
    let liar = sim.add("liar", "dc1", false, &[]);
    let victim = sim.add("victim", "dc1", false, &[]);
    sim.link(gw, liar, LAN);
    sim.link(gw, victim, LAN);
    sim.run();
    let session = sim
        .sessions
        .iter()
        .find(|(_, s)| s.owner == gw && s.peer == liar)
        .map(|(id, _)| *id)
        .expect("session");
    let forged = Update::Announce(ferry_tunnel::Advert {
        catalog: Arc::new(Catalog {
            node: "payments".into(),
            datacenter: "dc1".into(),
            key: key(99),
            address: "10.9.9.9:7700".into(),
            gateway: false,
            subscriptions: Vec::new(),
            services: vec![CatalogEntry {
                service: "payments".into(),
                protocol: Protocol::Http,
                healthy: true,
            }],
        }),
        path: vec!["dc1".into()],
        metric: 0,
    });
    assert!(sim.nodes[gw].receive(session, forged).is_err());
    sim.run();
    assert!(sim.knows(victim, "payments").is_empty());
}

/// 1,000 nodes and 10,000 services: ten datacenters of two gateways and 98 sidecars, each
/// sidecar fronting about ten services.
#[test]
fn a_thousand_nodes_and_ten_thousand_services_converge() {
    let mut sim = Sim::default();
    let layout = mesh(&mut sim, 10, 98, |d, s| {
        let count = if s < 20 { 11 } else { 10 };
        (0..count).map(|i| format!("svc-{d}-{s}-{i}")).collect()
    });
    let steps = sim.run();
    let services: HashSet<String> = sim.nodes[layout[0].1[0]]
        .routes()
        .into_iter()
        .map(|r| r.service)
        .collect();
    println!(
        "1,000 nodes: converged in {steps} updates ({:.0} per node); {} services",
        steps as f64 / sim.nodes.len() as f64,
        services.len() + 11
    );
    assert_eq!(sim.nodes.len(), 1000);
    for n in [layout[0].1[0], layout[9].0[1], layout[5].1[97]] {
        assert_eq!(sim.nodes[n].len(), 999);
    }
    assert!(services.len() + 11 >= 10_000, "{}", services.len());
    let path = sim.walk(layout[0].1[0], layout[9].1[97]).expect("path");
    assert_eq!(path.len(), 4);
}
