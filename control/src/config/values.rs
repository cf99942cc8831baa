//! Checks of single values, shared by the config file and the `ferry run` flags so both accept
//! exactly the same things. Each returns the value or a one-line message for a `ConfigError`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::keywords::{parse_keyword, Keyword};
use super::{decode_public_key, parse_duration};

/// The port a nameserver given without one listens on.
const DNS_PORT: u16 = 53;

/// A name used in `Host` headers: letters, digits, `_`, `-`.
fn is_label(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A local service's name. No dots: `greeter.eu-west` means service `greeter` in `eu-west`.
pub(super) fn service_name(name: &str) -> Result<String, String> {
    if is_label(name) {
        Ok(name.to_string())
    } else {
        Err(format!(
            "\"{name}\" is not a service name: use letters, digits, '_' and '-' \
             ('.' separates the datacenter, as in NAME.DATACENTER)"
        ))
    }
}

/// A service to call: `NAME`, or `NAME.DATACENTER` to stay in one datacenter.
pub(super) fn service_target(target: &str) -> Result<String, String> {
    let (name, datacenter) = match target.split_once('.') {
        Some((name, datacenter)) => (name, Some(datacenter)),
        None => (target, None),
    };
    service_name(name)?;
    if datacenter.is_some_and(|dc| !is_label(dc)) {
        return Err(format!(
            "\"{target}\" is not NAME or NAME.DATACENTER (letters, digits, '_' and '-')"
        ));
    }
    Ok(target.to_string())
}

/// A datacenter's name. `mesh` is taken: `greeter.mesh` means greeter in any datacenter.
pub(super) fn datacenter_name(name: &str) -> Result<String, String> {
    if name.eq_ignore_ascii_case("mesh") {
        return Err("\"mesh\" cannot name a datacenter: `NAME.mesh` means any datacenter".into());
    }
    if is_label(name) {
        Ok(name.to_string())
    } else {
        Err(format!(
            "\"{name}\" is not a datacenter name: use letters, digits, '_' and '-'"
        ))
    }
}

/// A node's name: shown to operators, so anything printable on one line.
pub(super) fn node_name(name: &str) -> Result<String, String> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(format!(
            "\"{name}\" is not a node name: it must be non-empty, without spaces"
        ))
    } else {
        Ok(name.to_string())
    }
}

/// An IP address and port to listen on; port 0 lets the OS pick.
pub(super) fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("\"{text}\" is not IP:PORT (e.g. 127.0.0.1:7701 or [::1]:7701)"))
}

/// An IP address and port to connect to.
pub(super) fn service_address(text: &str) -> Result<SocketAddr, String> {
    let addr = socket_addr(text)?;
    if addr.port() == 0 {
        return Err(format!("\"{text}\": port 0 cannot be connected to"));
    }
    Ok(addr)
}

/// `host:port` to dial, where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
pub(super) fn host_port(text: &str) -> Result<String, String> {
    let bad = |why: &str| format!("\"{text}\" is not HOST:PORT: {why}");
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(bad("the port is missing"));
    };
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err(bad("the port must be 1-65535")),
        Ok(_) => {}
    }
    if let Some(inner) = host.strip_prefix('[') {
        let ok = inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<Ipv6Addr>().is_ok());
        return if ok {
            Ok(text.to_string())
        } else {
            Err(bad("bad IPv6 address"))
        };
    }
    if host.contains(':') {
        return Err(bad("put an IPv6 address in brackets, as in [::1]:7700"));
    }
    if !is_label(&host.replace('.', "")) || host.starts_with('.') || host.contains("..") {
        return Err(bad("bad host name"));
    }
    Ok(text.to_string())
}

/// A nameserver: `IP:PORT`, or a bare IP for port 53.
pub(super) fn nameserver(text: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DNS_PORT));
    }
    service_address(text).map_err(|_| format!("\"{text}\" is not IP or IP:PORT"))
}

