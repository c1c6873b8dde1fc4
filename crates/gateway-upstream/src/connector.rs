//! The TCP connector under each target's hyper pool, instrumented, and
//! the open-connection count both clients keep.
//!
//! hyper-util's pooled client does not expose pool sizes, so every TCP
//! connection a target opens is wrapped in [`CountedIo`], which keeps the
//! target's open-connection count (idle plus active) until the socket is
//! dropped. That count feeds `gatehouse_upstream_connections_open` and
//! [`crate::TargetStatus::open_connections`], and makes pool reuse visible.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::metrics;

/// Shared connection counters of one target.
#[derive(Debug)]
pub(crate) struct ConnStats {
    cluster: Arc<str>,
    target: String,
    open: AtomicUsize,
}

impl ConnStats {
    pub(crate) fn new(cluster: Arc<str>, target: String) -> Arc<Self> {
        Arc::new(Self {
            cluster,
            target,
            open: AtomicUsize::new(0),
        })
    }

    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// An [`HttpConnector`] that counts the connections it opens.
#[derive(Debug, Clone)]
pub(crate) struct CountingConnector {
    inner: HttpConnector,
    stats: Arc<ConnStats>,
}

impl CountingConnector {
    pub(crate) fn new(inner: HttpConnector, stats: Arc<ConnStats>) -> Self {
        Self { inner, stats }
    }
}

type ConnectError = <HttpConnector as tower::Service<Uri>>::Error;

impl tower::Service<Uri> for CountingConnector {
    type Response = CountedIo;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<CountedIo, ConnectError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let connecting = self.inner.call(dst);
        let stats = self.stats.clone();
        Box::pin(async move {
            let io = connecting.await?;
            Ok(CountedIo {
                inner: io,
                _open: OpenConnection::new(stats),
            })
        })
    }
}

/// One open connection of a target, counted in its open-connection gauge
/// until dropped (with the connection it belongs to).
#[derive(Debug)]
pub(crate) struct OpenConnection {
    stats: Arc<ConnStats>,
}

impl OpenConnection {
    pub(crate) fn new(stats: Arc<ConnStats>) -> Self {
        let n = stats.open.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::connection_opened(&stats.cluster, &stats.target, n);
        Self { stats }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let n = self
            .stats
            .open
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        metrics::connection_closed(&self.stats.cluster, &self.stats.target, n);
    }
}

/// A TCP connection of hyper's pool, counted in its target's gauge.
#[derive(Debug)]
pub(crate) struct CountedIo {
    inner: TokioIo<TcpStream>,
    _open: OpenConnection,
}

impl Connection for CountedIo {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

impl Read for CountedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl Write for CountedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
}

/// Bounds the whole connection set-up (TCP connect plus TLS handshake) by
/// `connect_timeout`. The TCP connector's own timeout does not cover the
/// handshake, and a server that accepts but never speaks TLS would
/// otherwise hold the request until the route timeout, or forever.
#[derive(Debug, Clone)]
pub(crate) struct SetupTimeout<C> {
    inner: C,
    timeout: std::time::Duration,
}

impl<C> SetupTimeout<C> {
    pub(crate) fn new(inner: C, timeout: std::time::Duration) -> Self {
        Self { inner, timeout }
    }
}

impl<C> tower::Service<Uri> for SetupTimeout<C>
where
    C: tower::Service<Uri>,
    C::Future: Send + 'static,
    C::Error: Into<gateway_core::BoxError>,
{
    type Response = C::Response;
    type Error = gateway_core::BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, gateway_core::BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let connecting = self.inner.call(dst);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(r) => r.map_err(Into::into),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "connection set-up (TCP and TLS) took longer than {}",
                        humantime::format_duration(timeout)
                    ),
                )
                .into()),
            }
        })
    }
}
