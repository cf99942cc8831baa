//! The harness's command line: few enough flags that a hand parser reads better than a derive.

use crate::error::{Error, Result};

pub(crate) const USAGE: &str = "\
usage: cargo run --release -p ferry-benches --bin harness -- [--quick] [--runs N] [--only PART] [--minutes N]

Runs Ferry beside its peers (direct, an HAProxy pair with TLS 1.3, Nebula) on this machine,
alternating targets round by round, and writes benches/RESULTS.md and benches/results.png;
then times failover, convergence and joining in a three-datacenter mesh and writes
benches/DATACENTERS.md; then measures publish and subscribe beside NATS and writes
benches/BROKER.md; then the cost of certificates and authorization rules, in
benches/IDENTITY.md, and of interception, in benches/INTERCEPT.md; then holds a link over a
lossy user-space WAN for 10 minutes and writes benches/LIVENESS.md; then holds 10,000
connections through one pair and writes benches/CONNECTIONS.md; then soaks one pair for 10
minutes with mixed traffic, its service node restarted every minute, and writes benches/SOAK.md.

  --quick       1 s per measurement and 2 rounds unless --runs says otherwise (for development);
                3 trials of the datacenters scenario instead of 10; 1 minute of the lossy WAN;
                a 2-minute soak with a restart every 30 s
  --runs N      rounds of every scenario; the report gives the median (default 5)
  --only PART   `peers`, `datacenters`, `broker`, `identity`, `intercept`, `liveness`,
                `connections` or `soak`: run that part only
  --out DIR     where the reports go (default: the benches/ directory)
  --minutes N   how long the lossy WAN and the soak run (default 10; 1 and 2 with --quick)

Environment: FERRY_BIN names a ferry binary to use instead of building target/release/ferry.
Root is needed for the network namespaces and to install missing peers with apt-get.";

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Options {
    pub quick: bool,
    pub runs: usize,
    pub out: Option<std::path::PathBuf>,
    pub only: Option<Part>,
    /// How long the long-running parts run, when not their default.
    pub minutes: Option<u64>,
}

/// A part of the run that `--only` can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// Ferry beside its peers: loopback scenarios and bulk TCP.
    Peers,
    /// The three-datacenter mesh.
    Datacenters,
    /// Publish and subscribe beside NATS.
    Broker,
    /// Handshakes with certificates, and calls checked by authorization rules.
    Identity,
    /// HTTP/1.1 through interception beside the explicit outbound.
    Intercept,
    /// A link over a lossy WAN, held for minutes.
    Liveness,
    /// 10,000 connections held through one pair.
    Connections,
    /// Mixed traffic through one pair for minutes, its service node restarted every minute.
    Soak,
}

impl Options {
    /// Whether `part` is to run.
    pub(crate) fn runs_part(&self, part: Part) -> bool {
        self.only.is_none_or(|only| only == part)
    }
}

impl Options {
    /// Parses the arguments after the program name; `Ok(None)` means `--help` was asked for.
    pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>> {
        let mut quick = false;
        let mut runs = None;
        let mut out = None;
        let mut minutes = None;
        let mut only = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => quick = true,
                "--runs" => runs = Some(count(&mut args, "--runs")?),
                "--minutes" => minutes = Some(count(&mut args, "--minutes")? as u64),
                "--out" => {
                    let value = args
                        .next()
                        .ok_or_else(|| Error::Usage("--out needs a directory".into()))?;
                    out = Some(value.into());
                }
                "--only" => {
                    only = Some(match args.next().as_deref() {
                        Some("peers") => Part::Peers,
                        Some("datacenters") => Part::Datacenters,
                        Some("broker") => Part::Broker,
                        Some("identity") => Part::Identity,
                        Some("intercept") => Part::Intercept,
                        Some("liveness") => Part::Liveness,
                        Some("connections") => Part::Connections,
                        Some("soak") => Part::Soak,
                        other => {
                            return Err(Error::Usage(format!(
                                "--only takes `peers`, `datacenters`, `broker`, `identity`, `intercept`, `liveness`, `connections` or `soak`, not {other:?}"
                            )))
                        }
                    });
                }
                "-h" | "--help" => return Ok(None),
                other => {
                    return Err(Error::Usage(format!(
                        "unknown argument {other:?}\n\n{USAGE}"
                    )))
                }
            }
        }
        let runs = runs.unwrap_or(if quick { 2 } else { 5 });
        Ok(Some(Options {
            quick,
            runs,
            out,
            minutes,
            only,
        }))
    }
}

/// The whole number of at least 1 that follows `flag`.
fn count(args: &mut impl Iterator<Item = String>, flag: &str) -> Result<usize> {
    let value = args
        .next()
        .ok_or_else(|| Error::Usage(format!("{flag} needs a number")))?;
    let n: usize = value
        .parse()
        .map_err(|_| Error::Usage(format!("{flag} {value:?}: not a number")))?;
    if n == 0 {
        return Err(Error::Usage(format!("{flag} must be at least 1")));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Options>> {
        Options::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_to_five_full_rounds() {
        let o = parse(&[]).ok().flatten();
        assert_eq!(o.map(|o| (o.quick, o.runs)), Some((false, 5)));
    }

    #[test]
    fn quick_shortens_rounds_unless_runs_given() {
        assert_eq!(parse(&["--quick"]).ok().flatten().map(|o| o.runs), Some(2));
        assert_eq!(
            parse(&["--quick", "--runs", "3"])
                .ok()
                .flatten()
                .map(|o| o.runs),
            Some(3)
        );
    }

    #[test]
    fn refuses_zero_runs_and_unknown_flags() {
        assert!(parse(&["--runs", "0"]).is_err());
        assert!(parse(&["--runs"]).is_err());
        assert!(parse(&["--fast"]).is_err());
        assert!(parse(&["--only", "everything"]).is_err());
    }

    #[test]
    fn minutes_lengthen_the_long_parts() {
        let o = parse(&["--only", "soak", "--minutes", "20"]).ok().flatten();
        assert_eq!(o.and_then(|o| o.minutes), Some(20));
        assert!(parse(&["--minutes", "0"]).is_err());
        assert!(parse(&["--minutes", "ten"]).is_err());
        assert!(parse(&["--minutes"]).is_err());
    }

    #[test]
    fn only_picks_one_part() {
        let o = parse(&["--only", "datacenters"]).ok().flatten();
        let parts = o.map(|o| (o.runs_part(Part::Peers), o.runs_part(Part::Datacenters)));
        assert_eq!(parts, Some((false, true)));
    }

    #[test]
    fn only_soak_runs_the_soak_alone() {
        let o = parse(&["--only", "soak", "--quick"]).ok().flatten();
        let parts = o.map(|o| {
            (
                o.quick,
                o.runs_part(Part::Soak),
                o.runs_part(Part::Connections),
            )
        });
        assert_eq!(parts, Some((true, true, false)));
    }
}
