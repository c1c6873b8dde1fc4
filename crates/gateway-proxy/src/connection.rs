//! What a client connection may hold: how many may be open (in all, and
//! per client address), and how long one may stay silent.
//!
//! - [`ConnLimits`] admits or refuses a connection when it is accepted; the
//!   returned [`ConnPermit`] gives the slot back when the connection ends.
//! - [`ConnWatch`] follows one connection's state (waiting for its first
//!   byte, reading a request head, serving, idle) from two cheap hooks: the
//!   socket wrapper [`Watched`] notes the first byte read while no request is
//!   in flight, and [`RequestGuard`] (carried by the response body,
//!   [`TrackedBody`]) counts requests in flight. [`ConnWatch::next_wake`]
//!   tells the connection's task when to look again and
//!   [`ConnWatch::expired`] which deadline, if any, has passed.
//!
//! Nothing here wakes a task per request: deadlines are computed from
//! recorded times, and the connection's task sleeps until the earliest time
//! one of them could pass.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use gateway_config::GatewaySettings;
use gateway_core::Body;
use http_body::{Frame, SizeHint};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

// === limits ===

/// Descriptors always kept free for what is not a client connection
/// (upstream connections, the admin API, stores, log files), at least.
pub const MIN_RESERVED_DESCRIPTORS: u64 = 256;

/// The open-files limit assumed when the process has none.
const UNLIMITED_DESCRIPTORS: u64 = 1 << 20;

/// The default `max_connections` for an open-files limit of `nofile`: half
/// of what is left after keeping a tenth of the limit (at least
/// [`MIN_RESERVED_DESCRIPTORS`]) free, since a client connection may need an
/// upstream connection too; never below 16.
pub fn default_max_connections(nofile: Option<u64>) -> usize {
    let nofile = nofile.unwrap_or(UNLIMITED_DESCRIPTORS);
    let reserved = (nofile / 10).max(MIN_RESERVED_DESCRIPTORS);
    let usable = nofile.saturating_sub(reserved) / 2;
    usize::try_from(usable.max(16)).unwrap_or(usize::MAX)
}

