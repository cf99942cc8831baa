//! What the in-process network tests share: an echoing stream handler, and polling with a
//! deadline.

use std::sync::Arc;
use std::time::Duration;

use ferry_tunnel::Network;
use tokio::io::AsyncWriteExt;

/// Serves every stream peers open to `network` by echoing it back.
pub fn serve_echo(network: &Network) {
    network.serve_streams(Arc::new(|incoming| {
        Box::pin(async move {
            let (mut reader, mut writer) = tokio::io::split(incoming.stream);
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
            let _ = writer.shutdown().await;
        })
    }));
}

/// Polls `check` until it gives a value; fails naming `what` after 10 s.
pub async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
