//! The origin callback: how the cache reaches the upstream on a miss, a
//! revalidation or a background refresh, and how that call fails.
//!
//! A trait rather than a concrete client keeps the cache ignorant of
//! listeners, clusters and the pipeline (the gateway wires its forwarding
//! phases in through [`origin_fn`]).

use std::sync::Arc;

use futures::future::BoxFuture;
use gateway_core::{Body, Problem};
use http::{Request, Response};

/// The origin the cache calls on a miss, a revalidation or a refresh.
///
/// Called with a request whose body is empty for cache-driven fetches
/// (GET/HEAD); unsafe methods are passed with their body. The returned
/// future is `'static` so background refreshes can outlive the request.
pub trait Origin: Send + Sync + 'static {
    /// Sends `req` to the origin.
    fn fetch(&self, req: Request<Body>) -> BoxFuture<'static, Result<Response<Body>, OriginError>>;
}

/// Wraps a closure as an [`Origin`], for wiring the cache in front of an
/// existing upstream call without a named type.
pub fn origin_fn<F>(f: F) -> Arc<dyn Origin>
where
    F: Fn(Request<Body>) -> BoxFuture<'static, Result<Response<Body>, OriginError>>
        + Send
        + Sync
        + 'static,
{
    struct FnOrigin<F>(F);
    impl<F> Origin for FnOrigin<F>
    where
        F: Fn(Request<Body>) -> BoxFuture<'static, Result<Response<Body>, OriginError>>
            + Send
            + Sync
            + 'static,
    {
        fn fetch(
            &self,
            req: Request<Body>,
        ) -> BoxFuture<'static, Result<Response<Body>, OriginError>> {
            (self.0)(req)
        }
    }
    Arc::new(FnOrigin(f))
}

/// The origin could not produce a response (connect failure, timeout...).
///
/// Carries the problem the client sees when nothing stale may be served.
#[derive(Debug, thiserror::Error)]
#[error("origin failed: {problem}")]
pub struct OriginError {
    /// What the client is told.
    pub problem: Problem,
}

impl OriginError {
    /// An error answering the client with `problem`.
    pub fn new(problem: Problem) -> Self {
        Self { problem }
    }
}
