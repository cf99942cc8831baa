//! Steady load, as an application makes it: a few threads, each with one keep-alive HTTP/1.1
//! connection to a node's outbound, calling `GET /hello` in a loop and noting which backend
//! answered, and when.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// One call: when it was answered, and by which backend (`hello from NAME`), or why not.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub at: Instant,
    /// How long the call took.
    pub took: Duration,
    pub by: Result<String, String>,
}

/// Calls in a loop until dropped.
pub(crate) struct Load {
    answers: Arc<Mutex<Vec<Answer>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// `threads` callers of `host` through `outbound`.
    pub(crate) fn start(outbound: SocketAddr, host: &str, threads: usize) -> Load {
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let (answers, stop, host) = (answers.clone(), stop.clone(), host.to_owned());
                thread::spawn(move || call_in_a_loop(outbound, &host, &answers, &stop))
            })
            .collect();
        Load {
            answers,
            stop,
            threads,
        }
    }

    /// Every answer so far.
    pub(crate) fn answers(&self) -> Vec<Answer> {
        self.answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The median time a call that `by` answered took between `from` and `to`.
    pub(crate) fn median_took(&self, by: &str, from: Instant, to: Instant) -> Option<Duration> {
        let mut took: Vec<Duration> = self
            .answers()
            .into_iter()
            .filter(|a| a.at >= from && a.at < to && a.by.as_deref() == Ok(by))
            .map(|a| a.took)
            .collect();
        took.sort();
        took.get(took.len() / 2).copied()
    }

    /// The answers between `from` and `to`, counted by backend; failures under `error`.
    pub(crate) fn shares(&self, from: Instant, to: Instant) -> Vec<(String, usize)> {
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for a in self.answers() {
            if a.at >= from && a.at < to {
                let by = a.by.unwrap_or_else(|_| "error".into());
                *counts.entry(by).or_default() += 1;
            }
        }
        counts.into_iter().collect()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn call_in_a_loop(
    outbound: SocketAddr,
    host: &str,
    answers: &Mutex<Vec<Answer>>,
    stop: &AtomicBool,
) {
    let mut connection: Option<BufReader<TcpStream>> = None;
    while !stop.load(Ordering::Relaxed) {
        let reader = match connection.take() {
            Some(reader) => Ok(reader),
            None => TcpStream::connect(outbound).map(|tcp| {
                let _ = tcp.set_nodelay(true);
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(20)));
                BufReader::new(tcp)
            }),
        };
        let sent = Instant::now();
        let by = match reader {
            Ok(mut reader) => {
                let by = call(&mut reader, host);
                if by.is_ok() {
                    connection = Some(reader);
                }
                by
            }
            Err(e) => Err(format!("connect: {e}")),
        };
        let failed = by.is_err();
        answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Answer {
                at: Instant::now(),
                took: sent.elapsed(),
                by,
            });
        if failed {
            // A node that is down refuses at once; do not spin.
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One `GET /hello` on a keep-alive connection: the backend's name from a 200, else an error.
fn call(reader: &mut BufReader<TcpStream>, host: &str) -> Result<String, String> {
    let request = format!("GET /hello HTTP/1.1\r\nHost: {host}\r\n\r\n");
    reader
        .get_mut()
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("read: {e}"))?;
    let status = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let mut length = 0usize;
    loop {
        line.clear();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("read: {e}"))?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().map_err(|_| format!("bad {header}"))?;
            }
        }
    }
    let mut body = vec![0; length];
    reader
        .read_exact(&mut body)
        .map_err(|e| format!("read body: {e}"))?;
    let body = String::from_utf8_lossy(&body);
    if status != "200" {
        return Err(format!("{status}: {}", body.trim()));
    }
    body.lines()
        .next()
        .and_then(|l| l.strip_prefix("hello from "))
        .map(str::to_owned)
        .ok_or_else(|| format!("unexpected body: {body}"))
}
