//! The demo's script: each step prints what it does, how long it took, and whether it
//! worked.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::{messages, DemoService, Mesh};

/// How long a step may poll for the state it waits for.
const STEP_DEADLINE: Duration = Duration::from_secs(10);

struct Answer {
    status: StatusCode,
    error: Option<String>,
    body: String,
    elapsed: Duration,
}

struct Caller {
    http1: Client<HttpConnector, Empty<Bytes>>,
    outbound: std::net::SocketAddr,
}

impl Caller {
    fn new(outbound: std::net::SocketAddr) -> Caller {
        let http1 = Client::builder(TokioExecutor::new()).build_http();
        Caller { http1, outbound }
    }

    async fn call(&self, host: &str, http2: bool) -> Result<Answer, String> {
        let started = Instant::now();
        let response = if http2 {
            // HTTP/2 names the service in :authority, as curl does from a Host header.
            let request = Request::get(format!("http://{host}/hello"))
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            let stream = tokio::net::TcpStream::connect(self.outbound)
                .await
                .map_err(|e| e.to_string())?;
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?
        } else {
            let request = Request::get(format!("http://{}/hello", self.outbound))
                .header(http::header::HOST, host)
                .body(Empty::new())
                .map_err(|e| e.to_string())?;
            self.http1
                .request(request)
                .await
                .map_err(|e| e.to_string())?
        };
        let status = response.status();
        let error = response
            .headers()
            .get("ferry-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Answer {
            status,
            error,
            body: String::from_utf8_lossy(&body).trim().to_owned(),
            elapsed: started.elapsed(),
        })
    }

    /// Calls until `want` holds for the answer, or the step deadline passes.
    async fn until(
        &self,
        host: &str,
        want: impl Fn(&Answer) -> bool,
    ) -> Result<(Answer, Duration), String> {
        let started = Instant::now();
        loop {
            let answer = self.call(host, false).await?;
            if want(&answer) {
                return Ok((answer, started.elapsed()));
            }
            if started.elapsed() > STEP_DEADLINE {
                return Err(format!(
                    "still {} after {:?}: {}",
                    answer.status, STEP_DEADLINE, answer.body
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

struct Progress {
    step: usize,
    total: usize,
    ok: bool,
}

impl Progress {
    fn report(&mut self, what: &str, result: Result<String, String>) {
        self.step += 1;
        match result {
            Ok(detail) => println!("[{}/{}] ✓ {what}: {detail}", self.step, self.total),
            Err(why) => {
                self.ok = false;
                println!("[{}/{}] ✗ {what}: {why}", self.step, self.total);
            }
        }
    }
}

fn expect(answer: &Answer, status: StatusCode) -> Result<String, String> {
    if answer.status == status {
        Ok(format!(
            "{} {} in {}",
            answer.status.as_u16(),
            answer.error.as_deref().unwrap_or(&answer.body),
            ms(answer.elapsed)
        ))
    } else {
        Err(format!("got {} ({})", answer.status, answer.body))
    }
}

fn from(dc: &'static str) -> impl Fn(&Answer) -> bool {
    move |a: &Answer| a.status == StatusCode::OK && a.body.contains(dc)
}

/// Checks that an answer came from greeter in `dc`.
fn served_in(answer: Result<Answer, String>, dc: &str) -> Result<String, String> {
    let answer = answer?;
    if !answer.body.contains(dc) {
        return Err(format!("{} answered: {}", answer.status, answer.body));
    }
    expect(&answer, StatusCode::OK)
}

/// 50 calls in a row to `host`: their p50 and p99, if all were answered from `dc`.
async fn burst(caller: &Caller, host: &str, dc: &str) -> Result<String, String> {
    let mut latencies = Vec::new();
    for _ in 0..50 {
        if let Ok(answer) = caller.call(host, false).await {
            if answer.status == StatusCode::OK && answer.body.contains(dc) {
                latencies.push(answer.elapsed);
            }
        }
    }
    latencies.sort();
    match latencies.len() {
        50 => Ok(format!(
            "p50 {} · p99 {}",
            ms(latencies[24]),
            ms(latencies[49])
        )),
        n => Err(format!("only {n} of 50 calls answered from {dc}")),
    }
}

/// Publishes `body` in dc1; it must reach `greeters` in dc1 and `archive` in dc2.
async fn fan_out(mesh: &Mesh, body: &str) -> Result<String, String> {
    let near = mesh
        .greeter
        .as_ref()
        .ok_or("dc1's greeter is not running")?;
    let published = Instant::now();
    messages::publish(mesh.api, body).await?;
    let to = [(near, "greeters"), (&mesh.far_greeter, "archive")];
    let took = messages::delivered(body, &to, published, STEP_DEADLINE).await?;
    Ok(format!("both groups had it {} after the publish", ms(took)))
}

/// Publishes `body` in dc1 with dc1's greeter gone; `greeters` must get it in dc2.
async fn failed_over(mesh: &Mesh, body: &str) -> Result<String, String> {
    let published = Instant::now();
    messages::publish(mesh.api, body).await?;
    let to = [
        (&mesh.far_greeter, "greeters"),
        (&mesh.far_greeter, "archive"),
    ];
    let took = messages::delivered(body, &to, published, STEP_DEADLINE).await?;
    Ok(format!("delivered in dc2 {} after the publish", ms(took)))
}

/// Runs every step; `true` if all worked.
pub(super) async fn run(mesh: &mut Mesh) -> bool {
    let caller = Caller::new(mesh.outbound);
    let mut p = Progress {
        step: 0,
        total: 10,
        ok: true,
    };

    let joined = caller.until("greeter", from("dc1")).await;
    p.report(
        "dc1-app learns greeter's routes from dc1's gateway",
        joined.map(|(_, waited)| format!("first answer after {}", ms(waited))),
    );

    p.report(
        "HTTP/1.1 call, local first: app → dc1-app → dc1-greeter (dialed directly)",
        served_in(caller.call("greeter", false).await, "dc1"),
    );

    p.report(
        "HTTP/2 call pinned to dc2: greeter.dc2.mesh, through both gateways, sealed end to end",
        served_in(caller.call("greeter.dc2.mesh", true).await, "dc2"),
    );

    p.report("50 calls in dc1", burst(&caller, "greeter", "dc1").await);
    p.report(
        "50 calls to dc2 through the gateways",
        burst(&caller, "greeter.dc2", "dc2").await,
    );

    let missing = caller.call("billing", false).await;
    p.report(
        "a service nobody fronts answers at once",
        missing.and_then(|a| expect(&a, StatusCode::SERVICE_UNAVAILABLE)),
    );

    p.report(
        "a message published in dc1 reaches group greeters in dc1 and group archive in dc2",
        fan_out(mesh, "hello, subscribers").await,
    );

    if let Some(greeter) = mesh.greeter.take() {
        greeter.kill();
    }
    let killed = Instant::now();
    let moved = caller.until("greeter", from("dc2")).await;
    p.report(
        "dc1's greeter killed: traffic fails over to dc2",
        moved.map(|(a, _)| format!("{} — {} after the kill", a.body, ms(killed.elapsed()))),
    );

    p.report(
        "dc1's member of greeters is gone: the next message reaches greeters in dc2",
        failed_over(mesh, "hello again, subscribers").await,
    );

    let back =
        match DemoService::start(mesh.greeter_addr, "hello again from greeter in dc1".into()).await
        {
            Ok(service) => {
                mesh.greeter = Some(service);
                let restarted = Instant::now();
                caller.until("greeter", from("dc1")).await.map(|(a, _)| {
                    format!("{} — {} after the restart", a.body, ms(restarted.elapsed()))
                })
            }
            Err(e) => Err(format!("cannot restart greeter: {e}")),
        };
    p.report("dc1's greeter restarted: traffic fails back to dc1", back);

    println!(
        "\n{}",
        if p.ok {
            "Every step worked."
        } else {
            "Some steps failed."
        }
    );
    p.ok
}
