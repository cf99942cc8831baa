//! The sidecar-pair anchors: two HAProxy instances with TLS 1.3 between them, as a user would
//! pair two proxies without a mesh. A takes plain traffic from the application and forwards it
//! over TLS to B, which terminates TLS and forwards to the backend. The three listener pairs
//! mirror Ferry's: HTTP/1.1, h2c for gRPC, and opaque TCP. Two pairs ([`Hops`]): one whose
//! hop carries HTTP/1.1 as HTTP/1.1, one thread per process as HAProxy chooses; and one whose
//! hop carries everything over HTTP/2 (`http-reuse always`, so the calls of many application
//! connections share a few TLS connections, as Ferry's tunnel does), one thread per process,
//! as Ferry runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::process::{output, wait_for_port, Process};

/// Listen addresses of one instance, and where it forwards each.
pub(crate) struct Listeners {
    pub http: (SocketAddr, SocketAddr),
    pub grpc: (SocketAddr, SocketAddr),
    pub tcp: (SocketAddr, SocketAddr),
}

/// A self-signed P-256 certificate and key in one PEM file, as HAProxy's `crt` wants.
pub(crate) async fn make_certificate(openssl: &Path, dir: &Path) -> Result<PathBuf> {
    let key = dir.join("haproxy-b.key");
    let cert = dir.join("haproxy-b.crt");
    let mut c = Command::new(openssl);
    c.args([
        "req",
        "-x509",
        "-nodes",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-days",
        "2",
        "-subj",
        "/CN=haproxy-b",
    ])
    .arg("-keyout")
    .arg(&key)
    .arg("-out")
    .arg(&cert);
    output("openssl req (the HAProxy certificate)", c).await?;
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(Error::io(format!("reading {}", p.display())))
    };
    let pem = dir.join("haproxy-b.pem");
    std::fs::write(&pem, read(&cert)? + &read(&key)?)
        .map_err(Error::io("writing haproxy-b.pem"))?;
    Ok(pem)
}

/// How a pair's hop between A and B carries HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hops {
    /// HTTP/1.1 as HTTP/1.1 (gRPC over HTTP/2); HAProxy's own choice of threads.
    Http1,
    /// Everything over HTTP/2 with `http-reuse always`; one thread per process.
    H2,
}

fn global(hops: Hops) -> String {
    let threads = match hops {
        Hops::Http1 => "",
        Hops::H2 => "    nbthread 1\n",
    };
    format!("{GLOBAL}{threads}{DEFAULTS}")
}

const GLOBAL: &str = "global
    maxconn 4000
    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-server-options ssl-min-ver TLSv1.3
    log stderr format short local0 warning
";

const DEFAULTS: &str = "
defaults
    log global
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
";

/// The application side: plain in, TLS 1.3 out to B (`verify none`: the pair trusts the
/// certificate it was given, as a self-signed mesh would; verification would not change cost).
pub(crate) fn config_a(l: &Listeners, hops: Hops) -> String {
    let (alpn, reuse) = match hops {
        Hops::Http1 => ("http/1.1", ""),
        Hops::H2 => ("h2", "    http-reuse always\n"),
    };
    format!(
        "{global}
frontend http_in
    mode http
    bind {http_in}
    default_backend http_out
backend http_out
    mode http
{reuse}    server b {http_out} ssl verify none alpn {alpn}

frontend grpc_in
    mode http
    bind {grpc_in} proto h2
    default_backend grpc_out
backend grpc_out
    mode http
{reuse}    server b {grpc_out} ssl verify none alpn h2

frontend tcp_in
    mode tcp
    bind {tcp_in}
    default_backend tcp_out
backend tcp_out
    mode tcp
    server b {tcp_out} ssl verify none
",
        global = global(hops),
        http_in = l.http.0,
        http_out = l.http.1,
        grpc_in = l.grpc.0,
        grpc_out = l.grpc.1,
        tcp_in = l.tcp.0,
        tcp_out = l.tcp.1,
    )
}

/// The service side: TLS 1.3 in, plain out to the backends.
pub(crate) fn config_b(l: &Listeners, pem: &Path, hops: Hops) -> String {
    let pem = pem.display();
    let alpn = match hops {
        Hops::Http1 => "http/1.1",
        Hops::H2 => "h2",
    };
    format!(
        "{global}
frontend http_in
    mode http
    bind {http_in} ssl crt {pem} alpn {alpn}
    default_backend http_out
backend http_out
    mode http
    server backend {http_out}

frontend grpc_in
    mode http
    bind {grpc_in} ssl crt {pem} alpn h2
    default_backend grpc_out
backend grpc_out
    mode http
    server backend {grpc_out} proto h2

frontend tcp_in
    mode tcp
    bind {tcp_in} ssl crt {pem}
    default_backend tcp_out
backend tcp_out
    mode tcp
    server backend {tcp_out}
",
        global = global(hops),
        http_in = l.http.0,
        http_out = l.http.1,
        grpc_in = l.grpc.0,
        grpc_out = l.grpc.1,
        tcp_in = l.tcp.0,
        tcp_out = l.tcp.1,
    )
}

/// Checks and starts one instance in the foreground, waiting for its HTTP listener.
pub(crate) async fn start(
    haproxy: &Path,
    name: &str,
    config: String,
    l: &Listeners,
    dir: &Path,
) -> Result<Process> {
    let path = dir.join(format!("{name}.cfg"));
    std::fs::write(&path, config).map_err(Error::io(format!("writing {}", path.display())))?;
    let mut check = Command::new(haproxy);
    check.arg("-c").arg("-f").arg(&path);
    output(&format!("haproxy -c -f {}", path.display()), check).await?;
    let mut c = Command::new(haproxy);
    c.arg("-db").arg("-f").arg(&path);
    let mut process = Process::spawn(name, &mut c, dir)?;
    wait_for_port(l.http.0, &mut process, Duration::from_secs(10)).await?;
    Ok(process)
}
