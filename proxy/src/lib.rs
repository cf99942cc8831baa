//! Ferry's data plane.
//!
//! The outbound side accepts the local application's calls (HTTP/1.1, h2c, gRPC, CONNECT, and
//! plain TCP on dedicated listeners), finds the service's endpoints in a [`Directory`], picks
//! one ([`balance`]) and forwards the call: straight to a local address, or over a tunnel
//! stream to the node that fronts the service. The inbound side takes streams that peers
//! opened and delivers them to this node's local services.
//!
//! A call's path, in the order it runs, and where each step lives:
//!
//! ```text
//! outbound/http.rs, outbound/tcp.rs   listeners for the application
//! deadline.rs → retry.rs → balance/   the outbound stack (call.rs: what travels down it)
//! forward/                            one try: to an address through pool/, or to a node
//!                                     over a tunnel stream (forward/node.rs, codec/)
//! inbound.rs                          the serving node: the stream to its local service
//! ```
//!
//! The proxy never reads config files: the node (`ferry-control`) hands it what it needs.
#![forbid(unsafe_code)]

pub mod access;
pub mod balance;
pub mod body;
pub mod broker;
mod call;
pub mod codec;
mod deadline;
mod directory;
mod error;
mod forward;
#[doc(hidden)]
pub mod fuzzing;
mod headers;
mod inbound;
pub mod intercept;
mod metrics;
mod outbound;
mod pool;
mod replay;
mod retry;
mod splice;
mod target;
mod throttle;

pub use directory::{Directory, Endpoint, EndpointId, Resolution};
pub use error::{ProxyError, TryError};
pub use inbound::{inbound_handler, InboundCalls};
pub use outbound::{serve_http_outbound, serve_tcp_outbound, Outbound, OutboundSettings};
pub use pool::Upstreams;
pub use target::{ServiceName, Target};
