//! Ferry's measuring instrument.
//!
//! The `harness` binary runs Ferry beside the peers a user would pick instead (no proxy at
//! all, an HAProxy pair with TLS 1.3 between its hops, Nebula's overlay) on this one machine,
//! in one run, alternating targets round by round so that drift (thermal, a neighbour's
//! build) hits them all alike, and writes `benches/RESULTS.md` and `benches/results.png`.
//! The criterion micro-benchmarks of the hot paths live in `benches/micro/`.
//!
//! Benchmarks are not tests: only the small parsing and statistics helpers have unit tests.
#![forbid(unsafe_code)]

mod backend;
mod broker;
mod bulk;
mod chart;
mod cli;
mod connections;
mod datacenters;
mod error;
mod external;
mod ferry;
mod haproxy;
mod identity;
mod impair;
mod intercept;
mod lab;
mod liveness;
mod load;
mod machine;
mod micro;
mod netns;
mod parts;
mod peers;
mod process;
mod report;
mod run;
mod side_by_side;
mod soak;
pub mod stats;
pub mod tool_output;
mod usage;

pub use error::Error;
pub use run::main;
