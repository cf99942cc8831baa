//! The per-call decisions: which nodes front a service (route lookup) and which endpoint
//! gets the call (power of two choices over peak-EWMA).

use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ferry_proxy::balance::PeakEwma;
use ferry_proxy::{Endpoint, EndpointId, Target};
use ferry_tunnel::{Advert, Catalog, CatalogEntry, Neighbor, Protocol, PublicKey, Table, Update};
use std::hint::black_box;

/// 10,000 services: 200 nodes in 4 datacenters, each fronting 50 services of its own, as a
/// sidecar of dc0 learns them from its gateway.
fn table_of_10k() -> Table {
    let catalog = |name: String, dc: &str, key: PublicKey, gateway: bool| Catalog {
        node: name,
        datacenter: dc.into(),
        key,
        address: String::new(),
        gateway,
        subscriptions: Vec::new(),
        services: Vec::new(),
    };
    let mut table = Table::new(catalog("me".into(), "dc0", PublicKey([0xff; 32]), false));
    let gateway = Neighbor {
        key: PublicKey([0xfe; 32]),
        datacenter: "dc0".into(),
        gateway: true,
    };
    table.link_up(1, gateway, std::time::Duration::from_micros(100));
    for node in 0..200u32 {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&node.to_be_bytes());
        let dc = format!("dc{}", node % 4);
        let advert = Advert {
            catalog: std::sync::Arc::new(Catalog {
                subscriptions: Vec::new(),
                services: (0..50)
                    .map(|s| CatalogEntry {
                        service: format!("svc-{node:03}-{s:02}"),
                        protocol: Protocol::Http,
                        healthy: true,
                    })
                    .collect(),
                ..catalog(format!("node-{node:03}"), &dc, PublicKey(key), false)
            }),
            path: vec![dc],
            metric: 1000,
        };
        table
            .receive(1, Update::Announce(advert))
            .expect("the gateway's routes are accepted");
    }
    table
}

fn route_lookup(c: &mut Criterion) {
    let table = table_of_10k();
    // A lookup that found nothing would look fast: check what it finds before timing it.
    assert_eq!(table.lookup("svc-123-45", None).len(), 1);
    assert_eq!(table.lookup("svc-123-45", Some("dc3")).len(), 1);
    let mut group = c.benchmark_group("route_lookup_10k_services");
    group.bench_function("any_datacenter", |b| {
        b.iter(|| table.lookup(black_box("svc-123-45"), None))
    });
    group.bench_function("pinned_datacenter", |b| {
        b.iter(|| table.lookup(black_box("svc-123-45"), Some("dc3")))
    });
    group.bench_function("unknown_service", |b| {
        b.iter(|| table.lookup(black_box("nobody-fronts-this"), None))
    });
    group.finish();
}

fn endpoints(n: u16) -> Vec<Endpoint> {
    (0..n)
        .map(|i| {
            let addr = SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8], 8080));
            Endpoint {
                id: EndpointId::Address(addr),
                target: Target::Address(addr),
                protocol: Protocol::Http,
                datacenter: "dc1".into(),
                healthy: true,
            }
        })
        .collect()
}

fn balancer_pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("balancer_pick");
    for n in [2u16, 10, 100] {
        let candidates = endpoints(n);
        let balancer = PeakEwma::default();
        // Give every endpoint a latency figure, as a warm proxy has, so picks read real loads.
        for e in &candidates {
            balancer.start(e.id).done();
        }
        group.bench_with_input(BenchmarkId::from_parameter(n), &candidates, |b, cands| {
            b.iter(|| balancer.pick(black_box(cands)).map(|e| e.id))
        });
    }
    group.finish();
}

/// The serving node's decision on each call from another node: no policy (the default), and
/// ten rules under `deny` with the caller matched by the last, as the identity harness runs.
fn access_check(c: &mut Criterion) {
    use ferry_proxy::access::{Access, Call, Policy, Rule, Selector, Unmatched};
    use ferry_tunnel::{PeerIdentity, PublicKey};

    let caller = PeerIdentity {
        key: PublicKey([9; 32]),
        certificate: None,
    };
    let method = http::Method::GET;
    let call = Call {
        service: "bench",
        method: Some(&method),
        path: Some("/"),
    };
    let key_rule = |key: u8, path: &str| Rule {
        service: "bench".into(),
        from: vec![Selector::Key(PublicKey([key; 32]))],
        methods: vec![http::Method::GET, http::Method::POST],
        paths: vec![path.into()],
    };
    let mut group = c.benchmark_group("access_check");
    let open = Access::default();
    group.bench_function("no_policy", |b| {
        b.iter(|| black_box(open.check(&caller, &call)))
    });
    let ruled = Access::default();
    let mut rules: Vec<Rule> = (0..9).map(|i| key_rule(i, "/other/*")).collect();
    rules.push(key_rule(9, "/*"));
    ruled.set_policy(Policy {
        default: Unmatched::Deny,
        rules,
    });
    group.bench_function("ten_rules", |b| {
        b.iter(|| black_box(ruled.check(&caller, &call)))
    });
    group.finish();
}

criterion_group!(benches, route_lookup, balancer_pick, access_check);
criterion_main!(benches);