/// The process's open-files limit (`ulimit -n`); `None` when unlimited.
pub fn open_files_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// The limits in force: `[gateway] max_connections` and
/// `max_connections_per_client`, or their defaults.
pub fn effective_limits(settings: &GatewaySettings, nofile: Option<u64>) -> (usize, usize) {
    let max = settings
        .max_connections
        .unwrap_or_else(|| default_max_connections(nofile));
    let per_client = settings.max_connections_per_client.unwrap_or({
        if settings.trust_forwarded_headers || !settings.trusted_proxies.is_empty() {
            max
        } else {
            (max / 4).max(1)
        }
    });
    (max, per_client.min(max))
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections` are open.
    MaxConnections,
    /// `max_connections_per_client` are open from this address.
    PerClient,
}

impl Refused {
    /// Stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::MaxConnections => "max_connections",
            Refused::PerClient => "max_connections_per_client",
        }
    }
}

/// How long a connection must have been silent before a new one may take
/// its place at the limit: a burst of new clients does not push each other
/// out before they could send anything.
pub const EVICTABLE_AFTER: Duration = Duration::from_secs(1);

/// Open client connections, in all and per address, against their limits.
/// Shared by every public listener; the admin listener is not counted.
///
/// At `max_connections`, a new connection takes the place of the oldest
/// one that has not sent a request yet (silent for at least
/// [`EVICTABLE_AFTER`]), which is closed; if there is none it is refused.
/// Connections that have served a request (established clients, idle
/// keep-alive) are never pushed out: their deadlines close them.
#[derive(Debug)]
pub struct ConnLimits {
    max: usize,
    per_client: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
    /// Connections in the order they were accepted, as long as they may
    /// still be silent; entries whose connection served a request or
    /// ended are dropped when met.
    silent: VecDeque<Weak<Slot>>,
}

/// What the limits know of one connection.
#[derive(Debug)]
pub struct Slot {
    accepted: Instant,
    served: AtomicBool,
    evict: CancellationToken,
}

impl Slot {
    /// Fires when the connection must close to make room.
    pub fn evicted(&self) -> &CancellationToken {
        &self.evict
    }

    fn mark_served(&self) {
        if !self.served.load(Ordering::Relaxed) {
            self.served.store(true, Ordering::Relaxed);
        }
    }
}

impl ConnLimits {
    /// Limits of `max` connections in all and `per_client` per address.
    pub fn new(max: usize, per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            per_client,
            open: Mutex::new(Open::default()),
        })
    }

    /// The limit on all connections.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The limit per client address.
    pub fn per_client(&self) -> usize {
        self.per_client
    }

    /// Takes a slot for a connection from `ip`, making room by closing the
    /// oldest silent connection if needed, or says which limit is full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, Refused> {
        self.admit_at(ip, Instant::now())
    }

    fn admit_at(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<ConnPermit, Refused> {
        let mut open = self.open.lock();
        if open.by_ip.get(&ip).copied().unwrap_or(0) >= self.per_client {
            return Err(Refused::PerClient);
        }
        if open.total >= self.max && !open.evict_one(now) {
            return Err(Refused::MaxConnections);
        }
        *open.by_ip.entry(ip).or_insert(0) += 1;
        open.total += 1;
        let slot = Arc::new(Slot {
            accepted: now,
            served: AtomicBool::new(false),
            evict: CancellationToken::new(),
        });
        open.silent.push_back(Arc::downgrade(&slot));
        if open.silent.len() > 2 * open.total.max(64) {
            open.silent.retain(|w| {
                w.upgrade()
                    .is_some_and(|s| !s.served.load(Ordering::Relaxed))
            });
        }
        metrics::gauge!("gatehouse_client_connections").set(open.total as f64);
        Ok(ConnPermit {
            limits: self.clone(),
            ip,
            slot,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().total
    }
}

impl Open {
    /// Asks the oldest connection still silent after [`EVICTABLE_AFTER`]
    /// to close; whether there was one.
    fn evict_one(&mut self, now: Instant) -> bool {
        while let Some(weak) = self.silent.pop_front() {
            let Some(slot) = weak.upgrade() else { continue };
            if slot.served.load(Ordering::Relaxed) || slot.evict.is_cancelled() {
                continue;
            }
            if now.saturating_duration_since(slot.accepted) < EVICTABLE_AFTER {
                // The oldest is too young, so are the others.
                self.silent.push_front(weak);
                return false;
            }
            slot.evict.cancel();
            metrics::counter!("gatehouse_connections_closed_total", "reason" => "evicted")
                .increment(1);
            return true;
        }
        false
    }
}

/// One admitted connection's slot, given back on drop.
#[derive(Debug)]
pub struct ConnPermit {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
    slot: Arc<Slot>,
}

impl ConnPermit {
    /// The connection's slot: whether it was evicted, whether it served.
    pub fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
        metrics::gauge!("gatehouse_client_connections").set(open.total as f64);
    }
}

// === deadlines ===

/// The three client deadlines (`[gateway]`).
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// From the connection's start to its first byte.
    pub first_byte: Duration,
    /// From a request's first byte to the end of its head.
    pub head: Duration,
    /// With no request in flight, from the end of the last response.
    pub idle: Duration,
}

impl Deadlines {
    /// The deadlines `settings` configure.
    pub fn from_settings(settings: &GatewaySettings) -> Self {
        Self {
            first_byte: settings.first_byte_timeout,
            head: settings.header_read_timeout,
            idle: settings.idle_timeout,
        }
    }
}

/// Which deadline closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// Nothing arrived within `first_byte_timeout`.
    FirstByte,
    /// A request head did not complete within `header_read_timeout`.
    Head,
    /// No request for `idle_timeout`.
    Idle,
    /// A request body owed by the client paused longer than
    /// `header_read_timeout` (native HTTP/1.1 engine).
    BodyProgress,
}

impl Expired {
    /// Stable name for logs and metrics (the setting's name).
    pub fn as_str(self) -> &'static str {
        match self {
            Expired::FirstByte => "first_byte_timeout",
            Expired::Head => "header_read_timeout",
            Expired::BodyProgress => "body_progress",
            Expired::Idle => "idle_timeout",
        }
    }
}

const NONE: u64 = u64::MAX;

/// One connection's state, as far as its deadlines are concerned. Times
/// are milliseconds since the connection started.
#[derive(Debug)]
pub struct ConnWatch {
    born: Instant,
    slot: Option<Arc<Slot>>,
    in_flight: AtomicUsize,
    /// Whether a request was ever received.
    served: AtomicBool,
    /// HTTP/2: bytes between requests are frames (pings, settings), not
    /// the start of a request head.
    multiplexed: AtomicBool,
    /// When the last request in flight ended.
    idle_since: AtomicU64,
    /// The first byte read since the connection went idle, `NONE` if none.
    head_started: AtomicU64,
    /// Whether reading a request body waits on the client (as the HTTP/1.1
    /// engine reports through [`gateway_http1::BodyObserver`]).
    body_pending: AtomicBool,
    /// When bytes last arrived while a body was owed.
    body_progress: AtomicU64,
}

impl ConnWatch {
    /// A connection starting now, holding `slot` in the limits.
    pub fn new(slot: Option<Arc<Slot>>) -> Arc<Self> {
        Arc::new(Self {
            born: Instant::now(),
            slot,
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            multiplexed: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NONE),
            body_pending: AtomicBool::new(false),
            body_progress: AtomicU64::new(0),
        })
    }

    fn ms_at(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.born).as_millis()).unwrap_or(NONE - 1)
    }

    fn at(&self, ms: u64, plus: Duration) -> Instant {
        self.born + Duration::from_millis(ms) + plus
    }

    /// Bytes arrived from the client.
    fn on_read(&self) {
        if self.body_pending.load(Ordering::Relaxed) {
            self.body_progress
                .store(self.ms_at(Instant::now()), Ordering::Relaxed);
            return;
        }
        if self.head_started.load(Ordering::Relaxed) == NONE
            && self.in_flight.load(Ordering::Acquire) == 0
            && !self.multiplexed.load(Ordering::Relaxed)
        {
            self.head_started
                .store(self.ms_at(Instant::now()), Ordering::Relaxed);
        }
    }

    /// A request's head was received; the guard ends it when dropped.
    pub fn begin(self: &Arc<Self>, version: http::Version) -> RequestGuard {
        if version == http::Version::HTTP_2 {
            self.multiplexed.store(true, Ordering::Relaxed);
        }
        self.served.store(true, Ordering::Relaxed);
        if let Some(slot) = &self.slot {
            slot.mark_served();
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestGuard(self.clone())
    }

    fn end(&self) {
        // Times first, so a reader that sees no request in flight sees them.
        self.head_started.store(NONE, Ordering::Relaxed);
        self.idle_since
            .store(self.ms_at(Instant::now()), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// The deadline that applies in the current state, if any.
    fn deadline(&self, d: &Deadlines) -> Option<(Instant, Expired)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            // Serving: only a request body read waiting on the client is
            // timed, by how long it has gone without a byte.
            return self.body_pending.load(Ordering::Relaxed).then(|| {
                (
                    self.at(self.body_progress.load(Ordering::Relaxed), d.head),
                    Expired::BodyProgress,
                )
            });
        }
        let head = self.head_started.load(Ordering::Relaxed);
        Some(if head != NONE {
            (self.at(head, d.head), Expired::Head)
        } else if !self.served.load(Ordering::Relaxed) {
            (self.born + d.first_byte, Expired::FirstByte)
        } else {
            (
                self.at(self.idle_since.load(Ordering::Relaxed), d.idle),
                Expired::Idle,
            )
        })
    }

    /// The deadline that has passed at `now`, if one has.
    pub fn expired(&self, d: &Deadlines, now: Instant) -> Option<Expired> {
        self.deadline(d)
            .filter(|(at, _)| *at <= now)
            .map(|(_, why)| why)
    }

    /// When to look again: the current deadline, or sooner if a change of
    /// state could bring one earlier. A deadline that a change of state
    /// (a head starting, a request ending) sets is at least `head` or
    /// `idle` after that change, so looking again that often misses none;
    /// nothing has to wake the task when a request starts or ends.
    pub fn next_wake(&self, d: &Deadlines, now: Instant) -> Instant {
        let soonest_new = now + d.head.min(d.idle);
        match self.deadline(d) {
            None => soonest_new,
            Some((at, _)) => at.min(soonest_new),
        }
    }
}

/// The HTTP/1.1 engine says when reading a request body waits on the
/// client; such a wait may last `header_read_timeout`. A change sets a
/// deadline at least `head` away, so `next_wake` misses none.
impl gateway_http1::BodyObserver for ConnWatch {
    fn body_pending(&self, pending: bool) {
        if pending {
            self.body_progress
                .store(self.ms_at(Instant::now()), Ordering::Relaxed);
        }
        self.body_pending.store(pending, Ordering::Relaxed);
    }
}

/// A request in flight on a connection; ends it when dropped.
#[derive(Debug)]
pub struct RequestGuard(Arc<ConnWatch>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A response body that keeps its request counted as in flight until the
/// body is done and dropped.
pub struct TrackedBody {
    inner: Body,
    _guard: RequestGuard,
}

impl TrackedBody {
    /// `inner`, ending `guard`'s request when it is dropped.
    pub fn new(inner: Body, guard: RequestGuard) -> Self {
        Self {
            inner,
            _guard: guard,
        }
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = gateway_core::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client socket that tells its [`ConnWatch`] when bytes arrive.
pub struct Watched<S> {
    inner: S,
    watch: Arc<ConnWatch>,
}

impl<S> Watched<S> {
    /// `inner`, reporting to `watch`.
    pub fn new(inner: S, watch: Arc<ConnWatch>) -> Self {
        Self { inner, watch }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.on_read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Deadlines = Deadlines {
        first_byte: Duration::from_secs(5),
        head: Duration::from_secs(10),
        idle: Duration::from_secs(75),
    };

    #[test]
    fn defaults_keep_descriptors_free() {
        assert_eq!(default_max_connections(Some(1024)), 384);
        assert_eq!(default_max_connections(Some(65_536)), 29_491);
        assert_eq!(default_max_connections(Some(100)), 16);
        assert!(default_max_connections(None) > 100_000);
        let mut s = GatewaySettings::default();
        assert_eq!(effective_limits(&s, Some(1024)), (384, 96));
        s.trust_forwarded_headers = true;
        assert_eq!(effective_limits(&s, Some(1024)), (384, 384));
        s.max_connections = Some(10);
        s.max_connections_per_client = Some(3);
        assert_eq!(effective_limits(&s, Some(1024)), (10, 3));
    }

    #[test]
    fn limits_count_in_all_and_per_address() {
        let limits = ConnLimits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).unwrap_err(), Refused::PerClient);
        let _b1 = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).unwrap_err(), Refused::MaxConnections);
        drop(a1);
        assert_eq!(limits.open(), 2);
        let _b2 = limits.admit(b).unwrap();
    }

    #[test]
    fn at_the_limit_the_oldest_silent_connection_makes_room() {
        let limits = ConnLimits::new(2, 10);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        let first = limits.admit_at(ip, t0).unwrap();
        let second = limits.admit_at(ip, t0).unwrap();
        // Too young to be pushed out.
        assert_eq!(
            limits.admit_at(ip, t0).unwrap_err(),
            Refused::MaxConnections
        );
        // The first served a request: it stays; the second is silent.
        drop(ConnWatch::new(Some(first.slot().clone())).begin(http::Version::HTTP_11));
        let later = t0 + EVICTABLE_AFTER;
        let third = limits.admit_at(ip, later).unwrap();
        assert!(!first.slot().evicted().is_cancelled());
        assert!(second.slot().evicted().is_cancelled());
        drop(second);
        assert_eq!(limits.open(), 2);
        // Nothing silent is left old enough.
        assert_eq!(
            limits.admit_at(ip, later).unwrap_err(),
            Refused::MaxConnections
        );
        drop(third);
    }

    /// A watch whose times are set by hand (milliseconds since its start).
    fn watch(head_started: u64, idle_since: u64, served: bool) -> Arc<ConnWatch> {
        let w = ConnWatch::new(None);
        w.head_started.store(head_started, Ordering::Relaxed);
        w.idle_since.store(idle_since, Ordering::Relaxed);
        w.served.store(served, Ordering::Relaxed);
        w
    }

    #[test]
    fn an_owed_request_body_is_timed_by_its_pauses() {
        use gateway_http1::BodyObserver as _;
        let secs = Duration::from_secs;
        let w = watch(NONE, 0, true);
        let t0 = w.born;
        let _guard = w.begin(http::Version::HTTP_11);
        assert_eq!(w.expired(&D, t0 + secs(500)), None, "serving, nothing owed");
        w.body_progress.store(2000, Ordering::Relaxed);
        w.body_pending.store(true, Ordering::Relaxed);
        assert_eq!(w.expired(&D, t0 + secs(11)), None);
        assert_eq!(w.expired(&D, t0 + secs(12)), Some(Expired::BodyProgress));
        // The body ended: the response may take as long as it takes.
        w.body_pending(false);
        assert_eq!(w.expired(&D, t0 + secs(500)), None);
    }

    #[test]
    fn each_state_has_its_deadline() {
        let secs = Duration::from_secs;
        // Silent: the first-byte deadline.
        let w = watch(NONE, 0, false);
        let t0 = w.born;
        assert_eq!(w.expired(&D, t0 + secs(4)), None);
        assert_eq!(w.expired(&D, t0 + secs(5)), Some(Expired::FirstByte));
        assert_eq!(w.next_wake(&D, t0), t0 + secs(5));
        // A head started at 1 s: due 10 s later, whatever first_byte says.
        let w = watch(1000, 0, false);
        let t0 = w.born;
        assert_eq!(w.expired(&D, t0 + secs(6)), None);
        assert_eq!(w.expired(&D, t0 + secs(11)), Some(Expired::Head));
        // A request in flight: no deadline; look again within the shorter
        // of `head` and `idle`.
        let guard = w.begin(http::Version::HTTP_11);
        assert_eq!(w.expired(&D, t0 + secs(500)), None);
        assert_eq!(w.next_wake(&D, t0 + secs(3)), t0 + secs(13));
        drop(guard);
        assert_eq!(w.head_started.load(Ordering::Relaxed), NONE);
        // Idle since 3 s: closed at 78 s; the task looks again within
        // `head`, in case a head starts (and a request ends).
        let w = watch(NONE, 3000, true);
        let t0 = w.born;
        assert_eq!(w.expired(&D, t0 + secs(77)), None);
        assert_eq!(w.expired(&D, t0 + secs(78)), Some(Expired::Idle));
        assert_eq!(w.next_wake(&D, t0 + secs(3)), t0 + secs(13));
        assert_eq!(w.next_wake(&D, t0 + secs(70)), t0 + secs(78));
    }

    #[test]
    fn reads_start_a_head_only_between_http1_requests() {
        let w = watch(NONE, 0, true);
        w.on_read();
        assert_ne!(w.head_started.load(Ordering::Relaxed), NONE);
        // HTTP/2: bytes between requests are frames, not a head.
        let w = watch(NONE, 0, true);
        drop(w.begin(http::Version::HTTP_2));
        w.on_read();
        assert_eq!(w.head_started.load(Ordering::Relaxed), NONE);
        // During a request: body bytes, not a head.
        let w = watch(NONE, 0, true);
        let _guard = w.begin(http::Version::HTTP_11);
        w.on_read();
        assert_eq!(w.head_started.load(Ordering::Relaxed), NONE);
    }
}
