//! How much memory a node's route table takes for 10,000 services: 1,000 nodes fronting ten
//! each, every one offered by both of the node's gateways (issue 4 asks for at most 20 MB).
//! Counted by a global allocator, in a binary of its own so no other test allocates at the
//! same time.
//!
//! Counting needs a `GlobalAlloc`, which only `unsafe` can implement; it forwards to the system
//! allocator and adds nothing else.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ferry_tunnel::{Advert, Catalog, CatalogEntry, Neighbor, Protocol, PublicKey, Table, Update};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn key(n: u32) -> PublicKey {
    let mut k = [0u8; 32];
    k[..4].copy_from_slice(&n.to_be_bytes());
    PublicKey(k)
}

/// The announcement of node `n`, as it arrives from a gateway: encoded and decoded again, so
/// that each gateway's offer holds its own copy as it would in a real node.
fn announcement(n: u32) -> Update {
    let dc = format!("dc{}", n % 10);
    let update = Update::Announce(Advert {
        catalog: Arc::new(Catalog {
            node: format!("node-{n:04}.{dc}.example"),
            datacenter: dc.clone(),
            key: key(n),
            address: format!("10.{}.{}.{}:7700", n % 10, n / 250, n % 250),
            gateway: false,
            subscriptions: Vec::new(),
            services: (0..10)
                .map(|s| CatalogEntry {
                    service: format!("service-{n:04}-{s}"),
                    protocol: Protocol::Http,
                    healthy: true,
                })
                .collect(),
        }),
        path: vec![dc],
        metric: 20_000,
    });
    let mut bytes = BytesMut::new();
    update.encode(&mut bytes);
    Update::decode(&bytes[4..]).expect("decodes")
}

#[test]
fn a_table_of_ten_thousand_services_fits_in_20_mb() {
    let before = LIVE.load(Ordering::Relaxed);
    let mut table = Table::new(Catalog {
        node: "me".into(),
        datacenter: "dc0".into(),
        key: key(u32::MAX),
        address: String::new(),
        gateway: false,
        subscriptions: Vec::new(),
        services: Vec::new(),
    });
    for gateway in 0..2u64 {
        let neighbor = Neighbor {
            key: key(u32::MAX - 1 - gateway as u32),
            datacenter: "dc0".into(),
            gateway: true,
        };
        table.link_up(gateway, neighbor, Duration::from_micros(200));
        for n in 0..1000 {
            table.receive(gateway, announcement(n)).expect("accepted");
        }
    }
    let _ = table.take_membership();
    let used = LIVE.load(Ordering::Relaxed) - before;
    let services: usize = table.routes().len();
    assert_eq!(services, 10_000);
    let mib = used as f64 / (1 << 20) as f64;
    println!("route table: {services} services from 1,000 nodes via 2 gateways: {mib:.1} MiB");
    assert!(mib <= 20.0, "{mib:.1} MiB");
}
