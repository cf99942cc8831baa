//! Ferry's network layer.
//!
//! A node has an [`Identity`] (an X25519 static key). Nodes are joined by [`Link`]s: one QUIC
//! connection per pair of nodes, carrying one bidirectional stream per proxied request or TCP
//! connection. Each stream opens with a [`StreamHeader`] naming the destination service. Over
//! the same link, nodes exchange [`Update`]s: who they are and what they front ([`Catalog`]),
//! and the routes they know. The [`Network`] keeps links to peers alive, feeds the route
//! [`Table`], and reaches nodes beyond gateways through relayed sessions.
//!
//! This crate never looks inside the streams: HTTP lives in `ferry-proxy`.
#![forbid(unsafe_code)]

mod admission;
pub mod backoff;
mod catalog;
pub mod certificate;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod header;
mod identity;
mod link;
mod liveness;
mod network;
mod noise;
mod peers;
mod relay;
mod route;
mod shared_dial;
mod table;
mod time;
mod transport;
mod update;
pub mod wire;

pub use catalog::{Catalog, CatalogEntry, CatalogSubscription};
pub use error::{Chain, Error};
pub use header::{Protocol, StreamHeader, StreamKind};
pub use identity::{write_secret, Identity, PublicKey};
pub use link::{Link, StreamReader, StreamWriter, TunnelStream};
pub use network::{
    AdmissionCounts, IncomingStream, Network, NetworkConfig, PeerAddress, PeerSnapshot, RemoteNode,
    StreamHandler,
};
pub use noise::{HandshakeData, PeerIdentity, Refused, Trust, MAX_CERTIFICATE};
pub use peers::PeerState;
pub use route::{service_key, Route, SubscriptionRoute};
pub use shared_dial::SharedDials;
pub use table::{Neighbor, Outgoing, Refusal, SessionId, Table};
pub use time::rfc3339;
pub use transport::Transport;
pub use update::{Advert, Update};
