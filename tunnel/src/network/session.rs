//! One link's life: each side sends its hello (its own catalog) and then updates on a
//! unidirectional stream; round-trip times are sampled into the table; the streams the peer
//! opens go to the proxy. When the link ends, everything the peer offered is withdrawn at
//! once.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::{lock, IncomingStream, LinkEntry, Shared};
use crate::catalog::Catalog;
use crate::identity::PublicKey;
use crate::link::Link;
use crate::table::Neighbor;
use crate::update::{Advert, Update, MAX_UPDATE_LEN};
use crate::Error;

/// A peer can take this long to identify itself or to send a stream's header.
pub(super) const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a link's round-trip time is passed to the table.
const RTT_SAMPLE: Duration = Duration::from_secs(1);

/// Runs one link until it closes. `dialed` is the configured address it was dialed at, if
/// any: that peer counts as settled once it has sent its whole table.
pub(super) async fn run_link(
    shared: &Arc<Shared>,
    link: Link,
    dialed: Option<&str>,
) -> Result<(), Error> {
    // Who is at the far end is known once its hello arrives.
    let key = register(shared, &link, "", "")?;
    run_registered(shared, link, key, dialed).await
}

/// Makes a new link available for calls at once, before its hellos are exchanged: a call
/// that dialed it opens its stream right away. `name` and `datacenter` are what this node
/// already knows of the peer (empty if nothing); the peer's hello confirms them.
pub(super) fn register(
    shared: &Shared,
    link: &Link,
    name: &str,
    datacenter: &str,
) -> Result<PublicKey, Error> {
    let key = link
        .peer_key()
        .ok_or_else(|| Error::LinkClosed("link has no authenticated peer key".into()))?;
    let entry = LinkEntry {
        link: link.clone(),
        name: name.to_owned(),
        datacenter: datacenter.to_owned(),
    };
    lock(&shared.links).entry(key).or_default().push(entry);
    Ok(key)
}

/// Runs a link [`register`]ed to `key` until it closes.
pub(super) async fn run_registered(
    shared: &Arc<Shared>,
    link: Link,
    key: PublicKey,
    dialed: Option<&str>,
) -> Result<(), Error> {
    let result = exchange(shared, &link, key, dialed).await;
    if let Some(address) = dialed {
        lock(&shared.unsettled).remove(address);
    }
    let mut links = lock(&shared.links);
    if let Some(entries) = links.get_mut(&key) {
        entries.retain(|e| e.link.id() != link.id());
        if entries.is_empty() {
            links.remove(&key);
        }
    }
    drop(links);
    let reason = match &result {
        Ok(()) => "closed".to_owned(),
        Err(e) => e.to_string(),
    };
    link.connection().close(0u32.into(), reason.as_bytes());
    result
}

async fn exchange(
    shared: &Arc<Shared>,
    link: &Link,
    key: PublicKey,
    dialed: Option<&str>,
) -> Result<(), Error> {
    let conn = link.connection().clone();
    let session = shared.next_session.fetch_add(1, Ordering::Relaxed);
    let (queue, queued) = mpsc::channel(super::UPDATE_QUEUE);
    let hello = lock(&shared.routing).table.hello();
    let writer = tokio::spawn(write_updates(conn.clone(), hello, queued));

    let (mut stream, advert) = tokio::time::timeout(HELLO_TIMEOUT, async {
        let mut stream = conn
            .accept_uni()
            .await
            .map_err(|e| Error::LinkClosed(e.to_string()))?;
        let first = read_update(&mut stream).await?;
        Ok::<_, Error>((stream, first))
    })
    .await
    .map_err(|_| Error::LinkClosed("peer sent no hello".into()))??;
    let advert = hello_of(advert, key, link.remote_address())?;
    let catalog = &advert.catalog;
    info!(peer = %catalog.node, datacenter = %catalog.datacenter, %key, "peer identified");
    if let Some(e) = lock(&shared.links)
        .get_mut(&key)
        .and_then(|entries| entries.iter_mut().find(|e| e.link.id() == link.id()))
    {
        e.name = catalog.node.clone();
        e.datacenter = catalog.datacenter.clone();
    }
    let neighbor = Neighbor {
        key,
        datacenter: catalog.datacenter.clone(),
        gateway: catalog.gateway,
    };
    let neighbor_info = neighbor.clone();
    let accepted = {
        let mut routing = lock(&shared.routing);
        routing.sessions.insert(session, queue);
        let mut out = routing.table.link_up(session, neighbor, link.rtt());
        let accepted = routing.table.receive(session, Update::Announce(advert));
        if let Ok(more) = &accepted {
            out.extend(more.iter().cloned());
        }
        routing.send(out, &shared.trust);
        accepted
    };

    let acceptor = tokio::spawn(accept_streams(shared.clone(), link.clone(), key));
    let relaying = tokio::spawn(super::relaying::carry(
        shared.clone(),
        link.clone(),
        neighbor_info,
    ));
    let sampler = tokio::spawn(sample_rtt(shared.clone(), link.clone(), session));
    let result = match accepted {
        Ok(_) => read_updates(shared, &mut stream, session, dialed).await,
        Err(refusal) => Err(Error::LinkClosed(format!("hello refused: {refusal}"))),
    };
    acceptor.abort();
    relaying.abort();
    sampler.abort();
    writer.abort();
    shared.route(|table| ((), table.link_down(session)));
    lock(&shared.routing).sessions.remove(&session);
    result
}

