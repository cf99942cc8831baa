//! What the in-process network tests share: an echoing stream handler, and how long they wait.

use std::sync::Arc;
use std::time::Duration;

use ferry_tunnel::Network;
use tokio::io::AsyncWriteExt;

/// Serves every stream peers open to `network` by echoing it back.
pub(crate) fn serve_echo(network: &Network) {
    network.serve_streams(Arc::new(|incoming| {
        Box::pin(async move {
            let (mut reader, mut writer) = tokio::io::split(incoming.stream);
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
            let _ = writer.shutdown().await;
        })
    }));
}

/// How long a test waits for the mesh to do something.
pub(crate) const WAIT: Duration = Duration::from_secs(10);
