//! The Ferry node: config, local services and their health, the admin API, the CLI, and the
//! wiring of tunnel and proxy into one running [`node::Node`].
#![forbid(unsafe_code)]

pub mod admin;
pub mod admin_client;
pub mod ca;
pub mod cli;
pub mod commands;
pub mod config;
pub mod demo;
pub mod directory;
pub mod intercept_rules;
pub mod node;
pub mod registry;
pub mod services;
pub mod subscribers;
pub mod telemetry;
