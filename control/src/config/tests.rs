//! The config's tests, by topic in `tests/`, and what they share: helpers that parse a file
//! and collect its errors, real keys, and an example file.

use std::net::SocketAddr;
use std::path::Path;

use super::{Config, ConfigError};

mod access;
mod broker;
mod defaults;
mod overrides;
mod reading;
mod rendering;
mod validation;

const FILE: &str = "/etc/ferry/ferry.toml";
// WireGuard's documentation keys: real, canonical base64 of 32 bytes.
const KEY_A: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
const KEY_B: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

fn parse(text: &str) -> Config {
    match Config::parse(text, Path::new(FILE)) {
        Ok(config) => config,
        Err(errors) => panic!("unexpected errors:\n{errors}"),
    }
}

/// The errors of a bad file as `(line, key)`, in the order reported.
fn errors(text: &str) -> Vec<(usize, String)> {
    full_errors(text)
        .into_iter()
        .map(|e| (e.line, e.key))
        .collect()
}

fn full_errors(text: &str) -> Vec<ConfigError> {
    match Config::parse(text, Path::new(FILE)) {
        Ok(config) => panic!("expected errors, got {config:#?}"),
        Err(errors) => {
            assert!(errors.iter().all(|e| e.file == Path::new(FILE)));
            errors.errors
        }
    }
}

fn at(line: usize, key: &str) -> (usize, String) {
    (line, key.to_string())
}

fn message_of(errors: &[ConfigError], key: &str) -> String {
    match errors.iter().find(|e| e.key == key) {
        Some(error) => error.message.clone(),
        None => panic!("no error for {key} in {errors:#?}"),
    }
}

/// A config file like the example in `docs/reference.md` ("Config file"), with real keys, its
/// optional lines commented out, and no `[deadlines]` or `[log]`, so that a test can add them.
const REFERENCE_EXAMPLE: &str = r#"[node]
name = "billing-1"            # default: hostname
datacenter = "eu-west"        # default: "dc1"
key_file = "node.key"         # relative paths are relative to this file

[tunnel]
listen = "0.0.0.0:7700"       # QUIC over UDP
advertise = "198.51.100.7:7700"   # what peers dial; default: the listen address
gateway = false               # true: carries traffic between this datacenter and others
peers = [ { address = "gw-a.us-east.example:7700", key = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=" } ]
trust = ["HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="]      # keys allowed to connect, besides those in peers
# trust_file = "trusted.keys" # one key a line, reloaded on change

[registry]
kind = "mesh"                 # mesh (default) | static | dns | mdns | etcd
# static: file = "services.toml" (reloaded on change; format below)
# dns:    domain = "svc.example.", nameservers = ["127.0.0.1:53"], port = 80
# etcd:   endpoints = ["http://127.0.0.1:2379"], prefix = "/ferry/"

[[service]]                   # local workloads this node fronts (inbound side)
name = "greeter"
address = "127.0.0.1:8080"
protocol = "http"             # http (HTTP/1.1 and h2c) | grpc | tcp
health = { http = "/healthz", interval = "1s" }   # optional; default: TCP connect check

[[outbound]]                  # entry points for the local application
kind = "http"                 # routed by Host / :authority; also an HTTP proxy and CONNECT
listen = "127.0.0.1:7701"

[[outbound]]
kind = "tcp"                  # opaque TCP to one service
listen = "127.0.0.1:6380"
service = "redis"

[admin]
listen = "127.0.0.1:7702"
"#;
