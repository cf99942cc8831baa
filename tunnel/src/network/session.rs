//! One link's life: each side sends its hello (its own catalog) and then updates on a
//! unidirectional stream; round-trip times are sampled into the table; the streams the peer
//! opens go to the proxy, and its relay datagrams to the relay. When the link ends, everything
//! the peer offered is withdrawn at once and the peers hear that the link closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::relaying;
use super::state::{now, Shared, UPDATE_QUEUE};
use crate::catalog::Catalog;
use crate::certificate::Certificate;
use crate::identity::PublicKey;
use crate::link::Link;
use crate::liveness::{Liveness, Verdict};
use crate::table::{self, Neighbor, SessionId};
use crate::transport::IDLE_TIMEOUT;
use crate::update::{Advert, Update, MAX_UPDATE_LEN};
use crate::Error;

/// A peer can take this long to identify itself.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a link's round-trip time is passed to the table.
const RTT_SAMPLE: Duration = Duration::from_secs(1);

/// Runs a link that the peers already registered to `key` until it closes, then reports it
/// closed and closes its connection (telling the peer why, when it ended on an error here).
pub(super) async fn run(shared: Arc<Shared>, link: Link, key: PublicKey) -> Result<(), Error> {
    let result = exchange(&shared, &link, key).await;
    shared.update(|core| core.peers.closed(link.id(), now()));
    let reason = match &result {
        Ok(()) => "closed".to_owned(),
        Err(e) => e.to_string(),
    };
    link.close(&reason);
    result
}

/// Aborts a task when dropped: the tasks that serve a session end with it.
struct Aborting(JoinHandle<()>);

impl Drop for Aborting {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn exchange(shared: &Arc<Shared>, link: &Link, key: PublicKey) -> Result<(), Error> {
    let conn = link.connection().clone();
    let (queue, queued) = mpsc::channel(UPDATE_QUEUE);
    let hello = shared.core().table.hello();
    let _writer = Aborting(tokio::spawn(write_updates(conn.clone(), hello, queued)));

    let (mut stream, first) = tokio::time::timeout(HELLO_TIMEOUT, async {
        let mut stream = conn.accept_uni().await.map_err(Error::LinkClosed)?;
        let first = read_update(&mut stream).await?;
        Ok::<_, Error>((stream, first))
    })
    .await
    .map_err(|_| Error::NoHello(HELLO_TIMEOUT))??;
    let peer = link.peer();
    let certificate = peer.as_ref().and_then(|p| p.certificate.clone());
    let advert = hello_of(first, key, link.remote_address())?;
    if let Some(certificate) = &certificate {
        bound_by(certificate, &advert.catalog)?;
    }
    let advert = within(certificate.as_deref(), key, advert);
    let catalog = advert.catalog.clone();
    info!(peer = %catalog.node, datacenter = %catalog.datacenter, %key, "peer identified");
    let neighbor = Neighbor {
        key,
        datacenter: catalog.datacenter.clone(),
        gateway: catalog.gateway,
    };
    let rtt = link.rtt();
    let (session, accepted) = shared.update(|core| core.session_up(link, rtt, advert, queue));

