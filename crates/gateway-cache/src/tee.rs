//! A response body that streams to the client while keeping a copy for the
//! cache.
//!
//! Chunks are forwarded as they arrive, never held back; a copy accumulates
//! only up to the per-object limit. Past the limit the copy is dropped and
//! the body keeps streaming uncached. When the origin's stream ends the
//! copy is handed to a completion callback; if the client goes away or the
//! stream fails first, the callback is dropped unrun, which (through its
//! own drop guards) releases any coalesced waiters.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use gateway_core::{Body, BoxError};
use http_body::{Frame, SizeHint};

/// Receives the complete body once the stream ends within the limit.
pub trait OnComplete: Send + 'static {
    /// Called once with the whole body.
    fn complete(self: Box<Self>, body: Bytes);
    /// Called when the copy was abandoned because it grew over the limit.
    fn too_large(self: Box<Self>);
}

/// See the module docs.
pub struct TeeBody {
    inner: Body,
    buf: BytesMut,
    limit: usize,
    done: Option<Box<dyn OnComplete>>,
}

impl TeeBody {
    /// Wraps `inner`; `done` gets the body if it ends within `limit` bytes.
    pub fn new(inner: Body, limit: usize, done: Box<dyn OnComplete>) -> Self {
        let mut this = Self {
            inner,
            buf: BytesMut::new(),
            limit,
            done: Some(done),
        };
        // An already-finished body is never polled by some servers.
        if http_body::Body::is_end_stream(&this.inner) {
            this.finish();
        }
        this
    }

    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            done.complete(std::mem::take(&mut self.buf).freeze());
        }
    }
}

impl http_body::Body for TeeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), true) = (frame.data_ref(), this.done.is_some()) {
                    if this.buf.len() + data.len() > this.limit {
                        this.buf = BytesMut::new();
                        if let Some(done) = this.done.take() {
                            done.too_large();
                        }
                    } else {
                        this.buf.extend_from_slice(data);
                    }
                }
                // Servers stop polling once `is_end_stream` is true, so the
                // copy is completed as soon as the last frame is out.
                if http_body::Body::is_end_stream(&this.inner) {
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.done = None;
                this.buf = BytesMut::new();
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::sync::{Arc, Mutex};

    #[derive(Default, Clone)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    struct Probe(Seen);
    impl OnComplete for Probe {
        fn complete(self: Box<Self>, body: Bytes) {
            self.0
                 .0
                .lock()
                .unwrap()
                .push(format!("complete:{}", body.len()));
        }
        fn too_large(self: Box<Self>) {
            self.0 .0.lock().unwrap().push("too_large".into());
        }
    }

    fn chunks(n: usize, size: usize) -> Body {
        let frames =
            (0..n).map(move |_| Ok::<_, BoxError>(Frame::data(Bytes::from(vec![1u8; size]))));
        gateway_core::body::boxed(StreamBody::new(futures::stream::iter(frames)))
    }

    #[tokio::test]
    async fn forwards_everything_and_copies_within_limit() {
        let seen = Seen::default();
        let body = TeeBody::new(chunks(4, 10), 100, Box::new(Probe(seen.clone())));
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(all.len(), 40);
        assert_eq!(*seen.0.lock().unwrap(), ["complete:40"]);
    }

    #[tokio::test]
    async fn gives_up_copy_over_limit_but_streams_on() {
        let seen = Seen::default();
        let body = TeeBody::new(chunks(4, 10), 25, Box::new(Probe(seen.clone())));
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(all.len(), 40);
        assert_eq!(*seen.0.lock().unwrap(), ["too_large"]);
    }

    #[tokio::test]
    async fn full_body_completes_without_trailing_poll() {
        let seen = Seen::default();
        let mut body = TeeBody::new(
            gateway_core::body::full("abc"),
            100,
            Box::new(Probe(seen.clone())),
        );
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "abc");
        assert_eq!(*seen.0.lock().unwrap(), ["complete:3"]);
    }
}
