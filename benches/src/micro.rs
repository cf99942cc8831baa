//! The criterion figures of the last `cargo bench -p ferry-benches`, for the report: read from
//! the estimates criterion leaves in `target/criterion/`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One micro-benchmark's median.
pub(crate) struct MicroResult {
    pub id: String,
    pub median_ns: f64,
    /// Bytes processed per iteration, when the benchmark declared it.
    pub bytes: Option<u64>,
}

/// Every benchmark found under `criterion_dir`, sorted by id, and when the newest ran.
pub(crate) fn read(criterion_dir: &Path) -> (Vec<MicroResult>, Option<SystemTime>) {
    let mut found = Vec::new();
    let mut newest = None;
    let mut dirs = vec![criterion_dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "new") {
                if let Some(result) = read_one(&path) {
                    let modified = path
                        .join("estimates.json")
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok();
                    newest = newest.max(modified);
                    found.push(result);
                }
            } else if path
                .file_name()
                .is_none_or(|n| n != "base" && n != "report")
            {
                dirs.push(path);
            }
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    (found, newest)
}

fn read_one(dir: &Path) -> Option<MicroResult> {
    let benchmark: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("benchmark.json")).ok()?).ok()?;
    let estimates = std::fs::read_to_string(dir.join("estimates.json")).ok()?;
    parse(&benchmark, &estimates)
}

fn parse(benchmark: &serde_json::Value, estimates: &str) -> Option<MicroResult> {
    let estimates: serde_json::Value = serde_json::from_str(estimates).ok()?;
    Some(MicroResult {
        id: benchmark.get("full_id")?.as_str()?.to_string(),
        median_ns: estimates.get("median")?.get("point_estimate")?.as_f64()?,
        bytes: benchmark
            .get("throughput")
            .and_then(|t| t.get("Bytes"))
            .and_then(|b| b.as_u64()),
    })
}

/// `target/criterion` of this workspace.
pub(crate) fn criterion_dir() -> PathBuf {
    let root = crate::ferry::workspace_root();
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("criterion")
}

/// A duration in the unit that reads best.
pub(crate) fn format_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_criterion_estimates() {
        let benchmark =
            serde_json::json!({"full_id": "catalog/decode", "throughput": {"Bytes": 1400}});
        let estimates = r#"{"median":{"point_estimate":12.5},"mean":{"point_estimate":13.0}}"#;
        let r = parse(&benchmark, estimates);
        assert_eq!(
            r.as_ref().map(|r| (r.id.as_str(), r.median_ns, r.bytes)),
            Some(("catalog/decode", 12.5, Some(1400)))
        );
        assert!(parse(&benchmark, "{}").is_none());
    }

    #[test]
    fn formats_durations_in_readable_units() {
        assert_eq!(format_ns(42.31), "42.3 ns");
        assert_eq!(format_ns(27_733.0), "27.73 µs");
        assert_eq!(format_ns(2_500_000.0), "2.50 ms");
    }
}
