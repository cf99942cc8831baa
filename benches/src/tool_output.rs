//! Reading what other tools print: wrk, h2load, iperf3's JSON, /proc, `ferry keygen`.
//! Every parser returns `None` rather than panicking on output it does not recognise.

/// wrk's `Requests/sec:  12345.67`.
pub fn wrk_requests_per_second(output: &str) -> Option<f64> {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

/// wrk's `  123456 requests in 4.00s, 17.66MB read`: how many requests it made in all.
pub fn wrk_requests(output: &str) -> Option<u64> {
    output.lines().find_map(|l| {
        let (count, rest) = l.trim().split_once(' ')?;
        rest.starts_with("requests in ")
            .then(|| count.parse().ok())
            .flatten()
    })
}

/// The CPU time a process has used, user and system, in clock ticks: fields 14 and 15 of
/// /proc/PID/stat, counted after the command name (which may hold spaces and parentheses).
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// h2load's `finished in 3.00s, 12345.67 req/s, 1.23MB/s`, only when no request failed
/// (its `requests:` line ends with `0 failed, 0 errored, 0 timeout`).
pub fn h2load_requests_per_second(output: &str) -> Option<f64> {
    let requests = output
        .lines()
        .find(|l| l.trim_start().starts_with("requests:"))?;
    let failed = requests.split(',').find(|p| p.trim().ends_with("failed"))?;
    let failed: u64 = failed.split_whitespace().next()?.parse().ok()?;
    let errored = requests
        .split(',')
        .find(|p| p.trim().ends_with("errored"))?;
    let errored: u64 = errored.split_whitespace().next()?.parse().ok()?;
    if failed > 0 || errored > 0 {
        return None;
    }
    let finished = output
        .lines()
        .find(|l| l.trim_start().starts_with("finished in"))?;
    let rate = finished.split(',').find(|p| p.trim().ends_with("req/s"))?;
    rate.split_whitespace().next()?.parse().ok()
}

/// The receiver's bits per second from `iperf3 -J`.
pub fn iperf3_received_bits_per_second(json: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v.get("end")?
        .get("sum_received")?
        .get("bits_per_second")?
        .as_f64()
}

/// The error iperf3 reports in its JSON, if any.
pub fn iperf3_error(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v.get("error")?.as_str().map(str::to_string)
}

/// `VmRSS:   12345 kB` from /proc/PID/status, in bytes.
pub fn vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line.split_whitespace().skip(1);
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next()? {
        "kB" => Some(value * 1024),
        _ => None,
    }
}

/// The public key `ferry keygen` prints: the last line that looks like a base64 X25519 key.
pub fn public_key(output: &str) -> Option<String> {
    output
        .lines()
        .rev()
        .flat_map(str::split_whitespace)
        .find(|w| {
            w.len() == 44
                && w.ends_with('=')
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
        })
        .map(str::to_string)
}

/// A `key: value` line of /proc/cpuinfo or /proc/meminfo.
pub fn proc_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_summary() {
        let out = "Running 3s test @ http://127.0.0.1:8080/\n  2 threads and 32 connections\n\
                   Requests/sec:  41234.56\nTransfer/sec:      5.90MB\n";
        assert_eq!(wrk_requests_per_second(out), Some(41234.56));
        assert_eq!(wrk_requests_per_second("garbage"), None);
        let out = "  2 threads and 32 connections\n  123704 requests in 4.00s, 17.66MB read\n";
        assert_eq!(wrk_requests(out), Some(123704));
        assert_eq!(wrk_requests("Requests/sec: 5"), None);
    }

    #[test]
    fn reads_cpu_ticks_past_a_command_name_with_spaces() {
        let stat = "4242 (ferry (x) y) S 1 4242 4242 0 -1 4194560 1393 0 0 0 250 75 0 0 20 0 2 0";
        assert_eq!(stat_cpu_ticks(stat), Some(325));
        assert_eq!(stat_cpu_ticks("4242 (ferry) S 1"), None);
    }

    #[test]
    fn reads_h2load_summary_only_without_failures() {
        let ok = "finished in 3.00s, 9876.50 req/s, 1.01MB/s\n\
                  requests: 29630 total, 29630 started, 29630 done, 29630 succeeded, 0 failed, 0 errored, 0 timeout\n";
        assert_eq!(h2load_requests_per_second(ok), Some(9876.5));
        let failing = ok.replace("29630 succeeded, 0 failed", "0 succeeded, 29630 failed");
        assert_eq!(h2load_requests_per_second(&failing), None);
    }

    #[test]
    fn reads_iperf3_json() {
        let json = r#"{"start":{},"end":{"sum_received":{"bits_per_second":9.5e9}}}"#;
        assert_eq!(iperf3_received_bits_per_second(json), Some(9.5e9));
        let err = r#"{"start":{},"end":{},"error":"unable to connect to server"}"#;
        assert_eq!(iperf3_received_bits_per_second(err), None);
        assert_eq!(
            iperf3_error(err).as_deref(),
            Some("unable to connect to server")
        );
        assert_eq!(iperf3_received_bits_per_second("not json"), None);
    }

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tferry\nVmPeak:\t  99999 kB\nVmRSS:\t   12000 kB\nThreads:\t3\n";
        assert_eq!(vm_rss_bytes(status), Some(12000 * 1024));
        assert_eq!(vm_rss_bytes("Name:\tzombie\n"), None);
    }

    #[test]
    fn finds_the_printed_public_key() {
        let out = "wrote a.key\nHXmV8QbpjG3aQ8C0t3P2Z0zQm2mKp7i0yQ9v3kTq1VY=\n";
        assert_eq!(
            public_key(out).as_deref(),
            Some("HXmV8QbpjG3aQ8C0t3P2Z0zQm2mKp7i0yQ9v3kTq1VY=")
        );
        assert_eq!(public_key("no key here"), None);
    }

    #[test]
    fn reads_proc_fields() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(proc_field(cpuinfo, "model name"), Some("AMD EPYC 7B13"));
        assert_eq!(proc_field(cpuinfo, "flags"), None);
    }
}
