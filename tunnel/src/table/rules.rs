//! The rules of route exchange, as pure functions of who sends, who receives and what.
//!
//! Routes between datacenters are a path-vector: an announcement carries the datacenters it
//! crossed, and a datacenter refuses any that already crossed it, so no loop can form. Within
//! a datacenter, gateways act as BGP route reflectors: a sidecar announces only itself;
//! a gateway passes everything it knows to its sidecars, and passes to the other gateways of
//! its datacenter only what it did not learn from one of them. That keeps the gateways of a
//! datacenter from echoing routes to each other forever.

use crate::catalog::Catalog;
use crate::update::Advert;

/// The little a rule needs to know about a node at either end of a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbor {
    /// Its key, as its link's handshake proved it.
    pub key: crate::PublicKey,
    /// Its datacenter, from its hello.
    pub datacenter: String,
    /// Whether it is a gateway, from its hello: only a gateway may speak for other nodes.
    pub gateway: bool,
}

/// Datacenter names compare without regard to case, as service names do.
pub(crate) fn same_dc(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Why an announcement was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// It announces the receiving node itself.
    Ourselves,
    /// Its path does not start at the node's own datacenter.
    BadPath,
    /// A node that is not a gateway announced another node.
    NotAGateway,
    /// The path already crossed the receiver's datacenter.
    Loop,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Ourselves => "announces this node",
            Refusal::BadPath => "path does not start at the node's datacenter",
            Refusal::NotAGateway => "only gateways announce other nodes",
            Refusal::Loop => "path already crossed this datacenter",
        })
    }
}

/// Whether `me` accepts `advert` from neighbor `from`.
pub(crate) fn accept(me: &Catalog, from: &Neighbor, advert: &Advert) -> Result<(), Refusal> {
    let origin = &advert.catalog;
    if origin.key == me.key {
        return Err(Refusal::Ourselves);
    }
    if advert
        .path
        .first()
        .is_none_or(|dc| !same_dc(dc, &origin.datacenter))
    {
        return Err(Refusal::BadPath);
    }
    if origin.key != from.key && !from.gateway {
        return Err(Refusal::NotAGateway);
    }
    let crossed_us = advert.path.iter().any(|dc| same_dc(dc, &me.datacenter));
    let ours = advert.path.len() == 1 && same_dc(&origin.datacenter, &me.datacenter);
    if crossed_us && !ours {
        return Err(Refusal::Loop);
    }
    Ok(())
}

/// What a node may announce of itself when its certificate names `permitted`: its
/// announcement without the services the certificate does not name, and the names taken out.
pub(crate) fn permitted(mut advert: Advert, permitted: &[String]) -> (Advert, Vec<String>) {
    let allows = |service: &str| permitted.iter().any(|p| p.eq_ignore_ascii_case(service));
    if advert.catalog.services.iter().all(|s| allows(&s.service)) {
        return (advert, Vec::new());
    }
    let (kept, refused): (Vec<_>, Vec<_>) = advert
        .catalog
        .services
        .iter()
        .cloned()
        .partition(|s| allows(&s.service));
    advert.catalog = std::sync::Arc::new(Catalog {
        services: kept,
        ..(*advert.catalog).clone()
    });
    (advert, refused.into_iter().map(|s| s.service).collect())
}

/// What `me` tells neighbor `to` about a node whose best route `me` learned from `learned`
/// (`advert` carries the path as received and `me`'s own cost). `None`: nothing.
pub(crate) fn export(
    me: &Catalog,
    learned: &Neighbor,
    advert: &Advert,
    to: &Neighbor,
) -> Option<Advert> {
    let origin = &advert.catalog;
    if origin.key == to.key || learned.key == to.key || !me.gateway {
        return None;
    }
    if same_dc(&to.datacenter, &me.datacenter) {
        let reflected =
            to.gateway && learned.gateway && same_dc(&learned.datacenter, &me.datacenter);
        return (!reflected).then(|| advert.clone());
    }
    if !to.gateway || advert.path.iter().any(|dc| same_dc(dc, &to.datacenter)) {
        return None;
    }
    let mut path = advert.path.clone();
    if !same_dc(&origin.datacenter, &me.datacenter) {
        path.push(me.datacenter.clone());
    }
    Some(Advert {
        catalog: advert.catalog.clone(),
        path,
        metric: advert.metric,
    })
}

/// Whether two announcements of a node say the same thing: the same catalog and path, and
/// costs close enough that telling peers of the difference is not worth an update. Round-trip
/// times jitter all the time; only a change of a quarter (and of at least a millisecond)
/// moves traffic between datacenters.
pub(crate) fn same(a: &Advert, b: &Advert) -> bool {
    let (lo, hi) = (a.metric.min(b.metric), a.metric.max(b.metric));
    let close = hi - lo <= (lo / 4).max(1000);
    close && a.path == b.path && a.catalog == b.catalog
}
