//! Request coalescing: concurrent misses (and expired-entry validations)
//! for one key make one origin request. The first caller leads and holds a
//! [`FlightGuard`] until its outcome is stored; the others wait up to
//! `coalesce_timeout`, then answer from what the leader stored or fetch on
//! their own.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use gateway_core::Body;
use http::{request, Response};
use tokio::sync::watch;

use super::route::RouteCacheContext;
use super::state::{FlightKey, HttpCache, Inner};
use crate::directives::RequestDirectives;
use crate::key::PrimaryKey;
use crate::policy::{self, Usability};
use crate::status::{CacheDecision, CacheStatus};

impl HttpCache {
    /// Joins the flight for `key`: the first caller leads (and must hold
    /// the guard until its outcome is stored), later callers wait.
    pub(crate) fn join_flight(&self, key: FlightKey) -> Role {
        let mut flights = self.inner.flights.lock();
        if let Some((_, rx)) = flights.get(&key) {
            return Role::Waiter(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        let id = self.inner.next_flight.fetch_add(1, Ordering::Relaxed);
        flights.insert(key.clone(), (id, rx));
        Role::Leader(FlightGuard {
            inner: self.inner.clone(),
            key,
            id,
            _tx: tx,
        })
    }

    /// Waits (at most `coalesce_timeout`) for the leader, then answers from
    /// what it stored if that is fresh for this request; `None` means the
    /// caller goes to the origin itself.
    pub(crate) async fn await_flight(
        &self,
        mut rx: watch::Receiver<()>,
        parts: &request::Parts,
        route: &RouteCacheContext,
        primary: &PrimaryKey,
        rd: &RequestDirectives,
    ) -> Option<Response<Body>> {
        let waited = tokio::time::timeout(self.inner.cfg.coalesce_timeout, rx.changed()).await;
        if waited.is_err() {
            tracing::debug!(route = %route.route, url = %primary.url, "coalesce timeout; fetching alone");
        }
        let (_, (_, obj)) = match self.lookup(primary, &parts.headers) {
            (v, Some(found)) => (v, found),
            _ => return None,
        };
        let now = self.inner.clock.now();
        if policy::usability(&obj.freshness, obj.is_invalidated(), rd, now) != Usability::Fresh {
            return None;
        }
        let mut d = CacheDecision::new(CacheStatus::Hit);
        d.ttl = Some(obj.freshness.ttl(now));
        d.collapsed = true;
        Some(self.respond_stored(parts, route, &obj, d, now))
    }
}

pub(crate) enum Role {
    Leader(FlightGuard),
    Waiter(watch::Receiver<()>),
}

/// Held by the leader of a coalesced miss; dropping it wakes the waiters.
pub(crate) struct FlightGuard {
    inner: Arc<Inner>,
    key: FlightKey,
    id: u64,
    _tx: watch::Sender<()>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut flights = self.inner.flights.lock();
        if flights.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            flights.remove(&self.key);
        }
    }
}
