//! Body wrappers used by the pipeline: a request body size limit that says
//! when it tripped, and [`ObservedBody`], which lets an [`Observer`] watch a
//! body stream by and learn how it ended (the access log, latency metrics
//! and in-flight count; the dark-launch tee).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use gateway_core::{Body, BoxError};
use http_body::{Body as _, Frame, SizeHint};

/// Error raised when a request body exceeds the route's limit.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the route's limit of {0} bytes")]
pub struct BodyTooLarge(pub u64);

/// Caps a streamed request body at `limit` bytes.
pub struct LimitedBody {
    inner: Body,
    remaining: u64,
    limit: u64,
    tripped: Arc<AtomicBool>,
}

impl LimitedBody {
    /// Wraps `inner`; `tripped` is set if the limit is exceeded.
    pub fn new(inner: Body, limit: u64, tripped: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            remaining: limit,
            limit,
            tripped,
        }
    }
}

impl http_body::Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > this.remaining {
                        this.tripped.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge(this.limit)))));
                    }
                    this.remaining -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Watches a streaming body: sees each data chunk as it passes, and is told
/// once how the body ended.
pub trait Observer: Send + Unpin + 'static {
    /// A data chunk on its way through.
    fn data(&mut self, _chunk: &Bytes) {}

    /// The body ended: `completed` is false when it broke off or was dropped
    /// early (the client went away).
    fn end(self, completed: bool);
}

/// A body passed through unchanged while an [`Observer`] watches it.
pub struct ObservedBody<O: Observer> {
    inner: Body,
    done: bool,
    observer: Option<O>,
}

impl<O: Observer> ObservedBody<O> {
    /// Wraps `inner` under `observer`.
    pub fn new(inner: Body, observer: O) -> Self {
        Self {
            inner,
            done: false,
            observer: Some(observer),
        }
    }

    fn end(&mut self, completed: bool) {
        if let Some(o) = self.observer.take() {
            o.end(completed);
        }
    }
}

impl<O: Observer> http_body::Body for ObservedBody<O> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(o)) = (frame.data_ref(), this.observer.as_mut()) {
                    o.data(data);
                }
                if this.inner.is_end_stream() {
                    this.done = true;
                    this.end(true);
                }
            }
            Poll::Ready(None) => {
                this.done = true;
                this.end(true);
            }
            Poll::Ready(Some(Err(_))) => this.end(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<O: Observer> Drop for ObservedBody<O> {
    fn drop(&mut self) {
        // An empty body may never be polled; it still completed.
        let completed = self.done || self.inner.is_end_stream();
        self.end(completed);
    }
}
