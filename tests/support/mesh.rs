//! Datacenters in a [`Lab`]: each a LAN with sidecars and gateways, the gateways also on one or
//! more WANs; and what tests across datacenters ask of them: which workload answered a call,
//! how soon a call was answered some way, through which gateway a node reaches another.
//!
//! [`Lab`]: super::lab::Lab

use super::lab::Host;
use super::{assert_ferry_error, eventually_every, Node, NodeBuilder, Response};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Between polls when a test times how soon something happens.
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// Issue 4's bound for withdrawing and restoring a datacenter's routes, plus a few polls: each
/// poll is a curl through `ip netns exec` (~20–50 ms here) and the pause between them.
pub(crate) const TWO_SECONDS_AND_POLLS: Duration = Duration::from_millis(2000 + 4 * 20 + 150);

/// Held for the whole of a test that runs a mesh: such a test runs many nodes on a small
/// machine and times what it sees, so two of them in one test binary must not run at once.
pub(crate) fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A gateway before it starts.
struct Gateway {
    builder: NodeBuilder,
    host: Host,
    datacenter: String,
    /// The network that is its datacenter's LAN.
    lan: String,
}

/// The nodes of a mesh of datacenters before they start, wired as Ferry wants them: a sidecar
/// dials the gateways of its datacenter on their LAN, and they trust it; a gateway dials the
/// other gateways of its datacenter on their LAN, and those of other datacenters on a WAN both
/// joined. Gateways that share no network are not linked: what they exchange must transit.
///
/// Add the gateways first ([`MeshPlan::gateway`]), then build the sidecars
/// ([`MeshPlan::sidecar`]), then [`MeshPlan::start_gateways`], then start the sidecars.
#[derive(Default)]
pub(crate) struct MeshPlan {
    gateways: Vec<Gateway>,
    /// The keys of the sidecars made so far, with their datacenter: its gateways trust them.
    sidecars: Vec<(String, String)>,
}

impl MeshPlan {
    pub(crate) fn new() -> MeshPlan {
        MeshPlan::default()
    }

    /// Adds a gateway on `host`, named after the host's label, in datacenter `datacenter`
    /// whose LAN is the network `lan`. It listens on all its addresses (LAN and WANs) and
    /// advertises none: its datacenter's nodes learn the address they saw it at.
    pub(crate) fn gateway(&mut self, host: &Host, datacenter: &str, lan: &str) {
        let builder = Node::builder(&host.label)
            .netns(&host.name)
            .tunnel_ip([0, 0, 0, 0].into())
            .datacenter(datacenter)
            .gateway();
        self.gateways.push(Gateway {
            builder,
            host: host.clone(),
            datacenter: datacenter.to_owned(),
            lan: lan.to_owned(),
        });
    }

    /// A sidecar on `host` named `DATACENTER-LABEL`, its tunnel on its LAN address, dialing
    /// every gateway of `datacenter` (added before), which will trust it.
    pub(crate) fn sidecar(&mut self, host: &Host, datacenter: &str) -> NodeBuilder {
        let mut gateways = self
            .gateways
            .iter()
            .filter(|g| g.datacenter == datacenter)
            .peekable();
        let lan = match gateways.peek() {
            Some(gateway) => gateway.lan.clone(),
            None => panic!("add the gateways of {datacenter} before its sidecars"),
        };
        let mut sidecar = Node::builder(&format!("{datacenter}-{}", host.label))
            .netns(&host.name)
            .tunnel_ip(host.ip(&lan))
            .datacenter(datacenter);
        for gateway in gateways {
            let address = SocketAddr::new(gateway.host.ip(&lan), gateway.builder.tunnel().port());
            sidecar = sidecar.peer(address, gateway.builder.public_key());
        }
        self.sidecars
            .push((datacenter.to_owned(), sidecar.public_key().to_owned()));
        sidecar
    }

    /// Starts the gateways, in the order they were added, each peered with the gateways it
    /// shares a network with and trusting the sidecars of its datacenter.
    pub(crate) fn start_gateways(self) -> Vec<Node> {
        let peers: Vec<Vec<(SocketAddr, String)>> = (0..self.gateways.len())
            .map(|i| {
                (0..self.gateways.len())
                    .filter(|&j| j != i)
                    .filter_map(|j| self.dial_address(i, j).map(|a| (a, j)))
                    .map(|(address, j)| (address, self.gateways[j].builder.public_key().to_owned()))
                    .collect()
            })
            .collect();
        self.gateways
            .into_iter()
            .zip(peers)
            .map(|(gateway, peers)| {
                let mut builder = gateway.builder;
                for (address, key) in &peers {
                    builder = builder.peer(*address, key);
                }
                for (_, key) in self
                    .sidecars
                    .iter()
                    .filter(|(dc, _)| *dc == gateway.datacenter)
                {
                    builder = builder.trust(key);
                }
                builder.start()
            })
            .collect()
    }

    /// Where gateway `i` dials gateway `j`: on their LAN in the same datacenter, else on a
    /// network both joined (a WAN: the LANs of two datacenters differ); `None` if none.
    fn dial_address(&self, i: usize, j: usize) -> Option<SocketAddr> {
        let (from, to) = (&self.gateways[i], &self.gateways[j]);
        let network = match from.datacenter == to.datacenter {
            true => Some(to.lan.as_str()),
            false => to
                .host
                .networks()
                .find(|n| from.host.networks().any(|m| m == *n)),
        }?;
        Some(SocketAddr::new(
            to.host.ip(network),
            to.builder.tunnel().port(),
        ))
    }
}

