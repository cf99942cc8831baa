//! The `static` registry: a TOML file of plain addresses (`docs/reference.md`: "The `static`
//! services file"), reread when it changes. A file that does not parse leaves the last good
//! set in place, and the reason is shown in `/readyz` and the log until the file is fixed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::{AddressRecord, EndpointSet, Registry, RegistryError, Scope, Sink};
use crate::config::{Protocol, RegistryConfig, RegistryKind};
use crate::services::protocol;

/// How often the file is checked for a change (its modification time or size).
const POLL: Duration = Duration::from_millis(500);

/// One `[[service]]` of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticService {
    /// The service name, lower-cased: names match without regard to case.
    pub name: String,
    /// Where it listens, dialed directly.
    pub endpoints: Vec<SocketAddr>,
    /// What it speaks; `http` when the file does not say.
    pub protocol: Protocol,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileText {
    #[serde(default)]
    service: Vec<ServiceText>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceText {
    name: String,
    endpoints: Vec<String>,
    #[serde(default)]
    protocol: Option<String>,
}

/// Reads and checks a static services file. The error names the file, and the line for a
/// syntax error, and says what is wrong.
pub fn read_static_file(path: &Path) -> Result<Vec<StaticService>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse(text: &str) -> Result<Vec<StaticService>, String> {
    let file: FileText = toml::from_str(text).map_err(|e| {
        // toml's message spans lines (it quotes the source); one line reads better in a log.
        e.to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    })?;
    let mut seen = std::collections::HashSet::new();
    file.service
        .into_iter()
        .map(|s| {
            let name = crate::config::check_service_name(&s.name)?.to_ascii_lowercase();
            if !seen.insert(name.clone()) {
                return Err(format!("service \"{name}\" is listed twice"));
            }
            let endpoints = s
                .endpoints
                .iter()
                .map(|e| {
                    e.parse::<SocketAddr>().map_err(|_| {
                        format!("service \"{name}\": endpoint \"{e}\" is not an IP:PORT address")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let protocol = match s.protocol {
                Some(p) => p.parse().map_err(|e| format!("service \"{name}\": {e}"))?,
                None => Protocol::default(),
            };
            Ok(StaticService {
                name,
                endpoints,
                protocol,
            })
        })
        .collect()
}

fn endpoint_set(services: Vec<StaticService>) -> EndpointSet {
    let addresses: BTreeMap<String, Vec<AddressRecord>> = services
        .into_iter()
        .map(|s| {
            let protocol = protocol(s.protocol);
            let set = s
                .endpoints
                .into_iter()
                .map(|address| AddressRecord { address, protocol })
                .collect();
            (s.name, set)
        })
        .collect();
    EndpointSet {
        addresses,
        nodes: Vec::new(),
    }
}

pub(super) struct StaticFile {
    path: PathBuf,
}

impl StaticFile {
    pub(super) fn new(config: &RegistryConfig) -> Result<StaticFile, String> {
        let path = config
            .file
            .clone()
            .ok_or("the static registry needs registry.file")?;
        Ok(StaticFile { path })
    }

    fn stamp(&self) -> Option<(Option<SystemTime>, u64)> {
        let meta = std::fs::metadata(&self.path).ok()?;
        Some((meta.modified().ok(), meta.len()))
    }
}

impl Registry for StaticFile {
    fn kind(&self) -> RegistryKind {
        RegistryKind::Static
    }

    fn watch<'a>(
        &'a self,
        _: &'a Scope,
        sink: &'a Sink,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let mut seen = None;
            loop {
                let stamp = self.stamp();
                if seen.as_ref() != Some(&stamp) {
                    let services = read_static_file(&self.path).map_err(RegistryError)?;
                    sink.set(endpoint_set(services));
                    seen = Some(stamp);
                }
                tokio::time::sleep(POLL).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_example_parses() {
        let services = parse(
            "[[service]]\nname = \"greeter\"\nendpoints = [\"10.0.0.5:8080\", \"10.0.0.6:8080\"]\n\
             protocol = \"http\"\n",
        )
        .unwrap();
        assert_eq!(services.len(), 1);
        assert_eq!(services[0].endpoints.len(), 2);
        assert_eq!(services[0].protocol, Protocol::Http);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let cases = [
            ("[[service]]\nname = \"a\"\nendpoints = [\"nowhere\"]\n", "not an IP:PORT"),
            ("[[service]]\nname = \"a.b\"\nendpoints = []\n", "not a service name"),
            ("[[service]]\nname = \"a\"\nendpoints = []\nprotocol = \"udp\"\n", "unknown protocol"),
            ("[[service]]\nname = \"a\"\nendpoints = []\nport = 1\n", "unknown field"),
            ("[[service]]\nname = \"a\"\nendpoints = []\n[[service]]\nname = \"A\"\nendpoints = []\n", "listed twice"),
            ("[[service]\n", "line 1"),
        ];
        for (text, expected) in cases {
            let error = parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }
}