/// Checks that a peer's hello is its own catalog, and fills in the address it can be
/// dialed at when it advertised only a port (an unspecified IP).
fn hello_of(first: Update, key: PublicKey, seen_at: SocketAddr) -> Result<Advert, Error> {
    let Update::Announce(mut advert) = first else {
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
    if let Ok(addr) = advert.catalog.address.parse::<SocketAddr>() {
        if addr.ip().is_unspecified() {
            let catalog = Catalog {
                address: SocketAddr::new(seen_at.ip(), addr.port()).to_string(),
                ..(*advert.catalog).clone()
            };
            advert.catalog = Arc::new(catalog);
        }
    }
    Ok(advert)
}

async fn read_updates(
    shared: &Arc<Shared>,
    stream: &mut quinn::RecvStream,
    session: u64,
    dialed: Option<&str>,
) -> Result<(), Error> {
    loop {
        let update = read_update(stream).await?;
        if update == Update::Synced {
            if let Some(address) = dialed {
                lock(&shared.unsettled).remove(address);
            }
        }
        let refused = shared.route(|table| match table.receive(session, update) {
            Ok(out) => (None, out),
            Err(refusal) => (Some(refusal), Vec::new()),
        });
        if let Some(refusal) = refused {
            debug!(%refusal, "route refused");
        }
    }
}

async fn write_updates(
    conn: quinn::Connection,
    hello: Update,
    mut queued: mpsc::Receiver<Update>,
) -> Result<(), Error> {
    let mut stream = conn
        .open_uni()
        .await
        .map_err(|e| Error::LinkClosed(e.to_string()))?;
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
        stream
            .write_all(&buf)
            .await
            .map_err(|e| Error::LinkClosed(e.to_string()))?;
        buf.clear();
        match queued.recv().await {
            Some(update) => update.encode(&mut buf),
            None => {
                conn.close(0u32.into(), b"update queue overflow");
                return Err(Error::LinkClosed("update queue overflow".into()));
            }
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

async fn sample_rtt(shared: Arc<Shared>, link: Link, session: u64) {
    let mut every = tokio::time::interval(RTT_SAMPLE);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let rtt = link.rtt();
        shared.route(|table| ((), table.set_rtt(session, rtt)));
    }
}

/// Hands each stream the peer opens to the proxy, once the proxy is ready for them.
pub(super) async fn accept_streams(shared: Arc<Shared>, link: Link, peer: PublicKey) {
    // Streams wait in quinn (bounded by its stream limit) until the proxy is ready for them.
    let mut handler = shared.handler.subscribe();
    let handler = match handler.wait_for(Option::is_some).await {
        Ok(ready) => ready.clone(),
        Err(_) => return,
    };
    let Some(handler) = handler else {
        return;
    };
    while let Ok(mut stream) = link.accept().await {
        let handler = handler.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HELLO_TIMEOUT, stream.read_header()).await {
                Ok(Ok(header)) => {
                    handler(IncomingStream {
                        header,
                        stream,
                        peer,
                    })
                    .await
                }
                Ok(Err(e)) => {
                    debug!(error = %e, "bad stream header");
                    stream.reset();
                }
                Err(_) => stream.reset(),
            }
        });
    }
}
