//! `[intercept]`.

use super::convert::{boolean, quoted, text};
use super::document::Table;
use super::{Reader, ADDRESS_EXAMPLE};
use crate::config::{values, InterceptConfig};

impl Reader<'_> {
    pub(super) fn intercept(&mut self, table: &Table, intercept: &mut InterceptConfig) {
        let known = ["enabled", "listen", "dns", "virtual_network", "upstreams"];
        self.known_keys(table, &known);
        if let Some(enabled) = self.field(table, "enabled", &boolean) {
            intercept.enabled = enabled;
        }
        let local = quoted(redirect_target, ADDRESS_EXAMPLE);
        if let Some((listen, line)) = self.field_at(table, "listen", &local) {
            intercept.listen = listen;
            if intercept.enabled {
                self.add_listener("intercept.listen".into(), listen, line);
            }
        }
        if let Some((dns, line)) = self.field_at(table, "dns", &local) {
            intercept.dns = dns;
            if intercept.enabled {
                self.add_listener("intercept.dns".into(), dns, line);
            }
        }
        let network = text(values::virtual_network);
        if let Some(network) = self.field(table, "virtual_network", &network) {
            intercept.virtual_network = network;
        }
        if let Some(upstreams) = self.list(table, "upstreams", &text(values::nameserver)) {
            intercept.upstreams = upstreams;
        }
    }
}

/// Where redirected traffic can land: the rules' REDIRECT sends a node's own packets to
/// 127.0.0.1, so Ferry must listen there (or on every address).
fn redirect_target(text: &str) -> Result<std::net::SocketAddr, String> {
    let address = values::socket_addr(text)?;
    let ip = address.ip();
    if ip == std::net::IpAddr::from([127, 0, 0, 1]) || ip.is_unspecified() {
        Ok(address)
    } else {
        Err(format!(
            "{address}: redirected traffic lands on 127.0.0.1, so listen there (or on 0.0.0.0)"
        ))
    }
}
