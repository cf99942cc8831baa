//! Where a call goes: the service it names ([`ServiceName`], read from its Host or
//! :authority), and how each endpoint of that service is reached ([`Target`]).

use std::net::SocketAddr;
use std::time::Duration;

use ferry_tunnel::RemoteNode;

/// How to reach an endpoint.
#[derive(Clone, Debug)]
pub enum Target {
    /// A plain address, dialed directly: a local workload or a service outside the mesh.
    Address(SocketAddr),
    /// A Ferry node, reached through the tunnel; it delivers to its own local service.
    Node {
        /// Opens streams to the node.
        remote: RemoteNode,
        /// The node's name, for errors and logs.
        name: String,
        /// The route's cost: round-trip times summed along its path.
        metric: Duration,
    },
}

/// A service name with an optional datacenter pin, as the routing rules read them:
/// `greeter`, `greeter.mesh` → any datacenter; `greeter.eu-west`, `greeter.eu-west.mesh` →
/// only `eu-west`. Any port is ignored.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServiceName {
    /// The service, lowercased.
    pub service: String,
    /// The datacenter the call is pinned to, lowercased, if any.
    pub datacenter: Option<String>,
}

impl ServiceName {
    /// Parses an authority (`host[:port]`). `None` for an empty host or more labels than
    /// `service.datacenter.mesh`: such a name is not a mesh service.
    pub fn from_authority(authority: &str) -> Option<ServiceName> {
        let host = strip_port(authority.trim())
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let host = host.strip_suffix(".mesh").unwrap_or(&host);
        if host.is_empty() || host == "mesh" {
            return None;
        }
        let mut labels = host.splitn(3, '.');
        let service = labels.next()?.to_owned();
        let datacenter = labels.next().map(str::to_owned);
        if labels.next().is_some() || service.is_empty() || datacenter.as_deref() == Some("") {
            return None;
        }
        Some(ServiceName {
            service,
            datacenter,
        })
    }
}

/// The name as a caller writes it: `greeter` or `greeter.dc2`.
impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.datacenter {
            Some(dc) => write!(f, "{}.{dc}", self.service),
            None => f.write_str(&self.service),
        }
    }
}

fn strip_port(authority: &str) -> &str {
    // Take the userinfo off too: `user@host:port` names the same host.
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    match authority.rfind(':') {
        Some(i) if authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &authority[..i],
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(a: &str) -> Option<(String, Option<String>)> {
        ServiceName::from_authority(a).map(|n| (n.service, n.datacenter))
    }

    #[test]
    fn names_follow_the_routing_rules() {
        let any = |s: &str| Some((s.to_string(), None));
        let pinned = |s: &str, dc: &str| Some((s.to_string(), Some(dc.to_string())));
        assert_eq!(parse("greeter"), any("greeter"));
        assert_eq!(parse("greeter:8080"), any("greeter"));
        assert_eq!(parse("greeter.mesh"), any("greeter"));
        assert_eq!(parse("Greeter.MESH:1"), any("greeter"));
        assert_eq!(parse("greeter.eu-west"), pinned("greeter", "eu-west"));
        assert_eq!(
            parse("greeter.eu-west.mesh:443"),
            pinned("greeter", "eu-west")
        );
    }

    #[test]
    fn other_names_are_not_services() {
        assert_eq!(parse(""), None);
        assert_eq!(parse(":80"), None);
        assert_eq!(parse("a.b.c"), None);
        assert_eq!(parse("www.example.com"), None);
    }
}
