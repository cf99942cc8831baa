//! The addresses interception gives service names: each name a client may look up (`greeter`,
//! `greeter.dc2`) gets one address of the virtual network, the same for as long as the node
//! runs, and an intercepted connection to that address is a call to that name. A pure map,
//! without I/O.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::target::ServiceName;

/// An IPv4 network that virtual addresses are taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    base: u32,
    prefix: u8,
}

impl Network {
    /// 240.0.0.0/16, of the reserved 240.0.0.0/4.
    pub const DEFAULT: Network = Network {
        base: 0xf000_0000,
        prefix: 16,
    };

    /// `address/prefix`; at least 4 addresses (a prefix of 30 or less).
    pub fn new(address: Ipv4Addr, prefix: u8) -> Result<Network, String> {
        if !(8..=30).contains(&prefix) {
            return Err(format!("a /{prefix} network: the prefix must be 8 to 30"));
        }
        let mask = u32::MAX << (32 - prefix);
        let base = u32::from(address);
        if base & !mask != 0 {
            return Err(format!(
                "{address}/{prefix} has host bits set; the network is {}/{prefix}",
                Ipv4Addr::from(base & mask)
            ));
        }
        Ok(Network { base, prefix })
    }

    /// Reads `A.B.C.D/N`.
    pub fn parse(text: &str) -> Result<Network, String> {
        let (address, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a network: write it as 240.0.0.0/16"))?;
        let address: Ipv4Addr = address
            .parse()
            .map_err(|_| format!("{address:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("{prefix:?} is not a prefix length"))?;
        Network::new(address, prefix)
    }

    /// How many addresses can be given: all but the network's first and last.
    fn usable(&self) -> u32 {
        (1u32 << (32 - self.prefix)) - 2
    }

    /// Whether `address` is in this network.
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & (u32::MAX << (32 - self.prefix)) == self.base
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// The names given addresses so far, both ways.
#[derive(Debug)]
pub struct Addresses {
    network: Network,
    by_name: HashMap<ServiceName, Ipv4Addr>,
    by_address: HashMap<Ipv4Addr, ServiceName>,
}

impl Addresses {
    /// None given yet.
    pub fn new(network: Network) -> Addresses {
        Addresses {
            network,
            by_name: HashMap::new(),
            by_address: HashMap::new(),
        }
    }

    /// The address of `name`, given now if it had none. A name's first choice comes from a
    /// hash of it, so that a node restarted, or another node, usually gives it the same one;
    /// a taken address moves it to the next free. `None` when the network is full.
    pub fn address_of(&mut self, name: &ServiceName) -> Option<Ipv4Addr> {
        if let Some(address) = self.by_name.get(name) {
            return Some(*address);
        }
        let usable = self.network.usable();
        if self.by_address.len() as u32 >= usable {
            return None;
        }
        let start = fnv1a(&name.to_string()) % usable;
        let address = (0..usable)
            .map(|i| Ipv4Addr::from(self.network.base + 1 + (start + i) % usable))
            .find(|a| !self.by_address.contains_key(a))?;
        self.by_name.insert(name.clone(), address);
        self.by_address.insert(address, name.clone());
        Some(address)
    }

    /// The name `address` was given, if any.
    pub fn name_of(&self, address: Ipv4Addr) -> Option<&ServiceName> {
        self.by_address.get(&address)
    }

    /// The network addresses are taken from.
    pub fn network(&self) -> Network {
        self.network
    }
}

/// FNV-1a, 32 bits: stable across builds and machines, unlike the standard library's hasher.
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> ServiceName {
        ServiceName::from_authority(text).expect("a service name")
    }

    fn net(text: &str) -> Network {
        Network::parse(text).expect("a network")
    }

    #[test]
    fn a_name_keeps_its_address_and_the_address_names_it() {
        let mut addresses = Addresses::new(net("240.0.0.0/16"));
        let greeter = name("Greeter");
        let pinned = name("greeter.DC2");
        let a = addresses.address_of(&greeter).expect("room");
        let b = addresses.address_of(&pinned).expect("room");
        assert_ne!(a, b, "a pinned name is another name");
        assert_eq!(addresses.address_of(&name("greeter.mesh")), Some(a));
        assert_eq!(addresses.name_of(b), Some(&pinned));
        assert!(addresses.network().contains(a) && addresses.network().contains(b));
        // Another node, or this one after a restart, gives the same first choice.
        let mut again = Addresses::new(net("240.0.0.0/16"));
        assert_eq!(again.address_of(&greeter), Some(a));
    }

    #[test]
    fn a_full_network_gives_no_more_and_collisions_move_on() {
        let mut addresses = Addresses::new(net("10.9.0.0/30"));
        let given: Vec<_> = ["a", "b"]
            .iter()
            .map(|s| addresses.address_of(&name(s)).expect("room"))
            .collect();
        assert_ne!(given[0], given[1]);
        for address in &given {
            assert_ne!(
                *address,
                Ipv4Addr::new(10, 9, 0, 0),
                "not the network address"
            );
            assert_ne!(
                *address,
                Ipv4Addr::new(10, 9, 0, 3),
                "not the broadcast address"
            );
        }
        assert_eq!(addresses.address_of(&name("c")), None);
    }

    #[test]
    fn networks_are_checked() {
        assert_eq!(net("240.0.0.0/16").to_string(), "240.0.0.0/16");
        for bad in [
            "240.0.0.0",
            "240.0.0.1/16",
            "240.0.0.0/31",
            "240.0.0.0/4",
            "x/16",
            "::/16",
        ] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
        assert!(!net("240.0.0.0/16").contains(Ipv4Addr::new(240, 1, 0, 1)));
    }
}