/// A DNS domain such as `svc.example.`.
pub(super) fn dns_domain(text: &str) -> Result<String, String> {
    let labels = text.strip_suffix('.').unwrap_or(text);
    if labels.split('.').all(is_label) {
        Ok(text.to_string())
    } else {
        Err(format!("\"{text}\" is not a DNS domain"))
    }
}

/// An etcd client URL.
pub(super) fn etcd_endpoint(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() => Ok(text.to_string()),
        _ => Err(format!(
            "\"{text}\" is not an etcd URL such as http://127.0.0.1:2379"
        )),
    }
}

/// A path of an HTTP health check.
pub(super) fn health_path(text: &str) -> Result<String, String> {
    if text.starts_with('/') && !text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "\"{text}\" is not an HTTP path: it starts with '/', as in \"/healthz\""
        ))
    }
}

/// A file path; the caller resolves it against the config file's directory.
pub(super) fn path(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        Err("the path is empty".into())
    } else {
        Ok(PathBuf::from(text))
    }
}

/// Any non-empty string.
pub(super) fn non_empty(text: &str) -> Result<String, String> {
    if text.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(text.to_string())
    }
}

/// A public key, kept in its base64 form.
pub(super) fn public_key(text: &str) -> Result<String, String> {
    decode_public_key(text)
        .map(|_| text.to_string())
        .map_err(|e| format!("bad public key \"{text}\": {e}"))
}

/// The node key a certificate file vouches for, in base64: a peer named by its certificate
/// (`peers = [{ address, certificate }]`) is dialed with that key, and the handshake proves
/// the node holds it.
pub(super) fn certified_key(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the certificate {}: {e}", path.display()))?;
    let certificate = ferry_tunnel::certificate::Certificate::from_pem(&text)
        .map_err(|e| format!("{} is not a certificate: {e}", path.display()))?;
    if certificate.subject.kind != ferry_tunnel::certificate::Kind::Node {
        return Err(format!(
            "{} is a CA's certificate, not a node's",
            path.display()
        ));
    }
    Ok(ferry_tunnel::PublicKey(certificate.subject.key).to_string())
}

/// A duration above zero: a zero interval or deadline would spin or fail every call.
pub(super) fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(Duration::ZERO) => Err(format!("\"{text}\": must be more than zero")),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// One of a keyword enum's names.
pub(super) fn keyword<K: Keyword>(text: &str) -> Result<K, String> {
    parse_keyword(text).map_err(|e| e.to_string())
}

/// A topic pattern a subscription matches with (`orders.*`, `orders.>`).
pub(super) fn topic_pattern(text: &str) -> Result<String, String> {
    ferry_proxy::broker::topic::Pattern::parse(text)
        .map(|_| text.to_string())
        .map_err(|e| format!("\"{text}\" is not a topic pattern: {e}"))
}

/// A topic a message can be published on: no wildcard.
pub(super) fn topic(text: &str) -> Result<String, String> {
    ferry_proxy::broker::topic::Topic::parse(text)
        .map(|_| text.to_string())
        .map_err(|e| format!("\"{text}\" is not a topic: {e}"))
}

/// The path messages are POSTed to: an HTTP path, short enough to travel in a catalog.
pub(super) fn delivery_path(text: &str) -> Result<String, String> {
    let path = health_path(text)?;
    if path.len() > 255 {
        return Err(format!("the path has {} bytes; at most 255", path.len()));
    }
    Ok(path)
}

/// A size above zero (`1MiB`).
pub(super) fn positive_size(text: &str) -> Result<u64, String> {
    match super::parse_size(text)? {
        0 => Err(format!("\"{text}\": must be more than zero")),
        n => Ok(n),
    }
}

/// A NATS server address as the client reads it (`nats://HOST:PORT`).
pub(super) fn nats_server(text: &str) -> Result<String, String> {
    ferry_proxy::broker::check_server(text).map(|()| text.to_string())
}

/// An IPv4 network for virtual addresses (`240.0.0.0/16`).
pub(super) fn virtual_network(text: &str) -> Result<ferry_proxy::intercept::Network, String> {
    ferry_proxy::intercept::Network::parse(text)
}
