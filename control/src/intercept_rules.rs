//! `ferry intercept install` and `uninstall`: the packet filter rules that send an
//! application's connections to virtual addresses, and with `--dns` its DNS queries, to Ferry,
//! sparing Ferry's own traffic by its UID. What an init container of a pod runs.
//!
//! With `iptables`: one chain of the `nat` table, `FERRY_INTERCEPT`, jumped to from `OUTPUT`;
//! without it, with `nft`: one table, `ip ferry_intercept`. Either way everything Ferry adds
//! sits in one named place, so that install can replace it whole (idempotent) and uninstall
//! remove exactly it. The rules are plain data ([`Plan`]); running them is separate.

use std::net::SocketAddr;
use std::process::{Command, ExitCode};

use ferry_proxy::intercept::Network;

use crate::config::Config;

const CHAIN: &str = "FERRY_INTERCEPT";
const NFT_TABLE: &str = "ferry_intercept";

/// What the rules redirect, and whose traffic they spare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// TCP to these addresses goes to `listen`.
    pub network: Network,
    /// Where intercepted connections land.
    pub listen: SocketAddr,
    /// With `--dns`: where DNS queries (UDP and TCP port 53) go.
    pub dns: Option<SocketAddr>,
    /// Ferry's own UID, whose traffic is left alone.
    pub uid: u32,
}

impl Plan {
    /// From the config's `[intercept]`.
    pub fn new(config: &Config, uid: u32, dns: bool) -> Plan {
        let intercept = &config.intercept;
        Plan {
            network: intercept.virtual_network,
            listen: intercept.listen,
            dns: dns.then_some(intercept.dns),
            uid,
        }
    }

    /// The `iptables -t nat` rules of the chain, in order.
    fn iptables_rules(&self) -> Vec<Vec<String>> {
        let mut rules = vec![
            args(&[
                "-m",
                "owner",
                "--uid-owner",
                &self.uid.to_string(),
                "-j",
                "RETURN",
            ]),
            redirect("tcp", &["-d", &self.network.to_string()], self.listen),
        ];
        if let Some(dns) = self.dns {
            for protocol in ["udp", "tcp"] {
                rules.push(redirect(protocol, &["--dport", "53"], dns));
            }
        }
        rules
    }

    /// The `nft` script that makes the table.
    fn nft_script(&self) -> String {
        let mut script = format!(
            "table ip {NFT_TABLE} {{\n  chain output {{\n    type nat hook output priority -100; policy accept;\n    meta skuid {} return\n    ip daddr {} tcp dport 1-65535 redirect to :{}\n",
            self.uid,
            self.network,
            self.listen.port()
        );
        if let Some(dns) = self.dns {
            for protocol in ["udp", "tcp"] {
                script.push_str(&format!(
                    "    {protocol} dport 53 redirect to :{}\n",
                    dns.port()
                ));
            }
        }
        script.push_str("  }\n}\n");
        script
    }
}

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// REDIRECT of `protocol` packets matching `matches` to `to`'s port. For locally made
/// packets REDIRECT means 127.0.0.1, where Ferry listens.
fn redirect(protocol: &str, matches: &[&str], to: SocketAddr) -> Vec<String> {
    let mut rule = args(&["-p", protocol]);
    rule.extend(args(matches));
    rule.extend(args(&[
        "-j",
        "REDIRECT",
        "--to-ports",
        &to.port().to_string(),
    ]));
    rule
}

/// Which tool the node has.
enum Filter {
    Iptables,
    Nft,
}

fn filter() -> Result<Filter, String> {
    let found = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if found("iptables") {
        Ok(Filter::Iptables)
    } else if found("nft") {
        Ok(Filter::Nft)
    } else {
        Err("neither iptables nor nft is installed (Debian: iptables or nftables)".into())
    }
}

/// Runs a tool; `Ok(false)` when it ran and said no (a check that did not match).
fn run(tool: &str, args: &[String]) -> Result<bool, String> {
    let output = Command::new(tool)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {tool}: {e}"))?;
    Ok(output.status.success())
}

