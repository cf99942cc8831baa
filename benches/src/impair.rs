//! A WAN in user space (`tc netem` does not work on these machines): a UDP relay between one
//! client and one server that holds every datagram for a fixed delay each way and drops a
//! share of them at random. The client sends to [`Impairment::address`]; the server sees the
//! relay's other socket as its client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{Error, Result};

/// Datagrams in flight in one direction at most: far more than a link has in a delay's time.
const QUEUE: usize = 65_536;

/// A running relay; stops when dropped.
pub(crate) struct Impairment {
    /// Where the client sends.
    pub address: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Impairment {
    /// Relays between a client and `server`, holding each datagram `delay` in each direction
    /// and dropping `loss` (0 to 1) of them in each.
    pub(crate) async fn start(
        server: SocketAddr,
        delay: Duration,
        loss: f64,
    ) -> Result<Impairment> {
        let bind = |what: &'static str| Error::io(format!("binding the relay's {what} socket"));
        let front = Arc::new(
            UdpSocket::bind("127.0.0.1:0")
                .await
                .map_err(bind("front"))?,
        );
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.map_err(bind("back"))?);
        let address = front
            .local_addr()
            .map_err(Error::io("reading the relay's address"))?;
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let (to_server, server_queue) = mpsc::channel(QUEUE);
        let (to_client, client_queue) = mpsc::channel(QUEUE);
        let tasks = vec![
            // Client to server, remembering who the client is; and back.
            tokio::spawn(receive(
                front.clone(),
                to_server,
                (delay, loss),
                1,
                Some(client.clone()),
            )),
            tokio::spawn(receive(back.clone(), to_client, (delay, loss), 2, None)),
            tokio::spawn(deliver(server_queue, back, Some(server), None)),
            tokio::spawn(deliver(client_queue, front, None, Some(client))),
        ];
        Ok(Impairment { address, tasks })
    }
}

impl Drop for Impairment {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Queues each datagram `socket` receives, unless the dice drop it, to be sent on after the
/// delay; notes who sent it in `sender` when given.
async fn receive(
    socket: Arc<UdpSocket>,
    queue: mpsc::Sender<(Instant, Vec<u8>)>,
    (delay, loss): (Duration, f64),
    seed: u64,
    sender: Option<Arc<Mutex<Option<SocketAddr>>>>,
) {
    let mut dice = Dice::new(seed);
    let mut buf = vec![0u8; 65_536];
    while let Ok((n, from)) = socket.recv_from(&mut buf).await {
        if let Some(sender) = &sender {
            *sender.lock().await = Some(from);
        }
        if !dice.roll(loss) {
            let _ = queue.try_send((Instant::now() + delay, buf[..n].to_vec()));
        }
    }
}

/// Sends each queued datagram when it is due: to `to`, or to the client last heard from.
async fn deliver(
    mut queue: mpsc::Receiver<(Instant, Vec<u8>)>,
    socket: Arc<UdpSocket>,
    to: Option<SocketAddr>,
    client: Option<Arc<Mutex<Option<SocketAddr>>>>,
) {
    while let Some((due, datagram)) = queue.recv().await {
        tokio::time::sleep_until(due).await;
        let target = match (&to, &client) {
            (Some(to), _) => Some(*to),
            (None, Some(client)) => *client.lock().await,
            (None, None) => None,
        };
        if let Some(target) = target {
            let _ = socket.send_to(&datagram, target).await;
        }
    }
}

/// xorshift64*: random enough to pick which datagrams are lost, and repeatable.
struct Dice(u64);

impl Dice {
    fn new(seed: u64) -> Dice {
        Dice(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// True with probability `p`.
    fn roll(&mut self, p: f64) -> bool {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let draw = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        (draw as f64 / (1u64 << 53) as f64) < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dice_drop_about_the_share_asked() {
        let mut dice = Dice::new(7);
        let dropped = (0..100_000).filter(|_| dice.roll(0.01)).count();
        assert!((800..1200).contains(&dropped), "{dropped}");
    }

    #[tokio::test]
    async fn datagrams_come_back_after_twice_the_delay() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let server_addr = server.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = server.recv_from(&mut buf).await {
                let _ = server.send_to(&buf[..n], from).await;
            }
        });
        let relay = Impairment::start(server_addr, Duration::from_millis(30), 0.0)
            .await
            .expect("relay");
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let sent = std::time::Instant::now();
        client.send_to(b"ping", relay.address).await.expect("send");
        let mut buf = [0u8; 64];
        let (n, _) = client.recv_from(&mut buf).await.expect("echo");
        assert_eq!(&buf[..n], b"ping");
        assert!(
            sent.elapsed() >= Duration::from_millis(60),
            "{:?}",
            sent.elapsed()
        );
    }
}
