//! The per-request route context the gateway hands to
//! [`HttpCache::handle`](crate::HttpCache::handle): route name, cache
//! settings, consumer and the authority the client addressed.
//!
//! Plain data, so the cache never needs the gateway's route table.

use std::sync::Arc;

use crate::config::RouteCacheConfig;

/// Per-request route information the cache needs.
#[derive(Debug, Clone)]
pub struct RouteCacheContext {
    /// Route name, for metrics and logs.
    pub route: Arc<str>,
    /// The route's cache settings.
    pub config: Arc<RouteCacheConfig>,
    /// The authenticated consumer, used in the key when `key_consumer`.
    pub consumer: Option<String>,
    /// `http` or `https`, as the client connected.
    pub scheme: String,
    /// The authority the client addressed; when `None`, the request URI's
    /// authority or `Host` header is used.
    pub authority: Option<String>,
}

impl RouteCacheContext {
    /// A context for `route` with its settings; scheme `http`, authority
    /// taken from the request.
    pub fn new(route: impl Into<Arc<str>>, config: Arc<RouteCacheConfig>) -> Self {
        Self {
            route: route.into(),
            config,
            consumer: None,
            scheme: "http".into(),
            authority: None,
        }
    }

    /// Sets the authenticated consumer id.
    pub fn with_consumer(mut self, consumer: impl Into<String>) -> Self {
        self.consumer = Some(consumer.into());
        self
    }

    /// Sets the scheme and authority the client addressed.
    pub fn with_authority(
        mut self,
        scheme: impl Into<String>,
        authority: impl Into<String>,
    ) -> Self {
        self.scheme = scheme.into();
        self.authority = Some(authority.into());
        self
    }
}
