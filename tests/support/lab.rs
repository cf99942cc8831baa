//! A small network of hosts on one machine, made of network namespaces: for tests where nodes
//! sit on separate LANs joined by a WAN, and links between a host and a network can be cut.
//!
//! One "switch" namespace holds a Linux bridge per network (each LAN, the WAN). A host is a
//! namespace with `lo` up and one veth per network it joins: the host's end is named after
//! the network and addressed in the network's /24, the switch's end is enslaved to the bridge.
//! Nothing routes between networks: a host reaches only the networks it joins.
//!
//! Needs root (to create namespaces) and `ip` from iproute2. Without them the test fails
//! saying so: a test that quietly skips looks the same as one that passed.

use super::netns::{ip, ip_ran, remove_leftovers, require_root_and_ip};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU32, Ordering};

/// Namespace names start with this, then `<pid>-<n>-<label>`: unique per lab, and a leftover
/// of a killed test run can be told apart from one of a live run.
const PREFIX: &str = "ferrylab-";

/// Networks get `10.(220 + index).S.0/24`, S spread by pid and lab: apart from netns.rs's
/// `10.210.x.0/24` and from labs of other test binaries running at once.
const FIRST_OCTET2: u8 = 220;

/// A network of the lab: a bridge in the switch namespace.
#[derive(Debug, Clone)]
pub(crate) struct Network {
    /// The label given to [`Lab::network`]; also the name of hosts' interfaces on it.
    pub name: String,
    bridge: String,
    /// The first three octets of the network's /24.
    prefix: [u8; 3],
    /// The last octet of the next host address handed out.
    next_host: u8,
}

/// A host of the lab: a namespace with an address on each network it joined.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    /// The label given to [`Lab::host`].
    pub label: String,
    /// The namespace's name, for `ip netns exec` and the harness's `netns` hooks.
    pub name: String,
    /// (network name, address): the interface on a network is named after the network.
    addresses: Vec<(String, IpAddr)>,
}

impl Host {
    /// The name as the harness's `Option<&str>` namespace hooks take it.
    pub(crate) fn netns(&self) -> Option<&str> {
        Some(&self.name)
    }

    /// The host's address on `network`; panics if it did not join it.
    pub(crate) fn ip(&self, network: &str) -> IpAddr {
        self.addresses
            .iter()
            .find(|(name, _)| name == network)
            .map(|(_, ip)| *ip)
            .unwrap_or_else(|| panic!("host {} is not on network {network}", self.label))
    }

    /// The names of the networks the host joined, in the order it joined them.
    pub(crate) fn networks(&self) -> impl Iterator<Item = &str> {
        self.addresses.iter().map(|(name, _)| name.as_str())
    }
}

/// The namespaces of one test's network; all deleted on drop, also when the test panics:
/// declare the lab before the nodes and backends that run inside it, so they are dropped
/// (killed) first.
#[derive(Debug)]
pub(crate) struct Lab {
    /// `ferrylab-<pid>-<n>-`: every namespace of this lab starts with it.
    stem: String,
    /// The namespace holding the bridges.
    switch: String,
    /// Spreads subnets by pid and lab.
    spread: u8,
    networks: Vec<Network>,
    /// Every namespace made, the switch first.
    namespaces: Vec<String>,
}

impl Lab {
    /// An empty lab: just the switch. Panics naming what is missing when this process cannot.
    pub(crate) fn new() -> Lab {
        require_root_and_ip();
        remove_leftovers(PREFIX);
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let stem = format!("{PREFIX}{pid}-{n}-");
        let switch = format!("{stem}switch");
        let mut lab = Lab {
            spread: 1 + ((pid.wrapping_mul(7) + n) % 250) as u8,
            switch: switch.clone(),
            stem,
            networks: Vec::new(),
            namespaces: Vec::new(),
        };
        // From here on, Drop removes whatever part was made if a step fails.
        lab.add_namespace(&switch);
        lab
    }

    /// Adds a network named `name` (at most 8 characters: it names interfaces): a bridge.
    pub(crate) fn network(&mut self, name: &str) {
        assert!(name.len() <= 8, "network name {name:?} is too long");
        let index = self.networks.len() as u8;
        let bridge = format!("br-{name}");
        ip(&["-n", &self.switch, "link", "add", &bridge, "type", "bridge"]);
        ip(&["-n", &self.switch, "link", "set", &bridge, "up"]);
        self.networks.push(Network {
            name: name.to_owned(),
            bridge,
            prefix: [10, FIRST_OCTET2 + index, self.spread],
            next_host: 1,
        });
    }

    /// Adds a host labelled `label` joined to each of `networks` (made before by
    /// [`Lab::network`]), with an address on each.
    pub(crate) fn host(&mut self, label: &str, networks: &[&str]) -> Host {
        let name = format!("{}{label}", self.stem);
        self.add_namespace(&name);
        let mut host = Host {
            label: label.to_owned(),
            name,
            addresses: Vec::new(),
        };
        let host_index = self.namespaces.len();
        for network in networks {
            let net = self
                .networks
                .iter_mut()
                .find(|n| n.name == *network)
                .unwrap_or_else(|| panic!("no network {network} in the lab"));
            let [a, b, c] = net.prefix;
            let address = Ipv4Addr::new(a, b, c, net.next_host);
            net.next_host += 1;
            // The switch's end needs a name unique in the switch: host and network indexes.
            let switch_end = format!("h{host_index}-{}", net.bridge);
            let switch_end = &switch_end[..switch_end.len().min(15)];
            ip(&[
                "link",
                "add",
                &net.name,
                "netns",
                &host.name,
                "type",
                "veth",
                "peer",
                "name",
                switch_end,
                "netns",
                &self.switch,
            ]);
            ip(&[
                "-n",
                &self.switch,
                "link",
                "set",
                switch_end,
                "master",
                &net.bridge,
            ]);
            ip(&["-n", &self.switch, "link", "set", switch_end, "up"]);
            let cidr = format!("{address}/24");
            ip(&["-n", &host.name, "addr", "add", &cidr, "dev", &net.name]);
            ip(&["-n", &host.name, "link", "set", &net.name, "up"]);
            host.addresses.push((net.name.clone(), IpAddr::V4(address)));
        }
        host
    }

    /// Cuts `host`'s link to `network`: its interface there goes down.
    pub(crate) fn cut(&self, host: &Host, network: &str) {
        host.ip(network);
        ip(&["-n", &host.name, "link", "set", network, "down"]);
    }

    /// Heals what [`Lab::cut`] cut.
    pub(crate) fn heal(&self, host: &Host, network: &str) {
        host.ip(network);
        ip(&["-n", &host.name, "link", "set", network, "up"]);
    }

    /// Makes namespace `name` with `lo` up, remembered for Drop.
    fn add_namespace(&mut self, name: &str) {
        ip(&["netns", "add", name]);
        self.namespaces.push(name.to_owned());
        ip(&["-n", name, "link", "set", "lo", "up"]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace destroys its veth ends, and so the pairs; the switch last.
        for name in self.namespaces.iter().rev() {
            let ran = ip_ran(&["netns", "delete", name]);
            if !ran.success() && !ran.stderr.contains("No such file") {
                eprintln!("cannot delete netns {name}: {}", ran.stderr.trim());
            }
        }
    }
}
