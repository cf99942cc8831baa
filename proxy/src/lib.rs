//! Ferry's data plane.
//!
//! The outbound side accepts the local application's calls (HTTP/1.1, h2c, gRPC, CONNECT, and
//! plain TCP on dedicated listeners), finds the service's endpoints in a [`Directory`], picks
//! one ([`balance`]) and forwards the call: straight to a local address, or through a tunnel
//! [`Link`](ferry_tunnel::Link) to the node that fronts the service. The inbound side takes
//! streams that peers opened and delivers them to this node's local services.
//!
//! The proxy never reads config files: the node (`ferry-control`) hands it what it needs.
#![forbid(unsafe_code)]

pub mod balance;
pub mod body;
mod call;
mod client;
mod deadline;
mod directory;
mod error;
mod forward;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
mod headers;
mod inbound;
mod metrics;
mod outbound;
mod pool;
mod remote;
mod retry;
mod splice;
mod target;

pub use client::Upstreams;
pub use directory::{Directory, Endpoint, EndpointId, Resolution, Target};
pub use error::ProxyError;
pub use inbound::inbound_handler;
pub use outbound::{serve_http_outbound, serve_tcp_outbound, Outbound, OutboundSettings};
pub use target::ServiceName;
