//! Two hosts on one machine: a pair of network namespaces joined by a veth pair, for tests
//! where a service listens on the far host's loopback so that only the tunnel can reach it.
//!
//! Needs root (to create namespaces) and `ip` from iproute2. Without them the test fails
//! saying so: a test that quietly skips looks the same as one that passed.

use super::{run, Ran};
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use std::{env, fs};

/// Namespace names start with this, then `<pid>-<n>-a|b`: unique per test, and a leftover of
/// a killed test run can be told apart from one of a live run.
const PREFIX: &str = "ferry-";

/// One side of a [`NetnsPair`]: a namespace and its end of the veth.
#[derive(Debug, Clone)]
pub(crate) struct Netns {
    /// The namespace's name, for `ip netns exec` and the harness's `netns` hooks.
    pub name: String,
    /// This side's veth address, `10.210.N.1` (a) or `10.210.N.2` (b).
    pub ip: IpAddr,
}

impl Netns {
    /// The name as the harness's `Option<&str>` namespace hooks take it.
    pub(crate) fn netns(&self) -> Option<&str> {
        Some(&self.name)
    }
}

/// Two namespaces `a` and `b`, each with `lo` up, joined by a veth pair addressed in
/// `10.210.N.0/24`. These addresses exist only inside the namespaces. Deleted on drop, also
/// when the test panics: declare the pair before the nodes and backends that run inside it,
/// so they are dropped (killed) first.
#[derive(Debug)]
pub(crate) struct NetnsPair {
    pub a: Netns,
    pub b: Netns,
}

impl NetnsPair {
    /// Creates the pair; panics naming what is missing when this process cannot.
    pub(crate) fn new() -> NetnsPair {
        require_root_and_ip();
        remove_leftovers(PREFIX);
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // Spread over 1..=250 by pid too, so that test binaries running at once pick apart.
        let subnet = 1 + ((pid.wrapping_mul(7) + n) % 250) as u8;
        let pair = NetnsPair {
            a: Netns {
                name: format!("{PREFIX}{pid}-{n}-a"),
                ip: IpAddr::V4(Ipv4Addr::new(10, 210, subnet, 1)),
            },
            b: Netns {
                name: format!("{PREFIX}{pid}-{n}-b"),
                ip: IpAddr::V4(Ipv4Addr::new(10, 210, subnet, 2)),
            },
        };
        // From here on, Drop removes whatever part was made if a step fails.
        ip(&["netns", "add", &pair.a.name]);
        ip(&["netns", "add", &pair.b.name]);
        // Created straight inside the namespaces, so the names need only be unique there.
        ip(&[
            "link",
            "add",
            "veth-a",
            "netns",
            &pair.a.name,
            "type",
            "veth",
            "peer",
            "name",
            "veth-b",
            "netns",
            &pair.b.name,
        ]);
        for (side, veth) in [(&pair.a, "veth-a"), (&pair.b, "veth-b")] {
            let address = format!("{}/24", side.ip);
            ip(&["-n", &side.name, "addr", "add", &address, "dev", veth]);
            ip(&["-n", &side.name, "link", "set", veth, "up"]);
            ip(&["-n", &side.name, "link", "set", "lo", "up"]);
        }
        pair
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for side in [&self.a, &self.b] {
            // Deleting a namespace also destroys its end of the veth, and so the pair.
            let ran = ip_ran(&["netns", "delete", &side.name]);
            if !ran.success() && !ran.stderr.contains("No such file") {
                eprintln!("cannot delete netns {}: {}", side.name, ran.stderr.trim());
            }
        }
    }
}

/// Fails the test unless this process is root and `ip` is installed; the message names this
/// test binary, so that it says how to run it.
pub(super) fn require_root_and_ip() {
    let test = test_binary();
    let euid = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1))
                .and_then(|id| id.parse::<u32>().ok())
        });
    assert_eq!(
        euid,
        Some(0),
        "the {test} tests need root (to create network namespaces and veth pairs) and `ip` \
         from iproute2: run them as root, e.g. `sudo -E cargo test -p ferry-tests --test \
         {test}`, or run scripts/test as root"
    );
    let found = env::var_os("PATH")
        .map(|paths| env::split_paths(&paths).any(|dir| dir.join("ip").is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "the {test} tests need `ip` from iproute2 (Debian package iproute2; scripts/test \
         installs it)"
    );
}

/// The name of the running test binary (`datacenters` for `target/debug/deps/datacenters-HASH`).
fn test_binary() -> String {
    env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.file_stem()?.to_str()?.to_owned()))
        .map(|stem| match stem.rsplit_once('-') {
            Some((name, _hash)) => name.to_owned(),
            None => stem,
        })
        .unwrap_or_else(|| "ferry-tests".to_owned())
}

/// Deletes namespaces named `prefix<pid>-…` left behind by test processes that no longer run
/// (killed before their Drop could), so they do not pile up across runs.
pub(super) fn remove_leftovers(prefix: &str) {
    let listed = ip_ran(&["netns", "list"]);
    for line in listed.stdout.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| m.is_dir()) {
            let _ = ip_ran(&["netns", "delete", name]);
        }
    }
}

pub(super) fn ip_ran(args: &[&str]) -> Ran {
    run(Command::new("ip").args(args), Duration::from_secs(10))
}

/// Runs `ip ARGS`; panics with its stderr when it fails.
pub(super) fn ip(args: &[&str]) {
    let ran = ip_ran(args);
    assert!(
        ran.success(),
        "`ip {}` failed ({:?}): {}",
        args.join(" "),
        ran.code,
        ran.stderr.trim()
    );
}
