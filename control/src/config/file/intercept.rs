//! `[intercept]`.

use super::convert::{boolean, quoted, text};
use super::document::Table;
use super::{Reader, ADDRESS_EXAMPLE};
use crate::config::{values, InterceptConfig};

impl Reader<'_> {
    pub(super) fn intercept(&mut self, table: &Table, intercept: &mut InterceptConfig) {
        self.known_keys(table, &["enabled", "listen", "dns", "virtual_network"]);
        if let Some(enabled) = self.field(table, "enabled", &boolean) {
            intercept.enabled = enabled;
        }
        let address = quoted(values::socket_addr, ADDRESS_EXAMPLE);
        if let Some((listen, line)) = self.field_at(table, "listen", &address) {
            intercept.listen = listen;
            if intercept.enabled {
                self.add_listener("intercept.listen".into(), listen, line);
            }
        }
        if let Some((dns, line)) = self.field_at(table, "dns", &address) {
            intercept.dns = dns;
            if intercept.enabled {
                self.add_listener("intercept.dns".into(), dns, line);
            }
        }
        let network = text(values::virtual_network);
        if let Some(network) = self.field(table, "virtual_network", &network) {
            intercept.virtual_network = network;
        }
    }
}
