//! A connection handed over after `101 Switching Protocols`.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use super::prefixed::Prefixed;

/// Any client stream, boxed.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// The client connection after a 101: the bytes the client sent after its
/// request head come first.
pub type Upgraded = Prefixed<Box<dyn Io>>;

/// Put in an upgrade request's extensions: resolves to the client
/// connection once the 101 response has been written (an error if the
/// response was not a 101 or the connection failed first).
///
/// Request extensions must be `Clone`: clones share the one connection,
/// which the first to wait for it gets.
#[derive(Clone)]
pub struct OnUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

impl OnUpgrade {
    /// Waits for the connection.
    pub async fn upgraded(self) -> Result<Upgraded, UpgradeFailed> {
        let rx = self.0.lock().take().ok_or(UpgradeFailed)?;
        rx.await.map_err(|_| UpgradeFailed)
    }
}

impl std::fmt::Debug for OnUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnUpgrade")
    }
}

/// The connection was not upgraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpgradeFailed;

impl std::fmt::Display for UpgradeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client connection was not upgraded")
    }
}

impl std::error::Error for UpgradeFailed {}

pub(crate) fn pending() -> (oneshot::Sender<Upgraded>, OnUpgrade) {
    let (tx, rx) = oneshot::channel();
    (tx, OnUpgrade(Arc::new(Mutex::new(Some(rx)))))
}

pub(crate) fn prefix(rest: Bytes, io: Box<dyn Io>) -> Upgraded {
    Prefixed::new(rest, io)
}
