//! The `dns` registry, through `hickory-resolver`: SRV `_NAME._tcp.DOMAIN` (priority, weight
//! and port honoured), else A/AAAA `NAME.DOMAIN` on the configured port. DNS cannot list what
//! it holds, so each name is watched from the first call that asks for it and looked up again
//! when its records' TTL runs out.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol as Transport;
use hickory_resolver::{ResolveError, TokioResolver};

use super::{AddressRecord, EndpointSet, Registry, RegistryError, Scope, Sink};
use crate::config::{RegistryConfig, RegistryKind};
use ferry_tunnel::Protocol;

/// Records are looked up again no sooner than this, whatever their TTL (0 is common): a
/// busy name must not turn into a query per call.
const MIN_REFRESH: Duration = Duration::from_secs(1);
/// ... and no later than this, so that a very long TTL cannot pin a stale answer for hours.
const MAX_REFRESH: Duration = Duration::from_secs(300);
/// The port of A/AAAA answers when the config names none.
const DEFAULT_PORT: u16 = 80;
/// A target of the highest SRV weight appears this many times among the candidates; others in
/// proportion (at least once), so that the balancer's random picks follow the weights.
const WEIGHT_SHARES: u32 = 8;

pub(super) struct Dns {
    resolver: TokioResolver,
    /// Fully qualified: ends with a dot.
    domain: String,
    port: u16,
}

impl Dns {
    pub(super) fn new(config: &RegistryConfig) -> Result<Dns, String> {
        let domain = config
            .domain
            .clone()
            .ok_or("the dns registry needs registry.domain")?;
        let domain = format!("{}.", domain.trim_end_matches('.'));
        let provider = TokioConnectionProvider::default();
        let mut builder = if config.nameservers.is_empty() {
            TokioResolver::builder(provider)
                .map_err(|e| format!("dns registry: cannot read the system's resolvers: {e}"))?
        } else {
            let servers: Vec<NameServerConfig> = config
                .nameservers
                .iter()
                .flat_map(|addr| {
                    [Transport::Udp, Transport::Tcp]
                        .map(|transport| NameServerConfig::new(*addr, transport))
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), servers),
                provider,
            )
        };
        let options: &mut ResolverOpts = builder.options_mut();
        options.timeout = Duration::from_secs(1);
        options.attempts = 2;
        // A name that does not exist yet may be added any moment: do not remember its absence
        // longer than we would wait to look again.
        options.negative_max_ttl = Some(MIN_REFRESH);
        Ok(Dns {
            resolver: builder.build(),
            domain,
            port: config.port.unwrap_or(DEFAULT_PORT),
        })
    }

    /// The addresses of `service` now, and until when the answer holds.
    async fn lookup(&self, service: &str) -> Result<(Vec<AddressRecord>, Instant), RegistryError> {
        let srv_name = format!("_{service}._tcp.{}", self.domain);
        match self.resolver.srv_lookup(srv_name.as_str()).await {
            Ok(srv) => {
                let mut until = srv.as_lookup().valid_until();
                let mut targets: Vec<Target> = Vec::new();
                for record in srv.iter() {
                    let host = record.target().to_string();
                    let ips = match self.resolver.lookup_ip(host.as_str()).await {
                        Ok(ips) => {
                            until = until.min(ips.valid_until());
                            ips.iter().collect()
                        }
                        Err(e) if absent(&e) => Vec::new(),
                        Err(e) => return Err(failure(&host, &e)),
                    };
                    targets.push(Target {
                        priority: record.priority(),
                        weight: record.weight(),
                        addresses: ips
                            .into_iter()
                            .map(|ip| SocketAddr::new(ip, record.port()))
                            .collect(),
                    });
                }
                Ok((weighted(targets), until))
            }
            Err(e) if absent(&e) => {
                let host = format!("{service}.{}", self.domain);
                match self.resolver.lookup_ip(host.as_str()).await {
                    Ok(ips) => {
                        let set = ips
                            .iter()
                            .map(|ip| AddressRecord {
                                address: SocketAddr::new(ip, self.port),
                                protocol: Protocol::Http,
                            })
                            .collect();
                        Ok((set, ips.valid_until()))
                    }
                    Err(e) if absent(&e) => Ok((Vec::new(), Instant::now())),
                    Err(e) => Err(failure(&host, &e)),
                }
            }
            Err(e) => Err(failure(&srv_name, &e)),
        }
    }
}

