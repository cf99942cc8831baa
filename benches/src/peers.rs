//! The peers and tools the harness drives, found on this machine or installed with apt-get.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::process::output;

/// A program the harness runs, and the Debian package that ships it.
struct Tool {
    binary: &'static str,
    package: &'static str,
    /// Cross-check columns only: without root they are skipped, not required.
    optional: bool,
}

const TOOLS: [Tool; 10] = [
    Tool {
        binary: "haproxy",
        package: "haproxy",
        optional: false,
    },
    Tool {
        binary: "nginx",
        package: "nginx-light",
        optional: false,
    },
    Tool {
        binary: "nebula",
        package: "nebula",
        optional: false,
    },
    Tool {
        binary: "nebula-cert",
        package: "nebula",
        optional: false,
    },
    Tool {
        binary: "iperf3",
        package: "iperf3",
        optional: false,
    },
    Tool {
        binary: "openssl",
        package: "openssl",
        optional: false,
    },
    Tool {
        binary: "ip",
        package: "iproute2",
        optional: false,
    },
    Tool {
        binary: "wrk",
        package: "wrk",
        optional: true,
    },
    Tool {
        binary: "h2load",
        package: "nghttp2-client",
        optional: true,
    },
    Tool {
        binary: FONT,
        package: "fonts-dejavu-core",
        optional: false,
    },
];

/// The chart's font; Debian's fonts-dejavu-core ships it.
pub(crate) const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Where each tool was found.
#[derive(Debug, Clone)]
pub(crate) struct Peers {
    pub haproxy: PathBuf,
    pub nginx: PathBuf,
    pub nebula: PathBuf,
    pub nebula_cert: PathBuf,
    pub iperf3: PathBuf,
    pub openssl: PathBuf,
    pub wrk: Option<PathBuf>,
    pub h2load: Option<PathBuf>,
}

/// `binary` on PATH, or in the sbin directories a non-login root shell may not have on it;
/// an absolute path (the font) is looked for as it is.
pub(crate) fn find(binary: &str) -> Option<PathBuf> {
    if binary.starts_with('/') {
        return Path::new(binary).is_file().then(|| PathBuf::from(binary));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
}

pub(crate) fn is_root() -> bool {
    // /proc/self/status has "Uid: real effective saved fs"; effective is what counts.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            crate::tool_output::proc_field(&s, "Uid")
                .and_then(|v| v.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Finds every tool, installing the missing ones when root (one `apt-get update`, one
/// `apt-get install`), or names the first missing required one.
pub(crate) async fn ensure() -> Result<Peers> {
    let missing: Vec<&Tool> = TOOLS.iter().filter(|t| find(t.binary).is_none()).collect();
    if !missing.is_empty() {
        if is_root() {
            let mut packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
            packages.dedup();
            install(&packages).await?;
        } else if let Some(t) = missing.iter().find(|t| !t.optional) {
            return Err(Error::MissingTool {
                tool: t.binary.to_string(),
                package: t.package.to_string(),
            });
        }
    }
    let need = |binary: &str, package: &str| {
        find(binary).ok_or_else(|| Error::MissingTool {
            tool: binary.to_string(),
            package: package.to_string(),
        })
    };
    need(FONT, "fonts-dejavu-core")?;
    need("ip", "iproute2")?;
    Ok(Peers {
        haproxy: need("haproxy", "haproxy")?,
        nginx: need("nginx", "nginx-light")?,
        nebula: need("nebula", "nebula")?,
        nebula_cert: need("nebula-cert", "nebula")?,
        iperf3: need("iperf3", "iperf3")?,
        openssl: need("openssl", "openssl")?,
        wrk: find("wrk"),
        h2load: find("h2load"),
    })
}

/// One tool a part needs: found, installed when missing and root, or named.
pub(crate) async fn ensure_one(binary: &str, package: &str) -> Result<PathBuf> {
    if find(binary).is_none() && is_root() {
        install(&[package]).await?;
    }
    find(binary).ok_or_else(|| Error::MissingTool {
        tool: binary.to_string(),
        package: package.to_string(),
    })
}

async fn install(packages: &[&str]) -> Result<()> {
    println!("installing {} with apt-get", packages.join(" "));
    // Debian starts a freshly installed daemon (nginx on :80, haproxy) unless policy-rc.d
    // says no; the harness runs its own instances and wants no strays, so it says no for the
    // duration of the install, and only if no policy was there already.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let made_policy = !policy.exists()
        && std::fs::write(policy, "#!/bin/sh\nexit 101\n").is_ok()
        && set_executable(policy);
    let mut update = Command::new("apt-get");
    update.args(["update", "-q"]);
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive");
    let result = match output("apt-get update", update).await {
        Ok(_) => output("apt-get install", install).await.map(|_| ()),
        Err(e) => Err(e),
    };
    if made_policy {
        let _ = std::fs::remove_file(policy);
    }
    result
}

fn set_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).is_ok()
}

/// The first line a tool prints about its version, for the report.
pub(crate) async fn version(program: &Path, flag: &str) -> String {
    let mut c = Command::new(program);
    c.arg(flag);
    // Some tools (nginx -v) print the version on stderr, or exit non-zero after printing it.
    let out = tokio::task::spawn_blocking(move || c.output()).await;
    match out {
        Ok(Ok(out)) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            text.lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("?")
                .trim()
                .to_string()
        }
        _ => "?".to_string(),
    }
}
