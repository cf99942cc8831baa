//! Interception: applications that know nothing of Ferry. Service names resolve, through
//! Ferry's DNS ([`dns`]), to addresses of a virtual network ([`addresses`]), and connections to
//! those addresses, redirected to Ferry by the node's packet filter, are calls to those
//! services.

mod addresses;
pub(crate) mod answer;
mod dns;
mod listener;
mod sniff;

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

pub use addresses::{Addresses, Network};
pub use dns::{serve_dns, Resolvers};
pub use listener::serve_intercepted;

use crate::directory::{Directory, Resolution};
use crate::target::ServiceName;

/// The names interception has given addresses: the DNS server gives them, the intercepting
/// listener reads them back.
pub struct VirtualNames {
    directory: Arc<dyn Directory>,
    addresses: Mutex<Addresses>,
}

impl VirtualNames {
    /// Names of the services `directory` knows, given addresses of `network`.
    pub fn new(directory: Arc<dyn Directory>, network: Network) -> Arc<VirtualNames> {
        Arc::new(VirtualNames {
            directory,
            addresses: Mutex::new(Addresses::new(network)),
        })
    }

    /// The address of `name` while it is a known service (in its datacenter, when pinned);
    /// `None` otherwise, so that its DNS query goes upstream.
    pub fn address_of(&self, name: &ServiceName) -> Option<Ipv4Addr> {
        if !self.known(name) {
            return None;
        }
        self.addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .address_of(name)
    }

    /// The name `address` was given, while it is a known service: a connection to the
    /// address of a service that went away has nobody to go to.
    pub fn name_of(&self, address: Ipv4Addr) -> Option<ServiceName> {
        let name = self
            .addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .name_of(address)
            .cloned()?;
        self.known(&name).then_some(name)
    }

    fn known(&self, name: &ServiceName) -> bool {
        matches!(self.directory.resolve(name), Resolution::Endpoints(e) if !e.is_empty())
    }
}
