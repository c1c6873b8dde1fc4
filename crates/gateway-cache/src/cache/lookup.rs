//! Lookup: the client-facing URL a request is keyed on, and the stored
//! variant it selects through the `Vary` names stored for its primary key.
//!
//! Also the two small key conversions the rest of the flow shares.

use std::sync::Arc;

use http::{header, request, HeaderMap, HeaderName};

use super::route::RouteCacheContext;
use super::state::HttpCache;
use crate::key::{self, PrimaryKey, VariantKey};
use crate::storage::CachedResponse;

impl HttpCache {
    pub(crate) fn url_of(
        &self,
        parts: &request::Parts,
        route: &RouteCacheContext,
    ) -> Result<String, key::KeyError> {
        let authority = route
            .authority
            .clone()
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .or_else(|| {
                parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            })
            .ok_or_else(|| key::KeyError::NotAbsolute(parts.uri.to_string()))?;
        let scheme = parts.uri.scheme_str().unwrap_or(&route.scheme);
        let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        key::normalize_url(
            scheme,
            &authority,
            pq,
            &[
                &self.inner.cfg.ignore_query_params,
                &route.config.ignore_query_params,
            ],
        )
    }

    #[allow(clippy::type_complexity)]
    pub(crate) fn lookup(
        &self,
        primary: &PrimaryKey,
        headers: &HeaderMap,
    ) -> (
        Option<Vec<HeaderName>>,
        Option<(VariantKey, Arc<CachedResponse>)>,
    ) {
        let Some(vary) = self.inner.storage.vary(primary) else {
            return (None, None);
        };
        let key = primary.variant(key::secondary_key(headers, &vary));
        match self.inner.storage.get(&key) {
            Some(object) => (Some(vary), Some((key, object))),
            // Looking can drop what was stored (a disk entry that failed its
            // checks), so the miss reports what is stored now.
            None => (self.inner.storage.vary(primary), None),
        }
    }
}

pub(crate) fn key_vary(headers: &HeaderMap) -> Vec<HeaderName> {
    key::parse_vary(headers).unwrap_or_default()
}

pub(crate) fn key_primary(key: &VariantKey) -> PrimaryKey {
    PrimaryKey {
        url: key.url.clone(),
        extra: key.extra.clone(),
    }
}
