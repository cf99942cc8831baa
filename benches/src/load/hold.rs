//! Many idle connections held open through a TCP proxy, each checked end to end first (a
//! byte echoed back by the backend), so the proxy really holds both of its sides.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

pub(crate) async fn hold_connections(addr: SocketAddr, n: usize) -> Result<Vec<TcpStream>> {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let check = async {
            let mut s = TcpStream::connect(addr).await?;
            s.write_all(b"x").await?;
            let mut byte = [0u8; 1];
            s.read_exact(&mut byte).await?;
            Ok::<_, std::io::Error>(s)
        };
        match tokio::time::timeout(Duration::from_secs(10), check).await {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(e)) => {
                return Err(Error::Io {
                    what: format!("connection {} of {n} through {addr}", i + 1),
                    source: e,
                })
            }
            Err(_) => {
                return Err(Error::Timeout {
                    what: format!("an echo on connection {} of {n} through {addr}", i + 1),
                    seconds: 10,
                    hint: String::new(),
                })
            }
        }
    }
    Ok(held)
}