    let _serving = [
        Aborting(tokio::spawn({
            let (shared, link) = (shared.clone(), link.clone());
            async move { shared.streams.accept(link, key).await }
        })),
        Aborting(tokio::spawn(relaying::carry(
            shared.clone(),
            link.clone(),
            neighbor,
        ))),
        Aborting(tokio::spawn(sample_rtt(
            shared.clone(),
            link.clone(),
            session,
        ))),
        Aborting(tokio::spawn({
            let (link, period) = (link.clone(), shared.rekey);
            async move { link.rekey_every(period).await }
        })),
        Aborting(tokio::spawn(close_when_silent(
            link.clone(),
            catalog.node.clone(),
        ))),
    ];
    let result = match accepted {
        Ok(()) => read_updates(shared, link, &mut stream, session, certificate.as_deref()).await,
        Err(refusal) => Err(Error::HelloRefused(refusal)),
    };
    shared.update(|core| core.session_down(session));
    result
}

/// Checks that a peer's hello is its own catalog, and fills in the address it can be
/// dialed at when it advertised only a port (an unspecified IP).
fn hello_of(first: Update, key: PublicKey, seen_at: SocketAddr) -> Result<Advert, Error> {
    let Update::Announce(advert) = first else {
        return Err(Error::Malformed(
            "the first update must be the peer's hello",
        ));
    };
    if advert.catalog.key != key {
        return Err(Error::InvalidKey(format!(
            "peer {key} announced itself as {}",
            advert.catalog.key
        )));
    }
    Ok(dialable(advert, key, seen_at))
}

/// A peer's announcement of itself, with the address it can be dialed at filled in when it
/// advertised only a port (an unspecified IP, as a node listening on `0.0.0.0` in a container
/// does): the IP its link came from. Every announcement of itself gets this, not only its
/// hello, so that the address the table keeps and passes on stays one its datacenter can dial.
fn dialable(mut advert: Advert, peer: PublicKey, seen_at: SocketAddr) -> Advert {
    if advert.catalog.key != peer {
        return advert;
    }
    if let Ok(addr) = advert.catalog.address.parse::<SocketAddr>() {
        if addr.ip().is_unspecified() {
            let catalog = Catalog {
                address: SocketAddr::new(seen_at.ip(), addr.port()).to_string(),
                ..(*advert.catalog).clone()
            };
            advert.catalog = Arc::new(catalog);
        }
    }
    advert
}

/// Refuses a peer whose hello names another node or datacenter than its certificate binds.
fn bound_by(certificate: &Certificate, hello: &Catalog) -> Result<(), Error> {
    let subject = &certificate.subject;
    let datacenter_bound = !subject.datacenter.is_empty();
    if subject.name != hello.node
        || (datacenter_bound && !subject.datacenter.eq_ignore_ascii_case(&hello.datacenter))
    {
        return Err(Error::InvalidKey(format!(
            "peer {} of datacenter {} holds a certificate for {} of datacenter {}",
            hello.node, hello.datacenter, subject.name, subject.datacenter
        )));
    }
    Ok(())
}

/// A peer's announcement of itself, without the services its certificate does not name; an
/// announcement it relays for another node, or one from a peer without a certificate, as is.
fn within(certificate: Option<&Certificate>, key: PublicKey, advert: Advert) -> Advert {
    let Some(certificate) = certificate.filter(|_| advert.catalog.key == key) else {
        return advert;
    };
    let (advert, refused) = table::permitted(advert, &certificate.subject.services);
    if !refused.is_empty() {
        metrics::counter!("ferry_tunnel_announcements_refused_total", "reason" => "not-in-certificate")
            .increment(refused.len() as u64);
        warn!(
            peer = %advert.catalog.node,
            services = %refused.join(","),
            "ignored services a peer announced that its certificate does not name"
        );
    }
    advert
}

async fn read_updates(
    shared: &Shared,
    link: &Link,
    stream: &mut quinn::RecvStream,
    session: SessionId,
    certificate: Option<&Certificate>,
) -> Result<(), Error> {
    let key = link.peer_key();
    let seen_at = link.remote_address();
    loop {
        let update = match (read_update(stream).await?, key) {
            (Update::Announce(advert), Some(key)) => {
                let advert = dialable(advert, key, seen_at);
                Update::Announce(within(certificate, key, advert))
            }
            (update, _) => update,
        };
        if let Err(refusal) = shared.update(|core| core.receive(session, link, update)) {
            debug!(%refusal, "route refused");
        }
    }
}

async fn write_updates(conn: quinn::Connection, hello: Update, mut queued: mpsc::Receiver<Update>) {
    let result: Result<(), Error> = async {
        let mut stream = conn.open_uni().await.map_err(Error::LinkClosed)?;
        let mut buf = BytesMut::new();
        hello.encode(&mut buf);
        loop {
            // Send what has piled up in one write: a new link's whole table goes out in a few.
            while buf.len() < 64 << 10 {
                match queued.try_recv() {
                    Ok(update) => update.encode(&mut buf),
                    Err(_) => break,
                }
            }
            stream.write_all(&buf).await?;
            buf.clear();
            match queued.recv().await {
                Some(update) => update.encode(&mut buf),
                None => return Err(Error::UpdateOverflow),
            }
        }
    }
    .await;
    if let Err(e) = result {
        debug!(error = %e, "update stream ended");
        if matches!(e, Error::UpdateOverflow) {
            conn.close(0u32.into(), e.to_string().as_bytes());
        }
    }
}

async fn read_update(stream: &mut quinn::RecvStream) -> Result<Update, Error> {
    let len = stream.read_u32().await? as usize;
    if len > MAX_UPDATE_LEN {
        return Err(Error::Malformed("update too long"));
    }
    let mut buf = vec![0u8; len];
    AsyncReadExt::read_exact(stream, &mut buf).await?;
    Update::decode(&buf)
}

async fn sample_rtt(shared: Arc<Shared>, link: Link, session: SessionId) {
    let mut every = tokio::time::interval(RTT_SAMPLE);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let rtt = link.rtt();
        shared.update(|core| core.route(|table| ((), table.set_rtt(session, rtt))));
    }
}

/// Closes a link whose peer falls silent for longer than the link's RTT allows
/// ([`Liveness`]): a node killed without a word is given up in about a fifth of a second on a
/// LAN, and its routes withdrawn, rather than after QUIC's idle timeout.
async fn close_when_silent(link: Link, peer: String) {
    let conn = link.connection();
    let received = || conn.stats().udp_rx.datagrams;
    let mut watch = Liveness::new(Instant::now(), received(), IDLE_TIMEOUT);
    loop {
        match watch.look(Instant::now(), received(), conn.rtt()) {
            Verdict::Alive(next) => tokio::time::sleep(next).await,
            Verdict::Silent(silent) => {
                warn!(%peer, ?silent, "peer silent: link closed");
                link.close("silent");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert(key: u8, address: &str) -> Advert {
        Advert {
            catalog: Arc::new(Catalog {
                node: format!("n{key}"),
                datacenter: "dc1".into(),
                key: PublicKey([key; 32]),
                address: address.into(),
                gateway: false,
                services: Vec::new(),
                subscriptions: Vec::new(),
            }),
            path: vec!["dc1".into()],
            metric: 0,
        }
    }

    #[test]
    fn a_peer_that_advertised_only_a_port_is_dialed_at_the_ip_its_link_came_from() {
        let seen: SocketAddr = "172.18.0.5:40000".parse().expect("address");
        let peer = PublicKey([1; 32]);
        let own = dialable(advert(1, "0.0.0.0:7700"), peer, seen);
        assert_eq!(own.catalog.address, "172.18.0.5:7700");
        // An address it chose is its own; another node's announcement is passed on as it came.
        let chosen = dialable(advert(1, "10.0.0.1:7700"), peer, seen);
        assert_eq!(chosen.catalog.address, "10.0.0.1:7700");
        let other = dialable(advert(2, "0.0.0.0:7700"), peer, seen);
        assert_eq!(other.catalog.address, "0.0.0.0:7700");
    }
}
