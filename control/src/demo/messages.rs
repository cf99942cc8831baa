//! The demo's publish-and-subscribe steps: dc1's greeter is a member of group `greeters`;
//! dc2's greeter is one too, and the only member of group `archive`. A message published in
//! dc1 reaches `greeters` in dc1 and `archive` in dc2; once dc1's greeter is gone, `greeters`
//! gets it in dc2.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use super::DemoService;
use crate::config::{Config, SubscriptionConfig};

/// The topic the demo publishes on, under the pattern its subscribers use.
pub(super) const TOPIC: &str = "greetings.hello";
const PATTERN: &str = "greetings.>";

/// Where each group's messages are POSTed.
pub(super) fn path(group: &str) -> String {
    format!("/events/{group}")
}

/// Subscribes the node's `greeter` to the demo's topic in each of `groups`.
pub(super) fn subscribed(mut config: Config, groups: &[&str]) -> Config {
    for group in groups {
        config.subscriptions.push(SubscriptionConfig {
            topic: PATTERN.into(),
            service: "greeter".into(),
            path: path(group),
            group: (*group).into(),
            max_attempts: 5,
            dead_letter: None,
            batch: 1,
        });
    }
    config
}

/// Publishes `body` through the application API at `api`, as an application would.
pub(super) async fn publish(api: SocketAddr, body: &str) -> Result<(), String> {
    let stream = tokio::net::TcpStream::connect(api)
        .await
        .map_err(|e| format!("cannot reach the application API: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = Request::post(format!("/v1/publish/{TOPIC}"))
        .header(http::header::HOST, api.to_string())
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let answer = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    if status != http::StatusCode::ACCEPTED {
        let answer = String::from_utf8_lossy(&answer.to_bytes())
            .trim()
            .to_owned();
        return Err(format!("publish answered {status}: {answer}"));
    }
    Ok(())
}

/// Waits until each `(service, group)` received `body`; how long after `since` that was.
pub(super) async fn delivered(
    body: &str,
    to: &[(&DemoService, &str)],
    since: Instant,
    deadline: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let missing: Vec<&str> = to
            .iter()
            .filter(|(service, group)| !service.received(&path(group), body))
            .map(|(_, group)| *group)
            .collect();
        if missing.is_empty() {
            return Ok(since.elapsed());
        }
        if started.elapsed() > deadline {
            return Err(format!(
                "not delivered to {} within {deadline:?}",
                missing.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