/// Runs a tool that must succeed.
fn must(tool: &str, args: &[String]) -> Result<(), String> {
    let output = Command::new(tool)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {tool}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{tool} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

fn nat(rest: &[&str]) -> Vec<String> {
    let mut all = args(&["-t", "nat"]);
    all.extend(args(rest));
    all
}

/// Adds the rules, replacing any an earlier install left.
pub fn install(plan: &Plan) -> Result<(), String> {
    match filter()? {
        Filter::Iptables => {
            if run("iptables", &nat(&["-n", "-L", CHAIN]))? {
                must("iptables", &nat(&["-F", CHAIN]))?;
            } else {
                must("iptables", &nat(&["-N", CHAIN]))?;
            }
            for rule in plan.iptables_rules() {
                let mut full = nat(&["-A", CHAIN]);
                full.extend(rule);
                must("iptables", &full)?;
            }
            if !run("iptables", &nat(&["-C", "OUTPUT", "-j", CHAIN]))? {
                must("iptables", &nat(&["-A", "OUTPUT", "-j", CHAIN]))?;
            }
            Ok(())
        }
        Filter::Nft => {
            uninstall_nft()?;
            let script = plan.nft_script();
            let mut child = Command::new("nft")
                .args(["-f", "-"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot run nft: {e}"))?;
            if let Some(stdin) = child.stdin.as_mut() {
                use std::io::Write;
                stdin
                    .write_all(script.as_bytes())
                    .map_err(|e| format!("nft: {e}"))?;
            }
            let status = child.wait().map_err(|e| format!("nft: {e}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("nft refused the rules:\n{script}"))
            }
        }
    }
}

/// Removes exactly what [`install`] adds; nothing to remove is no error.
pub fn uninstall() -> Result<(), String> {
    match filter()? {
        Filter::Iptables => {
            while run("iptables", &nat(&["-C", "OUTPUT", "-j", CHAIN]))? {
                must("iptables", &nat(&["-D", "OUTPUT", "-j", CHAIN]))?;
            }
            if run("iptables", &nat(&["-n", "-L", CHAIN]))? {
                must("iptables", &nat(&["-F", CHAIN]))?;
                must("iptables", &nat(&["-X", CHAIN]))?;
            }
            Ok(())
        }
        Filter::Nft => uninstall_nft(),
    }
}

fn uninstall_nft() -> Result<(), String> {
    if run("nft", &args(&["list", "table", "ip", NFT_TABLE]))? {
        must("nft", &args(&["delete", "table", "ip", NFT_TABLE]))?;
    }
    Ok(())
}

/// `ferry intercept install|uninstall`, as the command line runs it.
pub fn run_command(plan: Option<Plan>) -> ExitCode {
    let done = match &plan {
        Some(plan) => install(plan),
        None => uninstall(),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry intercept: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(dns: bool) -> Plan {
        Plan {
            network: Network::DEFAULT,
            listen: "127.0.0.1:7704".parse().expect("address"),
            dns: dns.then(|| "127.0.0.1:5353".parse().expect("address")),
            uid: 1337,
        }
    }

    #[test]
    fn the_rules_spare_ferry_first_then_redirect() {
        let rules: Vec<String> = plan(true)
            .iptables_rules()
            .iter()
            .map(|r| r.join(" "))
            .collect();
        assert_eq!(
            rules,
            [
                "-m owner --uid-owner 1337 -j RETURN",
                "-p tcp -d 240.0.0.0/16 -j REDIRECT --to-ports 7704",
                "-p udp --dport 53 -j REDIRECT --to-ports 5353",
                "-p tcp --dport 53 -j REDIRECT --to-ports 5353",
            ]
        );
        assert_eq!(plan(false).iptables_rules().len(), 2, "DNS only with --dns");
        let script = plan(true).nft_script();
        assert!(script.contains("meta skuid 1337 return"), "{script}");
        assert!(script.contains("ip daddr 240.0.0.0/16"), "{script}");
        assert!(
            script.contains("udp dport 53 redirect to :5353"),
            "{script}"
        );
    }
}
