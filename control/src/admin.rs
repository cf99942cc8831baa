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
                if let Some(metrics) = state.metrics().cloned() {
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

fn json_reply(value: impl serde::Serialize) -> Response<Full<Bytes>> {
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
        (&Method::GET, "/status") => json_reply(state.status()),
        (&Method::GET, "/peers") => json_reply(state.peers()),
        (&Method::GET, "/routes") => json_reply(state.routes()),
        (&Method::GET, "/subscriptions") => json_reply(state.subscriptions()),
        (&Method::GET, "/services") => json_reply(state.services()),
        (&Method::GET, "/registry") => json_reply(state.registry()),
        (&Method::GET, "/config") => json_reply(state.config()),
        (&Method::POST, "/drain") => {
            state.drain();
            text(StatusCode::ACCEPTED, "draining\n")
        }
        (
            _,
            "/healthz" | "/readyz" | "/metrics" | "/status" | "/peers" | "/routes" | "/services"
            | "/subscriptions" | "/registry" | "/config" | "/drain",
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

fn metrics(state: &NodeState) -> Response<Full<Bytes>> {
    match state.render_metrics() {
        Some(text) => reply(StatusCode::OK, "text/plain; version=0.0.4", text),
        None => text(
            StatusCode::NOT_FOUND,
            "metrics are not recorded in this process\n",
        ),
    }
}
