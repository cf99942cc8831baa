//! The processes the harness starts: each is killed when its handle drops, so an error, a
//! panic or Ctrl-C leaves nothing running behind the harness.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A child process whose output goes to a log file.
pub(crate) struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `command`, its stdout and stderr appended to `DIR/NAME.log`.
    pub(crate) fn spawn(name: &str, command: &mut Command, dir: &Path) -> Result<Process> {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).map_err(Error::io(format!("creating {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(Error::io(format!("opening {}", log.display())))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(Error::io(format!("starting {name} ({command:?})")))?;
        Ok(Process {
            name: name.to_string(),
            child,
            log,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The last lines of its log, to say why it did not do what was expected.
    pub(crate) fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Its whole log so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An error with the end of its log if the process has exited.
    pub(crate) fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Exited {
                process: self.name.clone(),
                status: status.to_string(),
                log: self.log.clone(),
                tail: log_tail(&self.log),
            }),
            Err(e) => Err(Error::Io {
                what: format!("checking on {}", self.name),
                source: e,
            }),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Runs `command` to completion off the async runtime and returns its stdout; a non-zero exit
/// is an error carrying its stderr.
pub(crate) async fn output(what: &str, mut command: Command) -> Result<String> {
    let what = what.to_string();
    let joined = tokio::task::spawn_blocking(move || {
        command
            .stdin(Stdio::null())
            .output()
            .map_err(Error::io(format!("running {what}")))
            .and_then(|out| {
                if out.status.success() {
                    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
                } else {
                    Err(Error::Command {
                        what,
                        detail: format!(
                            "{}: {}{}",
                            out.status,
                            String::from_utf8_lossy(&out.stderr).trim(),
                            String::from_utf8_lossy(&out.stdout).trim()
                        ),
                    })
                }
            })
    })
    .await;
    joined.map_err(|e| Error::Command {
        what: "a blocking task".into(),
        detail: e.to_string(),
    })?
}

/// Waits until `addr` accepts TCP connections, failing early if `process` dies.
pub(crate) async fn wait_for_port(
    addr: SocketAddr,
    process: &mut Process,
    timeout: Duration,
) -> Result<()> {
    let start = Instant::now();
    loop {
        process.check_running()?;
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(Error::Timeout {
                what: format!("{} listening on {addr}", process.name()),
                seconds: timeout.as_secs(),
                hint: format!("; see {}", process.log.display()),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until something listens on `port` of the loopback inside namespace `ns`, probing
/// with bash's /dev/tcp since the harness itself stays in the host's namespace.
pub(crate) async fn wait_for_port_in(
    ns: &str,
    port: u16,
    process: &mut Process,
    timeout: Duration,
) -> Result<()> {
    let start = Instant::now();
    loop {
        process.check_running()?;
        let mut probe = Command::new("ip");
        probe
            .args(["netns", "exec", ns, "bash", "-c"])
            .arg(format!("exec 3<>/dev/tcp/127.0.0.1/{port}"));
        if output("a port probe", probe).await.is_ok() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(Error::Timeout {
                what: format!("{} listening on port {port} in {ns}", process.name()),
                seconds: timeout.as_secs(),
                hint: format!("; its log ends:\n{}", process.log_tail()),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `Command` for `program` run inside network namespace `ns` (or here, when `None`).
pub(crate) fn command_in(ns: Option<&str>, program: &Path) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
        None => Command::new(program),
    }
}
