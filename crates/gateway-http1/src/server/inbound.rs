//! The read side of a client connection, shared by the connection driver
//! (request heads) and the request body handed to the service.
//!
//! Both run in the connection's task in the usual case, so the lock is
//! never contended; it is there because a body may be moved to another
//! task. Each request body carries the generation of its request: a body
//! kept past its exchange cannot read the next request's bytes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use gateway_core::BoxError;
use http_body::{Frame, SizeHint};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, ReadHalf};

use crate::chunked::{Chunk, ChunkedDecoder};
use crate::framing::RequestBody;

/// Most body bytes handed out in one frame, and read in one call.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// How the current request's body is being read.
#[derive(Debug)]
pub(crate) enum Decoder {
    Done,
    Length(u64),
    Chunked(ChunkedDecoder),
    /// The body failed (bad chunk, early close): the connection cannot be
    /// reused.
    Failed,
}

/// Where `Expect: 100-continue` stands for the current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Continue {
    /// Not asked for, already sent, or too late to send.
    No,
    /// Asked for; the body has not been read yet.
    Expected,
    /// The body wants to be read: the driver writes the 100.
    Wanted,
}

pub(crate) struct Inbound<S> {
    pub io: ReadHalf<S>,
    pub buf: BytesMut,
    pub decoder: Decoder,
    pub generation: u64,
    pub cont: Continue,
    /// Bytes of body read (and handed out or dropped) for this request.
    pub body_read: u64,
    /// The driver, waiting for a continue request.
    pub driver: Option<Waker>,
    /// The body, waiting for the 100 to be written.
    pub body: Option<Waker>,
    /// Told when the body reader starts and stops waiting on the client.
    pub observer: Option<Arc<dyn super::BodyObserver>>,
    /// What the observer was last told.
    pub pending: bool,
}

/// Why a request body failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BodyError(pub &'static str);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for BodyError {}

impl<S: AsyncRead> Inbound<S> {
    /// Starts reading a request body framed as `framing`.
    pub fn begin(&mut self, framing: RequestBody, expect_continue: bool) -> u64 {
        self.generation += 1;
        self.body_read = 0;
        self.decoder = match framing {
            RequestBody::None => Decoder::Done,
            RequestBody::Length(n) => Decoder::Length(n),
            RequestBody::Chunked => Decoder::Chunked(ChunkedDecoder::new()),
        };
        self.cont = if expect_continue && !matches!(self.decoder, Decoder::Done) {
            Continue::Expected
        } else {
            Continue::No
        };
        self.set_pending(false);
        self.generation
    }

    /// Tells the observer, on a change, whether the body reader waits on
    /// the client.
    pub fn set_pending(&mut self, pending: bool) {
        if self.pending != pending {
            self.pending = pending;
            if let Some(o) = &self.observer {
                o.body_pending(pending);
            }
        }
    }

    /// Reads more bytes into the buffer: `Ok(0)` at end of file.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(READ_CHUNK.min(self.buf.len().max(8192)));
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    /// The next frame of the current body.
    pub fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = self.poll_body_inner(cx);
        // Pending only ever means waiting on the socket for body bytes:
        // that wait, and only that, is what a body-progress deadline times
        // (a body nobody reads yet is not the client's delay).
        self.set_pending(polled.is_pending());
        polled
    }

    fn poll_body_inner(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        loop {
            match &mut self.decoder {
                Decoder::Done => return Poll::Ready(None),
                Decoder::Failed => {
                    return Poll::Ready(Some(Err(BodyError("the request body failed earlier"))))
                }
                Decoder::Length(left) => {
                    if !self.buf.is_empty() {
                        let n = (*left).min(self.buf.len() as u64).min(READ_CHUNK as u64) as usize;
                        *left -= n as u64;
                        if *left == 0 {
                            self.decoder = Decoder::Done;
                        }
                        self.body_read += n as u64;
                        return Poll::Ready(Some(Ok(Frame::data(self.buf.split_to(n).freeze()))));
                    }
                }
                Decoder::Chunked(d) => match d.decode(&mut self.buf, READ_CHUNK) {
                    Ok(Some(Chunk::Data(data))) => {
                        self.body_read += data.len() as u64;
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(Some(Chunk::Trailers(t))) => {
                        return Poll::Ready(Some(Ok(Frame::trailers(t))))
                    }
                    Ok(Some(Chunk::End)) => {
                        self.decoder = Decoder::Done;
                        return Poll::Ready(None);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.decoder = Decoder::Failed;
                        return Poll::Ready(Some(Err(BodyError(e.0))));
                    }
                },
            }
            match self.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    self.decoder = Decoder::Failed;
                    return Poll::Ready(Some(Err(BodyError(
                        "the client closed the connection before the request body ended",
                    ))));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(_)) => {
                    self.decoder = Decoder::Failed;
                    return Poll::Ready(Some(Err(BodyError(
                        "the client connection failed while sending the request body",
                    ))));
                }
            }
        }
    }
}

/// A request body streaming from the client connection.
pub(crate) struct IncomingBody<S> {
    pub inbound: Arc<Mutex<Inbound<S>>>,
    pub generation: u64,
    /// Known length left, for `size_hint`.
    pub hint: Option<u64>,
    pub done: bool,
}

impl<S: AsyncRead + Send + 'static> http_body::Body for IncomingBody<S> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let inbound = self.inbound.clone();
        let mut inbound = inbound.lock();
        if inbound.generation != self.generation {
            self.done = true;
            return Poll::Ready(Some(Err(Box::new(BodyError(
                "the request body is no longer readable",
            )))));
        }
        match inbound.cont {
            Continue::No => {}
            Continue::Expected | Continue::Wanted => {
                inbound.cont = Continue::Wanted;
                inbound.body = Some(cx.waker().clone());
                if let Some(driver) = inbound.driver.take() {
                    driver.wake();
                }
                return Poll::Pending;
            }
        }
        let polled = inbound.poll_body(cx);
        match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.done = true,
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(h), Some(data)) = (self.hint.as_mut(), frame.data_ref()) {
                    *h -= (data.len() as u64).min(*h);
                }
                if matches!(inbound.decoder, Decoder::Done) {
                    self.done = true;
                }
            }
            Poll::Pending => {}
        }
        polled.map(|o| o.map(|r| r.map_err(|e| Box::new(e) as BoxError)))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        match self.hint {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
