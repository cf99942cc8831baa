//! What a running process uses, from /proc: resident memory and CPU time.

use std::time::Duration;

use crate::error::{Error, Result};

/// VmRSS of `pid`, in MiB.
pub(crate) fn rss_mib(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(Error::io(format!("reading {path}")))?;
    crate::tool_output::vm_rss_bytes(&status)
        .map(|b| b as f64 / (1024.0 * 1024.0))
        .ok_or_else(|| Error::Output {
            what: path,
            detail: "no VmRSS line".into(),
        })
}

/// Clock ticks per second in /proc/PID/stat: USER_HZ, which Linux fixes at 100 on x86 and
/// arm64 whatever the kernel's own tick rate.
const USER_HZ: f64 = 100.0;

/// The CPU time, user and system, that `pid` has used so far, all its threads together.
pub(crate) fn cpu_time(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(Error::io(format!("reading {path}")))?;
    let ticks = crate::tool_output::stat_cpu_ticks(&stat).ok_or_else(|| Error::Output {
        what: path,
        detail: "no CPU times".into(),
    })?;
    Ok(Duration::from_secs_f64(ticks as f64 / USER_HZ))
}
