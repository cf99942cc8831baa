//! The cost of interception (issue 19, point 5): HTTP/1.1 through one Ferry pair, entering at
//! the application's node either by its explicit outbound (`Host: bench`) or by a connection
//! to `bench`'s virtual address that the packet filter redirects to Ferry, alternating round
//! by round: requests a second on 32 connections, latency at a fixed rate, and the pair's CPU
//! time per request.
//!
//! The rules (`ferry intercept install`) go into this machine's own `nat` table for the run:
//! they touch only TCP to the virtual network, and are removed when the run ends, also on
//! Ctrl-C or an error.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::ferry::{self, NodeSpec};
use crate::lab::HTTP_SERVICE;
use crate::process::{output, wait_for_port};
use crate::side_by_side::{Comparison, Side};

const EXPLICIT: &str = "explicit outbound";
const INTERCEPTED: &str = "interception";
/// Where intercepted connections land: REDIRECT sends locally made packets to 127.0.0.1.
const LISTEN: &str = "127.0.0.1:17704";
const DNS: &str = "127.0.0.1:17753";
/// A UID nothing runs as: the rules spare it, so every connection the harness makes to a
/// virtual address is redirected (Ferry itself never dials one).
const SPARED_UID: &str = "65533";

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 68, last)
}

/// What a run measured.
pub(crate) struct Figures {
    pub comparison: Comparison,
    rounds: usize,
}

/// The installed rules; removed on drop.
struct Rules {
    ferry: PathBuf,
}

impl Rules {
    async fn install(ferry: &Path, config: &Path) -> Result<Rules> {
        let rules = Rules {
            ferry: ferry.to_owned(),
        };
        let mut c = std::process::Command::new(ferry);
        c.arg("intercept")
            .arg("install")
            .arg("--config")
            .arg(config);
        c.args(["--uid", SPARED_UID]);
        output("ferry intercept install", c).await?;
        Ok(rules)
    }
}

impl Drop for Rules {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.ferry)
            .args(["intercept", "uninstall"])
            .status();
    }
}

pub(crate) async fn measure(
    ferry_bin: &Path,
    nginx: &Path,
    dir: &Path,
    rounds: usize,
    timing: (Duration, Duration),
) -> Result<Figures> {
    let backend = SocketAddr::from((ip(1), 18080));
    let _nginx = crate::backend::start_nginx(nginx, backend, dir).await?;
    let (key_a, key_b) = (dir.join("icpt-a.key"), dir.join("icpt-b.key"));
    let public_a = ferry::keygen(ferry_bin, &key_a).await?;
    let public_b = ferry::keygen(ferry_bin, &key_b).await?;
    let explicit = SocketAddr::from((ip(11), 17701));
    let b = NodeSpec {
        name: "icpt-b".into(),
        key_file: key_b,
        tunnel: SocketAddr::from((ip(12), 17700)),
        admin: SocketAddr::from((ip(12), 17702)),
        peers: vec![],
        trust: vec![public_a],
        services: vec![(HTTP_SERVICE.into(), backend, "http")],
        http_outbound: None,
        tcp_outbounds: vec![],
        mesh: None,
    };
    let a = NodeSpec {
        name: "icpt-a".into(),
        key_file: key_a,
        tunnel: SocketAddr::from((ip(11), 17700)),
        admin: SocketAddr::from((ip(11), 17702)),
        peers: vec![(b.tunnel, public_b)],
        trust: vec![],
        services: vec![],
        http_outbound: Some(explicit),
        tcp_outbounds: vec![],
        mesh: None,
    };
    let toml_a = format!(
        "{}\n[intercept]\nenabled = true\nlisten = \"{LISTEN}\"\ndns = \"{DNS}\"\n",
        a.to_toml()
    );
    let mut process_b = ferry::start(ferry_bin, &b, dir, None)?;
    let mut process_a = ferry::start_with(ferry_bin, &a, &toml_a, dir, None)?;
    wait_for_port(explicit, &mut process_a, Duration::from_secs(10)).await?;
    ferry::wait_for_route(ferry_bin, &mut process_a, a.admin, None, HTTP_SERVICE).await?;
    let virtual_address = resolve(HTTP_SERVICE).await?;
    let _rules = Rules::install(ferry_bin, &dir.join("icpt-a.toml")).await?;
    let pids = [process_a.pid(), process_b.pid()];
    let sides = [
        Side {
            name: EXPLICIT,
            entry: explicit,
            pids,
        },
        Side {
            name: INTERCEPTED,
            entry: SocketAddr::new(virtual_address, 80),
            pids,
        },
    ];
    let mut comparison = Comparison::default();
    comparison.notes.push(format!(
        "`{HTTP_SERVICE}` resolved to {virtual_address} through Ferry's DNS; the rules spare UID {SPARED_UID} only."
    ));
    for round in 0..rounds {
        println!("round {} of {rounds} (interception)", round + 1);
        comparison.round(&sides, round, timing).await?;
        process_a.check_running()?;
        process_b.check_running()?;
    }
    Ok(Figures { comparison, rounds })
}

/// The virtual address of `name`, from Ferry's DNS, with `dig`.
async fn resolve(name: &str) -> Result<IpAddr> {
    let (host, port) = DNS.split_once(':').unwrap_or((DNS, "53"));
    let mut c = std::process::Command::new("dig");
    c.args([&format!("@{host}"), "-p", port, name, "A", "+short"]);
    let out = output("dig", c).await?;
    out.lines()
        .find_map(|l| l.trim().parse().ok())
        .ok_or_else(|| Error::Output {
            what: format!("dig {name}"),
            detail: format!("no address in {out:?}"),
        })
}

/// The report's section: medians over rounds, and interception's ratio to the explicit
/// outbound.
pub(crate) fn section(f: &Figures) -> String {
    let mut md = String::from("# The cost of interception\n\n");
    let _ = writeln!(
        md,
        "{} rounds, the two entries alternating. Medians.\n",
        f.rounds
    );
    md.push_str("| | explicit outbound | interception | ratio |\n| --- | ---: | ---: | ---: |\n");
    md.push_str(&f.comparison.rows([EXPLICIT, INTERCEPTED], ""));
    md.push('\n');
    md
}
