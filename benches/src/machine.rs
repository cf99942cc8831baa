//! What the run ran on, for the report: figures only mean something beside their machine.

use crate::tool_output::proc_field;

pub(crate) struct Machine {
    pub cpus: usize,
    pub model: String,
    pub kernel: String,
    pub memory_gib: f64,
}

impl Machine {
    pub(crate) fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = proc_field(&meminfo, "MemTotal")
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            model: proc_field(&cpuinfo, "model name")
                .unwrap_or("unknown CPU")
                .to_string(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|k| k.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            memory_gib: memory_kib / (1024.0 * 1024.0),
        }
    }
}
