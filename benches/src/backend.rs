//! The backends every target forwards to: nginx serving a small fixed body (HTTP/1.1), a small
//! gRPC server (h2c, answering any unary call with one framed message and `grpc-status: 0`),
//! and a TCP echo server for the held connections; and an in-process HTTP/1.1 server for the
//! parts that run without nginx.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::error::{Error, Result};
use crate::process::{wait_for_port, Process};

/// What nginx answers to every request.
pub(crate) const BODY: &str = "hello from the ferry bench backend\n";

/// nginx with one worker, so the backend is the same modest server behind every target.
pub(crate) async fn start_nginx(nginx: &Path, listen: SocketAddr, dir: &Path) -> Result<Process> {
    let root = dir.join("nginx");
    std::fs::create_dir_all(root.join("tmp")).map_err(Error::io("creating nginx's directory"))?;
    let r = root.display();
    let conf = format!(
        "user root;
worker_processes 1;
# One process: killing it leaves no orphaned worker behind.
master_process off;
daemon off;
pid {r}/nginx.pid;
error_log {r}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {r}/tmp;
    proxy_temp_path {r}/tmp;
    # A keep-alive connection must outlive any measurement, as a sidecar's pool would.
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
        listen {listen};
        location / {{
            default_type text/plain;
            return 200 {BODY:?};
        }}
    }}
}}
"
    );
    let path = root.join("nginx.conf");
    std::fs::write(&path, conf).map_err(Error::io(format!("writing {}", path.display())))?;
    let mut c = Command::new(nginx);
    c.arg("-p").arg(&root).arg("-c").arg(&path);
    let mut process = Process::spawn("nginx", &mut c, dir)?;
    wait_for_port(listen, &mut process, Duration::from_secs(10)).await?;
    Ok(process)
}

/// The gRPC message every call gets back: a protobuf string field 1 = "hello".
const GRPC_REPLY: &[u8] = &[0, 0, 0, 0, 7, 0x0a, 5, b'h', b'e', b'l', b'l', b'o'];

/// Serves h2c gRPC on `listener` until the runtime ends.
pub(crate) fn spawn_grpc(listener: TcpListener) {
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(grpc_call);
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

async fn grpc_call(request: Request<Incoming>) -> Result<Response<GrpcBody>, Infallible> {
    // Read the whole request message, as a unary handler would before answering.
    let _ = request.into_body().collect().await;
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let body = Full::new(Bytes::from_static(GRPC_REPLY))
        .with_trailers(std::future::ready(Some(Ok(trailers))));
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    Ok(response)
}

type GrpcBody = http_body_util::combinators::WithTrailers<
    Full<Bytes>,
    std::future::Ready<Option<Result<HeaderMap, Infallible>>>,
>;

/// Serves HTTP/1.1 on `listener` until the runtime ends, answering every request with
/// [`BODY`]: for the soak, which needs no peer installed and measures no backend.
pub(crate) fn spawn_http(listener: TcpListener) {
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_: Request<Incoming>| {
                    let body = Full::new(Bytes::from_static(BODY.as_bytes()));
                    std::future::ready(Ok::<_, Infallible>(Response::new(body)))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// Echoes every byte back, for connections that are held open and checked end to end.
pub(crate) fn spawn_echo(listener: TcpListener) {
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
}

/// Binds a listener the in-process servers use, naming the address on failure.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(Error::io(format!("binding {addr}")))
}