/// The name has no such records: an answer, not a failure of the server.
fn absent(e: &ResolveError) -> bool {
    e.is_no_records_found() || e.is_nx_domain()
}

fn failure(name: &str, e: &ResolveError) -> RegistryError {
    RegistryError(format!("looking up {name}: {e}"))
}

/// One SRV target with the addresses its name resolved to.
struct Target {
    priority: u16,
    weight: u16,
    addresses: Vec<SocketAddr>,
}

/// The SRV rule (RFC 2782): only the lowest priority that has an address is used, the higher
/// ones being its fallbacks; within it each target is repeated in proportion to its weight.
/// The protocol is `http`: DNS does not say, and the proxy detects gRPC by its content type.
fn weighted(mut targets: Vec<Target>) -> Vec<AddressRecord> {
    targets.retain(|t| !t.addresses.is_empty());
    let Some(best) = targets.iter().map(|t| t.priority).min() else {
        return Vec::new();
    };
    targets.retain(|t| t.priority == best);
    let heaviest = targets
        .iter()
        .map(|t| u32::from(t.weight))
        .max()
        .unwrap_or(0);
    let mut set = Vec::new();
    for target in targets {
        // All weights 0: equal shares.
        let shares = (u32::from(target.weight) * WEIGHT_SHARES + heaviest / 2)
            .checked_div(heaviest)
            .unwrap_or(1)
            .max(1);
        for address in target.addresses {
            for _ in 0..shares {
                set.push(AddressRecord {
                    address,
                    protocol: Protocol::Http,
                });
            }
        }
    }
    set
}

impl Registry for Dns {
    fn kind(&self) -> RegistryKind {
        RegistryKind::Dns
    }

    fn lists_all(&self) -> bool {
        false
    }

    fn watch<'a>(
        &'a self,
        scope: &'a Scope,
        sink: &'a Sink,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let Scope::Service(service) = scope else {
                // The probe: any answer about the domain, even "no such name", shows the
                // servers answer.
                match self.resolver.lookup_ip(self.domain.as_str()).await {
                    Ok(_) => {}
                    Err(e) if absent(&e) => {}
                    Err(e) => return Err(failure(&self.domain, &e)),
                }
                sink.set(EndpointSet::default());
                return Ok(());
            };
            loop {
                let (set, until) = self.lookup(service).await?;
                sink.set(EndpointSet {
                    addresses: BTreeMap::from([(service.clone(), set)]),
                    nodes: Vec::new(),
                });
                let wait = until
                    .saturating_duration_since(Instant::now())
                    .clamp(MIN_REFRESH, MAX_REFRESH);
                tokio::time::sleep(wait).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(priority: u16, weight: u16, port: u16) -> Target {
        Target {
            priority,
            weight,
            addresses: vec![SocketAddr::from(([127, 0, 0, 1], port))],
        }
    }

    fn count(set: &[AddressRecord], port: u16) -> usize {
        set.iter().filter(|a| a.address.port() == port).count()
    }

    #[test]
    fn only_the_lowest_priority_with_an_address_is_used() {
        let set = weighted(vec![target(20, 1, 2), target(10, 1, 1)]);
        assert!(count(&set, 1) > 0 && count(&set, 2) == 0);
        let mut empty = target(5, 1, 3);
        empty.addresses.clear();
        let set = weighted(vec![empty, target(20, 1, 2)]);
        assert!(count(&set, 2) > 0);
    }

    #[test]
    fn weights_set_each_target_share() {
        let set = weighted(vec![target(10, 30, 1), target(10, 10, 2), target(10, 0, 3)]);
        assert_eq!((count(&set, 1), count(&set, 2), count(&set, 3)), (8, 3, 1));
    }
}
