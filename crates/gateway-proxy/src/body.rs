//! Body wrappers used by the pipeline: a request body size limit that says
//! when it tripped, and a response body that reports when it is done (for
//! the access log, latency metrics and the in-flight count).

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

/// Called once when a response body finishes or is dropped.
pub trait OnFinish: Send + 'static {
    /// `bytes` sent; `completed` is false when the client went away first.
    fn finish(self: Box<Self>, bytes: u64, completed: bool);
}

/// A response body that reports its end.
pub struct ObservedBody {
    inner: Body,
    bytes: u64,
    done: bool,
    on_finish: Option<Box<dyn OnFinish>>,
}

impl ObservedBody {
    /// Wraps `inner`, calling `on_finish` at its end.
    pub fn new(inner: Body, on_finish: Box<dyn OnFinish>) -> Self {
        Self {
            inner,
            bytes: 0,
            done: false,
            on_finish: Some(on_finish),
        }
    }

    fn finish(&mut self, completed: bool) {
        if let Some(f) = self.on_finish.take() {
            f.finish(self.bytes, completed);
        }
    }
}

impl http_body::Body for ObservedBody {
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
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.done = true;
                    this.finish(true);
                }
            }
            Poll::Ready(None) => {
                this.done = true;
                this.finish(true);
            }
            Poll::Ready(Some(Err(_))) => this.finish(false),
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

impl Drop for ObservedBody {
    fn drop(&mut self) {
        // An empty body may never be polled; it still completed.
        let completed = self.done || self.inner.is_end_stream();
        self.finish(completed);
    }
}
