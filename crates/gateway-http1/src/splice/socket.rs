//! A client TCP stream the server can both use as its byte stream and
//! splice into: the connection's reads and writes go through one handle,
//! the relay through another, and both share the socket's one reactor
//! registration (no second descriptor, no extra system call). tokio's
//! own owned halves (`TcpStream::into_split`) keep their shared stream
//! private, so the relay could not reach it through them.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// A plain TCP client connection that can hand out a [`SpliceSink`].
#[derive(Debug)]
pub struct SharedSocket(Arc<TcpStream>);

/// Where the server splices response bodies: the client socket of the
/// connection it serves.
#[derive(Debug, Clone)]
pub struct SpliceSink(Arc<TcpStream>);

impl SharedSocket {
    pub fn new(stream: TcpStream) -> Self {
        Self(Arc::new(stream))
    }

    /// The socket, for splicing into.
    pub fn sink(&self) -> SpliceSink {
        SpliceSink(self.0.clone())
    }

    /// The socket itself.
    pub fn get_ref(&self) -> &TcpStream {
        &self.0
    }
}

impl SpliceSink {
    pub(crate) fn socket(&self) -> &TcpStream {
        &self.0
    }
}

impl AsyncRead for SharedSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            // As tokio's own stream does: a read that leaves room in the
            // buffer drained the socket, so the readiness seen before it
            // is cleared (the closure's `WouldBlock` clears exactly that
            // readiness, not one that came since), and the next read
            // waits for the reactor instead of costing a system call.
            let room = buf.remaining();
            let mut read = None;
            let tried = self.0.try_io(Interest::READABLE, || {
                // `try_read_buf` reads into the unfilled part without
                // zeroing it first.
                let n = self.0.try_read_buf(buf)?;
                read = Some(n);
                if 0 < n && n < room {
                    Err(std::io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(n)
                }
            });
            match tried {
                _ if read.is_some() => return Poll::Ready(Ok(())),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                other => return Poll::Ready(other.map(drop)),
            }
        }
    }
}

impl SharedSocket {
    /// Waits until the socket is writable and writes with `write`; a
    /// `WouldBlock` (which `try_write*` turns into cleared readiness)
    /// waits again.
    fn poll_write_with(
        &self,
        cx: &mut Context<'_>,
        write: impl Fn(&TcpStream) -> std::io::Result<usize>,
    ) -> Poll<std::io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match write(&self.0) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                written => return Poll::Ready(written),
            }
        }
    }
}

impl AsyncWrite for SharedSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_write_with(cx, |s| s.try_write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_write_with(cx, |s| s.try_write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(
            rustix::net::shutdown(&*self.0, rustix::net::Shutdown::Write).map_err(Into::into),
        )
    }
}
