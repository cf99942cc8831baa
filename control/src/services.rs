//! The local services this node fronts, each with an active health check.
//!
//! A service starts as not yet checked (not healthy) and its first check runs at once: like
//! Envoy, Ferry does not send traffic to an endpoint it has never seen answer. A service goes
//! unhealthy after [`FAILS_TO_DOWN`] failed checks in a row and healthy again after one
//! success; every change is announced to peers at once.
//!
//! Checks also run out of turn: a call that could not connect to a healthy service counts as
//! one failure and wakes its checker, whose own check then decides. A workload that dies is
//! out within milliseconds of the first call it refuses, instead of up to two intervals
//! later, and one refused call alone never takes a service out.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use http::Request;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use ferry_proxy::Upstreams;
use ferry_tunnel::{CatalogEntry, Protocol};

use crate::config::{self, ServiceConfig};

/// Failed checks in a row that take a service out.
const FAILS_TO_DOWN: u32 = 2;

/// One local workload and its health.
#[derive(Debug)]
pub struct LocalService {
    /// Its `[[service]]`; a changed one is a new service, with a fresh health.
    pub config: ServiceConfig,
    healthy: AtomicBool,
    checked: AtomicBool,
    /// Woken by a call that could not connect: check now.
    suspect: Notify,
}

impl LocalService {
    /// Its name, as the config spells it.
    pub fn name(&self) -> &str {
        &self.config.name
    }
    /// Where the workload listens.
    pub fn address(&self) -> SocketAddr {
        self.config.address
    }
    /// What it speaks, as the tunnel names it.
    pub fn protocol(&self) -> Protocol {
        protocol(self.config.protocol)
    }
    /// Whether calls go to it: false until its first check passes.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
    /// Whether its first check has run, whatever it found.
    pub fn checked(&self) -> bool {
        self.checked.load(Ordering::Relaxed)
    }
}

/// The config's protocol as the tunnel names it.
pub fn protocol(p: config::Protocol) -> Protocol {
    match p {
        config::Protocol::Http => Protocol::Http,
        config::Protocol::Grpc => Protocol::Grpc,
        config::Protocol::Tcp => Protocol::Tcp,
    }
}

type OnChange = Arc<dyn Fn(Vec<CatalogEntry>) + Send + Sync>;

struct Running {
    service: Arc<LocalService>,
    checker: JoinHandle<()>,
}

/// The node's local services. Cheap to clone.
#[derive(Clone)]
pub struct LocalServices {
    running: Arc<RwLock<Vec<Running>>>,
    on_change: OnChange,
    upstreams: Upstreams,
}

impl LocalServices {
    /// Starts checking `services`; `on_change` hears the catalog whenever health changes.
    pub fn start(
        services: &[ServiceConfig],
        upstreams: Upstreams,
        on_change: OnChange,
    ) -> LocalServices {
        let local = LocalServices {
            running: Arc::default(),
            on_change,
            upstreams,
        };
        local.replace(services);
        local
    }

    /// Swaps in a new list of services (on reload). Services whose config did not change
    /// keep their health and their checker.
    pub fn replace(&self, services: &[ServiceConfig]) {
        let mut running = self.running.write().unwrap_or_else(|e| e.into_inner());
        let mut kept = Vec::with_capacity(services.len());
        for config in services {
            if let Some(i) = running.iter().position(|r| &r.service.config == config) {
                kept.push(running.swap_remove(i));
            } else {
                let service = Arc::new(LocalService {
                    config: config.clone(),
                    healthy: AtomicBool::new(false),
                    checked: AtomicBool::new(false),
                    suspect: Notify::new(),
                });
                let checker = tokio::spawn(check_forever(service.clone(), self.clone()));
                kept.push(Running { service, checker });
            }
        }
        for gone in running.drain(..) {
            gone.checker.abort();
        }
        *running = kept;
        drop(running);
        self.announce();
    }

    /// Every service, in the config's order.
    pub fn list(&self) -> Vec<Arc<LocalService>> {
        let running = self.running.read().unwrap_or_else(|e| e.into_inner());
        running.iter().map(|r| r.service.clone()).collect()
    }

    /// The service named `name`; on every call's path, so it clones nothing but the one found.
    pub fn get(&self, name: &str) -> Option<Arc<LocalService>> {
        let running = self.running.read().unwrap_or_else(|e| e.into_inner());
        running
            .iter()
            .find(|r| r.service.name().eq_ignore_ascii_case(name))
            .map(|r| r.service.clone())
    }

    /// A call could not connect to `address` for service `name`: if that is one of ours and
    /// still healthy, its checker looks now.
    pub fn suspect(&self, name: &str, address: SocketAddr) {
        let ours = |s: &Arc<LocalService>| s.address() == address && s.healthy();
        if let Some(service) = self.get(name).filter(ours) {
            service.suspect.notify_one();
        }
    }

    /// Whether every service has had its first check.
    pub fn all_checked(&self) -> bool {
        self.list().iter().all(|s| s.checked())
    }

    fn announce(&self) {
        let catalog = self
            .list()
            .iter()
            .map(|s| CatalogEntry {
                service: s.name().to_owned(),
                protocol: s.protocol(),
                healthy: s.healthy(),
            })
            .collect();
        (self.on_change)(catalog);
    }
}

async fn check_forever(service: Arc<LocalService>, services: LocalServices) {
    let mut failures = 0u32;
    loop {
        let result = check(&service, &services.upstreams).await;
        let was = service.healthy();
        let now = match &result {
            Ok(()) => {
                failures = 0;
                true
            }
            Err(_) => {
                failures += 1;
                // Never checked before: one failure is enough to stay out.
                was && failures < FAILS_TO_DOWN
            }
        };
        service.healthy.store(now, Ordering::Relaxed);
        let first = !service.checked.swap(true, Ordering::Relaxed);
        if now != was || first {
            match &result {
                Ok(()) => info!(service = %service.name(), "healthy"),
                Err(e) => {
                    warn!(service = %service.name(), reason = %e, healthy = now, "health check failed")
                }
            }
            services.announce();
        }
        let interval = tokio::time::sleep(service.config.health.interval);
        if now {
            tokio::select! {
                _ = interval => {}
                _ = service.suspect.notified() => {
                    debug!(service = %service.name(), "a call could not connect; checking now");
                    failures += 1;
                }
            }
        } else {
            // Already out: calls no longer come here, and those pinned to it must not drive
            // the checks.
            interval.await;
        }
    }
}

async fn check(service: &LocalService, upstreams: &Upstreams) -> Result<(), String> {
    let timeout = service.config.health.timeout;
    let attempt = async {
        match &service.config.health.http {
            None => TcpStream::connect(service.address())
                .await
                .map(drop)
                .map_err(|e| format!("connect to {}: {e}", service.address())),
            Some(path) => {
                let request = Request::get(path.as_str())
                    .header(http::header::HOST, service.name())
                    .body(ferry_proxy::body::empty())
                    .map_err(|e| e.to_string())?;
                let response = upstreams
                    .send(service.address(), service.protocol(), request)
                    .await
                    .map_err(|e| e.reason().to_owned())?;
                let status = response.status();
                if status.is_success() || status.is_redirection() {
                    Ok(())
                } else {
                    Err(format!("GET {path} answered {status}"))
                }
            }
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer within {}",
                config::format_duration(timeout)
            ))
        })
}
