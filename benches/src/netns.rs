//! Two network namespaces joined by a veth pair, so bulk TCP crosses a real (virtual) link
//! with its own addresses. Addresses come from 10.99.0.0/24 and exist only inside the two
//! namespaces; nothing is routed to or from the host's own namespace. Dropping the handle
//! deletes both namespaces (and with them the veth pair), also after an error or Ctrl-C.

use std::net::Ipv4Addr;
use std::process::Command;

use crate::error::{Error, Result};

pub(crate) const NS1: &str = "ferry-bench-1";
pub(crate) const NS2: &str = "ferry-bench-2";
/// The veth ends: 10.99.0.0/25 is the underlay, 10.99.0.128/25 the Nebula overlay.
pub(crate) const VETH1: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
pub(crate) const VETH2: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
pub(crate) const OVERLAY1: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 129);
pub(crate) const OVERLAY2: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 130);

pub(crate) struct Namespaces {
    _private: (),
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(Error::io(format!("running ip {}", args.join(" "))))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            what: format!("ip {}", args.join(" ")),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn delete() {
    // Quietly: after a clean run or on first use they are simply not there.
    for ns in [NS1, NS2] {
        let _ = Command::new("ip").args(["netns", "del", ns]).output();
    }
}

impl Namespaces {
    pub(crate) fn create() -> Result<Namespaces> {
        if !crate::peers::is_root() {
            return Err(Error::Usage(
                "bulk TCP between network namespaces needs root (ip netns); run the harness as root".into(),
            ));
        }
        // A run killed with SIGKILL could not clean up; start from nothing.
        delete();
        let handle = Namespaces { _private: () };
        ip(&["netns", "add", NS1])?;
        ip(&["netns", "add", NS2])?;
        ip(&[
            "link", "add", "fb-veth1", "netns", NS1, "type", "veth", "peer", "name", "fb-veth2",
            "netns", NS2,
        ])?;
        for (ns, dev, addr) in [(NS1, "fb-veth1", VETH1), (NS2, "fb-veth2", VETH2)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/25"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(handle)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        delete();
    }
}
