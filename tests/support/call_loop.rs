//! `call_loop.py` under a test's control: threads in a namespace calling a host through an
//! outbound back to back, each call reported as one [`Call`] with when it started, how long it
//! took and what came back. Stopped (and its process reaped) on [`CallLoop::stop`] or drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{command_in, eventually, python_script, without_proxy, TempDir};

/// One call made by `call_loop.py`.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub thread: u32,
    /// When it started, in seconds since the epoch.
    pub started: f64,
    pub took_ms: u64,
    /// The status, or `ERR`, then the body's first line or the error.
    pub outcome: String,
}

impl Call {
    fn parse(line: &str) -> Option<Call> {
        let mut words = line.strip_prefix("CALL ")?.splitn(4, ' ');
        Some(Call {
            thread: words.next()?.parse().ok()?,
            started: words.next()?.parse().ok()?,
            took_ms: words.next()?.parse().ok()?,
            outcome: words.next()?.to_owned(),
        })
    }

    /// A 200 whose body starts `hello from GREETER`.
    pub(crate) fn ok_from(&self, greeter: &str) -> bool {
        self.outcome
            .starts_with(&format!("200 hello from {greeter}"))
    }
}

/// Seconds since the epoch, as [`Call::started`] counts.
pub(crate) fn epoch_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A running `call_loop.py`.
pub(crate) struct CallLoop {
    child: Child,
    calls: Arc<Mutex<Vec<Call>>>,
    reader: Option<JoinHandle<()>>,
    dir: TempDir,
}

impl CallLoop {
    /// `threads` callers of `host` through `outbound`, in `netns` when one is given.
    pub(crate) fn start(netns: Option<&str>, outbound: &str, host: &str, threads: u32) -> CallLoop {
        let dir = TempDir::new("call-loop");
        let mut command = command_in(netns, "python3");
        command
            .arg(python_script("call_loop.py"))
            .arg(outbound)
            .arg(host)
            .arg(threads.to_string())
            .arg(dir.join("stop"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = without_proxy(&mut command)
            .spawn()
            .expect("python3 call_loop.py starts");
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let stdout = child.stdout.take().expect("stdout is piped");
        let reader = {
            let calls = calls.clone();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(call) = Call::parse(&line) {
                        calls.lock().unwrap_or_else(|e| e.into_inner()).push(call);
                    }
                }
            })
        };
        CallLoop {
            child,
            calls,
            reader: Some(reader),
            dir,
        }
    }

    /// Every call reported so far.
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until `n` calls were made.
    pub(crate) fn wait_for_calls(&self, n: usize) {
        eventually(Duration::from_secs(20), || match self.calls().len() {
            made if made >= n => Ok(()),
            made => Err(format!("only {made} calls made by call_loop.py so far")),
        });
    }

    /// Waits until a call started `seconds` after `epoch` (seconds since the epoch).
    pub(crate) fn wait_for_a_call_after(&self, epoch: f64) {
        eventually(Duration::from_secs(30), || {
            let calls = self.calls();
            match calls.iter().any(|c| c.started >= epoch) {
                true => Ok(()),
                false => Err(format!(
                    "no call started {:.1} s after the mark yet ({} calls)",
                    epoch - epoch_seconds(),
                    calls.len()
                )),
            }
        });
    }

    /// Tells the threads to stop, waits for the process, and returns every call it made.
    pub(crate) fn stop(mut self) -> Vec<Call> {
        std::fs::write(self.dir.join("stop"), b"").expect("can write the stop file");
        let child = &mut self.child;
        eventually(Duration::from_secs(30), || match child.try_wait() {
            Ok(Some(_)) => Ok(()),
            _ => Err("call_loop.py still running after the stop file".to_owned()),
        });
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the reader thread ends");
        }
        self.calls()
    }
}

impl Drop for CallLoop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
