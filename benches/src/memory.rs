//! Resident memory of a running process, from /proc.

use crate::error::{Error, Result};

/// VmRSS of `pid`, in MiB.
pub fn rss_mib(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(Error::io(format!("reading {path}")))?;
    crate::tool_output::vm_rss_bytes(&status)
        .map(|b| b as f64 / (1024.0 * 1024.0))
        .ok_or_else(|| Error::Output {
            what: path,
            detail: "no VmRSS line".into(),
        })
}