/// The workload that answered a `GET /hello` (NAME, from its `hello from NAME`), when the
/// answer is its 200, not flagged with a `ferry-error`.
pub(crate) fn served_by(response: &Response) -> Option<&str> {
    if response.status != 200 || response.header("ferry-error").is_some() {
        return None;
    }
    response.body.lines().next()?.strip_prefix("hello from ")
}

/// Asserts a 200 from `workload` (its body says `hello from WORKLOAD`).
pub(crate) fn assert_served_by(response: &Response, workload: &str) {
    assert_eq!(
        served_by(response),
        Some(workload),
        "expected 200 from {workload}: {response:?}"
    );
}

/// Polls (every [`POLL`], at most 10 s) until a call from `from`'s outbound with
/// `Host: host` is answered as `wanted` says; returns how long after `since` that was. Prints
/// what the calls before got (status and `ferry-error`, or curl's failure), one line per
/// change, so a slow failover shows what users saw meanwhile.
pub(crate) fn time_until(
    from: &Node,
    host: &str,
    since: Instant,
    what: &str,
    wanted: impl Fn(&Response) -> bool,
) -> (Duration, Response) {
    let mut last_seen = String::new();
    let response = eventually_every(POLL, Duration::from_secs(10), || {
        let called = from.outbound_get(host, "/hello");
        let seen = match &called {
            Ok(r) => format!(
                "{} {:?} {}",
                r.status,
                r.header("ferry-error"),
                r.body.lines().next().unwrap_or("")
            ),
            Err(e) => e.clone(),
        };
        if seen != last_seen {
            println!(
                "  {:>7.3} s  Host: {host} -> {seen}",
                since.elapsed().as_secs_f64()
            );
            last_seen = seen;
        }
        let response = called?;
        match wanted(&response) {
            true => Ok(response),
            false => Err(format!(
                "Host: {host} not yet {what} after {:?}: {response:?}",
                since.elapsed()
            )),
        }
    });
    (since.elapsed(), response)
}

/// Times how soon after `event` (which happened at `since`) a call from `from` with
/// `Host: host` is answered `503 no-route`: the routes to it were withdrawn. Prints it, and
/// asserts it took at most two seconds (issue 4) and the poll's slack.
pub(crate) fn assert_withdrawn_within_2_s(from: &Node, host: &str, since: Instant, event: &str) {
    let (withdrawn, response) = time_until(from, host, since, "a 503", |r| r.status == 503);
    println!("{event}: {host} answered 503 after {withdrawn:?}");
    assert_ferry_error(&response, 503, "no-route", host);
    assert!(
        withdrawn <= TWO_SECONDS_AND_POLLS,
        "{host}'s routes were withdrawn from {} only {withdrawn:?} after {event} (issue 4: \
         within 2 s)",
        from.name
    );
}

/// Times how soon after `event` (at `since`) a call from `from` with `Host: host` is served by
/// `workload` again. Prints it, and asserts it took at most two seconds (issue 4) and slack.
pub(crate) fn assert_served_again_within_2_s(
    from: &Node,
    host: &str,
    workload: &str,
    since: Instant,
    event: &str,
) {
    let (back, _) = time_until(from, host, since, "served", |r| {
        served_by(r) == Some(workload)
    });
    println!("{event}: {host} answered by {workload} after {back:?}");
    assert!(
        back <= TWO_SECONDS_AND_POLLS,
        "{host} came back to {} only {back:?} after {event} (issue 4: within 2 s)",
        from.name
    );
}

/// The entry of a `/peers` list for the node named `name`.
pub(crate) fn peer_named<'a>(
    peers: &'a serde_json::Value,
    name: &str,
) -> Option<&'a serde_json::Value> {
    peers.as_array()?.iter().find(|p| p["name"] == name)
}

/// The gateway that `node`'s relayed session to the node named `far` goes through, from the
/// `via GATEWAY` of `node`'s `/peers`; panics if `node` holds no such session.
pub(crate) fn relayed_via(node: &Node, far: &str) -> String {
    let peers = node.admin_json("/peers");
    let path = peer_named(&peers, far)
        .and_then(|p| p["path"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("{}'s /peers lists no session to {far}: {peers}", node.name));
    path.strip_prefix("via ")
        .map(str::to_owned)
        .unwrap_or_else(|| {
            panic!(
                "{}'s session to {far} is {path:?}, not `via GATEWAY`: {peers}",
                node.name
            )
        })
}

/// Whether `node` holds a session with `other`, a link or an inner session: a gateway that
/// relays between them must not, it only forwards datagrams it cannot read. Returns
/// `node`'s `/peers` for the failure message.
pub(crate) fn holds_session(node: &Node, other: &Node) -> (bool, serde_json::Value) {
    let peers = node.admin_json("/peers");
    let holds = peers.as_array().is_some_and(|list| {
        list.iter()
            .any(|p| p["name"] == other.name || p["key"] == other.public_key.as_str())
    });
    (holds, peers)
}
