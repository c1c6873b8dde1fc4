//! Response bodies moved from the upstream socket to the client socket by
//! the kernel, with `splice(2)` through a pipe, so their bytes never enter
//! user space (HAProxy's `option splice-response`, always on).
//!
//! The two ends meet through the response, not through a side door:
//!
//! 1. The client ([`crate::client`]) offers a body whose unread part is at
//!    least [`SPLICE_MIN`] bytes of a `Content-Length`: it puts a
//!    [`SpliceOffer`] in the response's extensions.
//! 2. A stage that must see the bytes (the cache, the dark-launch tee)
//!    removes the offer. Nothing else needs to know.
//! 3. The server ([`crate::server`]) writing that response to a plain TCP
//!    client ([`SpliceSink`]) asks for the rest of the body
//!    ([`SpliceOffer::request`]) and reads the body as usual. Once the
//!    bytes read with the head are out, the body hands its connection
//!    over and yields an empty frame. The server takes the connection
//!    only if that very frame reached it; a layer that buffered the frame
//!    and polled again got the body's bytes the usual way instead.
//! 4. The server relays the rest (`relay`), reports how it went, and
//!    the body ends as it would have: complete, or broken off.
//!
//! Observers that only count bytes (the access log) read the count from
//! the offer ([`SpliceOffer::moved`]).

mod offer;
mod pipe;
mod socket;

use std::future::poll_fn;
use std::task::{ready, Context, Poll};

use rustix::pipe::SpliceFlags;
use tokio::io::Interest;
use tokio::net::TcpStream;

pub use offer::SpliceOffer;
pub(crate) use offer::{Grant, Job};
pub use socket::{SharedSocket, SpliceSink};

/// The fewest unread body bytes that are spliced. A splice costs two
/// system calls and a pipe where a copy costs one read and one write, so
/// only bodies well past what arrives with the head (up to 8 KiB) are
/// offered.
pub const SPLICE_MIN: u64 = 16 * 1024;

/// Moves `job`'s remaining body bytes from its upstream connection to
/// `sink`; the bytes moved, and the error that ended the relay early.
pub(crate) async fn relay(job: &mut Job, sink: &SpliceSink) -> (u64, std::io::Result<()>) {
    let pipe = match pipe::Pipe::take() {
        Ok(pipe) => pipe,
        Err(e) => return (0, Err(e)),
    };
    let mut moved = 0u64;
    let mut in_pipe = 0usize;
    let upstream = job.conn.socket();
    let ended = poll_fn(|cx| {
        poll_relay(
            cx,
            upstream,
            sink.socket(),
            &pipe,
            &mut job.left,
            &mut in_pipe,
            &mut moved,
        )
    })
    .await;
    // A pipe with bytes still in it cannot serve another body.
    if in_pipe == 0 {
        pipe.give_back();
    } else {
        pipe.discard();
    }
    (moved, ended)
}

fn poll_relay(
    cx: &mut Context<'_>,
    upstream: &TcpStream,
    client: &TcpStream,
    pipe: &pipe::Pipe,
    left: &mut u64,
    in_pipe: &mut usize,
    moved: &mut u64,
) -> Poll<std::io::Result<()>> {
    loop {
        if *in_pipe > 0 {
            ready!(client.poll_write_ready(cx))?;
            let more = if *left > 0 {
                SpliceFlags::MORE
            } else {
                SpliceFlags::empty()
            };
            let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK | more;
            match client.try_io(Interest::WRITABLE, || {
                Ok(rustix::pipe::splice(
                    pipe.read_end(),
                    None,
                    client,
                    None,
                    *in_pipe,
                    flags,
                )?)
            }) {
                Ok(0) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    *in_pipe -= n;
                    *moved += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            continue;
        }
        if *left == 0 {
            return Poll::Ready(Ok(()));
        }
        ready!(upstream.poll_read_ready(cx))?;
        let want = usize::try_from(*left)
            .unwrap_or(usize::MAX)
            .min(pipe.capacity());
        match upstream.try_io(Interest::READABLE, || {
            Ok(rustix::pipe::splice(
                upstream,
                None,
                pipe.write_end(),
                None,
                want,
                SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
            )?)
        }) {
            Ok(0) => {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the upstream closed the connection before the end of the body",
                )))
            }
            Ok(n) => {
                *in_pipe += n;
                *left -= n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}
