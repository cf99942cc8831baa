//! Many connections at once (issue 21, point 5): a Ferry pair holds 10,000 proxied TCP
//! connections, each checked end to end first (a byte echoed back), and says what they cost
//! in resident memory on each node. The echo server is a separate Python process, so that no
//! process here needs more than 20,000 descriptors (the hard limit of these machines).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::ferry;
use crate::load;
use crate::process::{wait_for_port, Process};
use crate::usage;

/// How many connections are held.
pub(crate) const HELD: usize = 10_000;

/// An asyncio echo server: every byte back, for as many connections as come.
const ECHO: &str = "
import asyncio, sys
async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(echo, sys.argv[1], int(sys.argv[2]), backlog=4096)
    async with server:
        await server.serve_forever()
asyncio.run(main())
";

/// What a run saw.
pub(crate) struct Figures {
    /// Resident MiB of the application's node and the service's, idle.
    idle: (f64, f64),
    /// The same with [`HELD`] connections open.
    held: (f64, f64),
    /// How long opening and checking them all took.
    opened_in: Duration,
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 69, last)
}

pub(crate) async fn measure(ferry_bin: &Path, dir: &Path) -> Result<Figures> {
    let echo = SocketAddr::from((ip(3), 18090));
    let mut c = Command::new("python3");
    c.arg("-c")
        .arg(ECHO)
        .arg(echo.ip().to_string())
        .arg(echo.port().to_string());
    let mut echo_server = Process::spawn("echo", &mut c, dir)?;
    wait_for_port(echo, &mut echo_server, Duration::from_secs(10)).await?;

    let (a, b) = ferry::tcp_pair(ferry_bin, dir, "many", (ip(1), ip(2)), echo).await?;
    let entry = a.tcp_outbounds[0].0;
    let mut node_b = ferry::start(ferry_bin, &b, dir, None)?;
    let mut node_a = ferry::start(ferry_bin, &a, dir, None)?;
    ferry::wait_for_route(ferry_bin, &mut node_a, a.admin, None, "echo").await?;

    let rss = || -> Result<(f64, f64)> {
        Ok((usage::rss_mib(node_a.pid())?, usage::rss_mib(node_b.pid())?))
    };
    let idle = rss()?;
    let started = Instant::now();
    let held = load::hold_connections(entry, HELD).await?;
    let opened_in = started.elapsed();
    // Buffers are allocated on first read: let both nodes settle before reading /proc.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with_held = rss()?;
    node_a.check_running()?;
    node_b.check_running()?;
    drop(held);
    Ok(Figures {
        idle,
        held: with_held,
        opened_in,
    })
}

pub(crate) fn section(f: &Figures) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {HELD} connections through one Ferry pair\n");
    let _ = writeln!(
        md,
        "{HELD} TCP connections opened one after another through the application node's TCP \
         outbound, across the tunnel, to an echo server behind the service node, each checked \
         with a byte echoed back, then all held open ({:.1} s to open them all).\n",
        f.opened_in.as_secs_f64()
    );
    let per = |idle: f64, held: f64| (held - idle) * 1024.0 / HELD as f64;
    let _ = writeln!(
        md,
        "| node | idle (MiB) | {HELD} held (MiB) | per connection (KiB) |"
    );
    let _ = writeln!(md, "| --- | --: | --: | --: |");
    for (name, idle, held) in [
        ("application side", f.idle.0, f.held.0),
        ("service side", f.idle.1, f.held.1),
    ] {
        let _ = writeln!(
            md,
            "| {name} | {idle:.1} | {held:.1} | {:.1} |",
            per(idle, held)
        );
    }
    md.push('\n');
    md
}
