//! Relaying through gateways: an end-to-end session between two nodes that share no link.
//!
//! Node A reaches node B through gateways by running an *inner* QUIC connection to B (the same
//! Noise IK crypto and identities as any link) whose packets travel as QUIC DATAGRAM frames on
//! the *outer* links A–G1, G1–G2, G2–B. Each datagram starts with a small header naming the
//! destination and source keys ([`datagram`]); a gateway reads that header and forwards the
//! datagram toward its destination, and can read nothing else. The inner endpoint runs on a
//! [`Relay`], which looks to quinn like a UDP socket ([`socket`]). Why datagrams rather than
//! streams, and the packet-size arithmetic, are in `docs/tunnel.md`.

pub(crate) mod datagram;
mod socket;

#[cfg(test)]
mod tests;

pub(crate) use socket::Relay;
