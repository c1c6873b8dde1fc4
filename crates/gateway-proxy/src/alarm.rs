//! [`Alarm`]: a future that is polled only after it has been woken.
//!
//! A connection's task waits on its connection and, beside it, on rare
//! events (the gateway stopping, an eviction, a deadline). `select!` polls
//! every branch each time the task is woken, and the task is woken a few
//! times per request by its sockets, so the rare waits would be polled (a
//! cancellation token's lock, the timer's state) that often for nothing.
//! Wrapped in an [`Alarm`], such a wait gets a waker of its own and is
//! polled again only when that waker fires.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, StreamExt as _};

/// Waits for `F`, polling it only when its own waker has fired.
pub struct Alarm<F>(FuturesUnordered<F>);

impl<F: Future> Alarm<F> {
    pub fn new(wait: F) -> Self {
        Self([wait].into_iter().collect())
    }
}

impl<F: Future> Future for Alarm<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.0.poll_next_unpin(cx) {
            Poll::Ready(Some(out)) => Poll::Ready(out),
            // Fired already: it does not fire twice.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn the_wait_is_polled_once_and_then_only_when_woken() {
        let polls = Arc::new(AtomicUsize::new(0));
        let token = tokio_util::sync::CancellationToken::new();
        let counted = {
            let (polls, token) = (polls.clone(), token.clone());
            let mut cancelled = Box::pin(token.cancelled_owned());
            std::future::poll_fn(move |cx| {
                polls.fetch_add(1, Ordering::Relaxed);
                cancelled.as_mut().poll(cx)
            })
        };
        let mut alarm = std::pin::pin!(Alarm::new(counted));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for _ in 0..5 {
            assert!(alarm.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::Relaxed), 1, "polled without a wake");
        token.cancel();
        assert!(alarm.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }
}
