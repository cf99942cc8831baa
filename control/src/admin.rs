//! The admin API, on a runtime and thread of its own so that it can neither slow the data
//! path nor be starved by it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{json, Value};
use tokio::sync::watch;
use tracing::{debug, error};

use crate::node::NodeState;

/// How long a stopping admin server lets its last responses finish.
const ADMIN_DRAIN: Duration = Duration::from_secs(2);

/// How often histogram samples are folded into their buckets. The Prometheus recorder keeps
/// every sample until then (or until a scrape): without this, a node that nobody scrapes grew
/// by about 20 bytes a request, without bound.
const METRICS_UPKEEP: Duration = Duration::from_secs(1);

/// Serves the admin API on `listener` from a new thread until `stop` turns true, then finishes
/// the responses in flight (the answer to `POST /drain` among them) and ends the thread.
pub fn spawn(
    listener: std::net::TcpListener,
    state: Arc<NodeState>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("ferry-admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                if let Some(metrics) = state.metrics.clone() {
                    tokio::spawn(async move {
                        let mut every = tokio::time::interval(METRICS_UPKEEP);
                        loop {
                            every.tick().await;
                            metrics.run_upkeep();
                        }
                    });
                }
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(e) => return error!(error = %e, "admin listener failed"),
                };
                let graceful = GracefulShutdown::new();
                loop {
                    let stream = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => stream,
                            Err(_) => continue,
                        },
                        _ = stop.wait_for(|stop| *stop) => break,
                    };
                    let state = state.clone();
                    let service = service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(route(&state, request)) }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            debug!(error = %e, "admin connection ended");
                        }
                    });
                }
                let _ = tokio::time::timeout(ADMIN_DRAIN, graceful.shutdown()).await;
            })
        })
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", body.into())
}

fn json_reply(value: Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(&value).unwrap_or_default();
    body.push(b'\n');
    reply(StatusCode::OK, "application/json", body)
}

fn route(state: &NodeState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    match (request.method(), path) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => readyz(state),
        (&Method::GET, "/metrics") => metrics(state),
        (&Method::GET, "/status") => json_reply(status(state)),
        (&Method::GET, "/peers") => json_reply(peers(state)),
        (&Method::GET, "/routes") => json_reply(routes(state)),
        (&Method::GET, "/services") => json_reply(services(state)),
        (&Method::GET, "/registry") => json_reply(registry(state)),
        (&Method::GET, "/config") => {
            json_reply(serde_json::to_value(state.config()).unwrap_or(Value::Null))
        }
        (&Method::POST, "/drain") => {
            state.drain();
            text(StatusCode::ACCEPTED, "draining\n")
        }
        (
            _,
            "/healthz" | "/readyz" | "/metrics" | "/status" | "/peers" | "/routes" | "/services"
            | "/registry" | "/config" | "/drain",
        ) => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => text(StatusCode::NOT_FOUND, format!("no admin endpoint {path}\n")),
    }
}

fn readyz(state: &NodeState) -> Response<Full<Bytes>> {
    let warnings: String = state
        .warnings()
        .iter()
        .map(|w| format!("warning: {w}\n"))
        .collect();
    match state.readiness() {
        Ok(()) => text(StatusCode::OK, format!("ready\n{warnings}")),
        Err(why) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n{warnings}"),
        ),
    }
}

/// Gauges are read from the node's state at scrape time, so they can never go stale.
fn metrics(state: &NodeState) -> Response<Full<Bytes>> {
    let Some(handle) = &state.metrics else {
        return text(
            StatusCode::NOT_FOUND,
            "metrics are not recorded in this process\n",
        );
    };
    let peers = state.network.peers();
    for s in ["up", "connecting", "down"] {
        let n = peers.iter().filter(|p| p.state.as_str() == s).count();
        metrics::gauge!("ferry_tunnel_peers", "state" => s).set(n as f64);
    }
    for p in &peers {
        if let Some(rtt) = p.rtt {
            metrics::gauge!("ferry_tunnel_rtt_seconds", "peer" => p.key.to_string())
                .set(rtt.as_secs_f64());
        }
    }
    let mut by_dc = std::collections::BTreeMap::<String, usize>::new();
    let dc = state.config().node.datacenter;
    *by_dc.entry(dc).or_default() += state.services.list().len();
    for r in state.network.routes() {
        *by_dc.entry(r.datacenter).or_default() += 1;
    }
    for (dc, n) in by_dc {
        metrics::gauge!("ferry_routes", "datacenter" => dc).set(n as f64);
    }
    let registry = state.registry.status();
    let kind = registry.kind.as_str();
    metrics::gauge!("ferry_registry_up", "kind" => kind).set(f64::from(u8::from(registry.up)));
    metrics::gauge!("ferry_registry_nodes", "kind" => kind).set(registry.nodes.len() as f64);
    let addresses: usize = registry.addresses.values().map(Vec::len).sum();
    metrics::gauge!("ferry_registry_addresses", "kind" => kind).set(addresses as f64);
    reply(StatusCode::OK, "text/plain; version=0.0.4", handle.render())
}

fn status(state: &NodeState) -> Value {
    let config = state.config();
    let ready = state.readiness();
    json!({
        "name": config.node.name,
        "datacenter": config.node.datacenter,
        "key": state.key.to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "ready": ready.is_ok(),
        "reason": ready.err(),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "tunnel": state.addresses.tunnel.to_string(),
        "outbounds": state.addresses.outbounds.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "peers": state.network.peers().iter().filter(|p| p.state.as_str() == "up").count(),
        "services": state.services.list().len(),
        "routes": state.network.routes().len(),
        "registry": state.registry.kind().as_str(),
    })
}

fn peers(state: &NodeState) -> Value {
    Value::Array(
        state
            .network
            .peers()
            .into_iter()
            .map(|p| {
                json!({
                    "key": p.key.to_string(),
                    "name": p.name,
                    "datacenter": p.datacenter,
                    "address": p.address,
                    "state": p.state.as_str(),
                    "rtt_ms": p.rtt.map(|r| r.as_secs_f64() * 1000.0),
                    "path": p.path,
                })
            })
            .collect(),
    )
}

fn routes(state: &NodeState) -> Value {
    let config = state.config();
    let mut rows: Vec<Value> = state
        .services
        .list()
        .iter()
        .map(|s| {
            json!({
                "service": s.name(),
                "datacenter": config.node.datacenter,
                "node": config.node.name,
                "endpoint": s.address().to_string(),
                "via": "local",
                "metric": 0,
                "healthy": s.healthy(),
            })
        })
        .collect();
    let registry = state.registry.status();
    for (service, set) in &registry.addresses {
        for address in set {
            rows.push(json!({
                "service": service,
                "datacenter": config.node.datacenter,
                "node": null,
                "endpoint": address.to_string(),
                "via": format!("registry {}", registry.kind),
                "metric": 0,
                "healthy": true,
            }));
        }
    }
    for r in state.network.routes() {
        // The node's tunnel address, for a route learned from the node itself; a route
        // through a gateway names the gateway instead.
        let via = match r.via {
            None => "direct".to_owned(),
            Some(gateway) => state
                .network
                .node_name(&gateway)
                .unwrap_or_else(|| gateway.to_string()),
        };
        rows.push(json!({
            "service": r.service,
            "datacenter": r.datacenter,
            "node": r.node,
            "endpoint": state.network.node_address(&r.key).unwrap_or_default(),
            "via": via,
            "metric": r.metric.as_secs_f64() * 1000.0,
            "healthy": r.healthy,
            "key": r.key.to_string(),
        }));
    }
    Value::Array(rows)
}

/// The registry's cache: its backend's state and what it last answered.
fn registry(state: &NodeState) -> Value {
    let status = state.registry.status();
    json!({
        "kind": status.kind.as_str(),
        "synced": status.synced,
        "up": status.up,
        "error": status.error,
        "errors": status.errors,
        "nodes": status.nodes,
        "services": status.addresses.iter().map(|(name, set)| {
            (name.clone(), Value::from(set.iter().map(|a| a.to_string()).collect::<Vec<_>>()))
        }).collect::<serde_json::Map<String, Value>>(),
    })
}

fn services(state: &NodeState) -> Value {
    Value::Array(
        state
            .services
            .list()
            .iter()
            .map(|s| {
                json!({
                    "name": s.name(),
                    "address": s.address().to_string(),
                    "protocol": s.protocol().as_str(),
                    "healthy": s.healthy(),
                    "checked": s.checked(),
                    "check": s.config.health.http.as_deref().map_or("tcp".to_owned(), |p| format!("http {p}")),
                })
            })
            .collect(),
    )
}
