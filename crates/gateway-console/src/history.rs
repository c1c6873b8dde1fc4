//! The traffic history behind the console's charts: fixed-size time
//! buckets kept in process, fed from the request log stage.
//!
//! Every series (all traffic, one route, one upstream) holds the last
//! [`MINUTES`] one-minute buckets and the last [`HOURS`] one-hour buckets.
//! A bucket counts requests, 5xx answers, 4xx answers, cache hits and
//! misses, and keeps a latency histogram of [`LATENCY_BUCKETS`] log-spaced
//! buckets (each √2 wider than the one before, from 100 µs), from which
//! p50 and p99 are read. Memory is fixed: a bucket is [`SLOT_BYTES`] bytes,
//! a series [`SERIES_BYTES`], and there are at most [`MAX_NAMED_SERIES`]
//! route series and as many upstream series (traffic past that counts in
//! a series named `other`), so the whole store stays under
//! [`MAX_BYTES`]. Nothing is written to disk; a restart starts empty.
//!
//! Recording is a handful of relaxed atomic additions, with no lock
//! beyond a shared read of the series map, and none at all through a
//! [`SeriesCache`] (what a route keeps). A bucket is recycled by the
//! first request of its new period; increments racing with that reset can
//! be lost, so counts at a bucket boundary are approximate.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use rustc_hash::FxHashMap;
use serde::Serialize;

/// One-minute buckets kept per series: the last hour.
pub const MINUTES: usize = 60;
/// One-hour buckets kept per series: the last day.
pub const HOURS: usize = 24;
/// Latency histogram buckets per time bucket.
pub const LATENCY_BUCKETS: usize = 40;
/// Named route (and, separately, upstream) series kept at most.
pub const MAX_NAMED_SERIES: usize = 64;
/// Size of one time bucket in memory.
pub const SLOT_BYTES: usize = std::mem::size_of::<Slot>();
/// Size of one series in memory.
pub const SERIES_BYTES: usize = std::mem::size_of::<Series>();
/// Upper bound of the store's memory: the total series, the named route
/// and upstream series and one `other` series for each.
pub const MAX_BYTES: usize = (1 + 2 * (MAX_NAMED_SERIES + 1)) * SERIES_BYTES;
// The bound the docs promise (docs/console.md): checked when compiling.
const _: () = assert!(MAX_BYTES < 4 * 1024 * 1024);

/// Name of the series that collects routes or upstreams past the cap.
pub const OTHER: &str = "other";

/// Lower edge of the first latency bucket, in seconds.
const LATENCY_FLOOR: f64 = 0.000_1;

/// How a cached route's request went, for the hit ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Served from the cache (fresh or stale).
    Hit,
    /// Went to the upstream.
    Miss,
}

/// One finished request, as the log stage reports it.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    /// The route it matched.
    pub route: Option<&'a str>,
    /// The upstream cluster it went to.
    pub upstream: Option<&'a str>,
    /// Response status.
    pub status: u16,
    /// Time until the last body byte.
    pub elapsed: Duration,
    /// Cache outcome, on cached routes.
    pub cache: Option<CacheOutcome>,
}

/// Which series to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeriesId {
    /// All traffic.
    Total,
    /// One route.
    Route(String),
    /// One upstream cluster.
    Upstream(String),
}

impl std::str::FromStr for SeriesId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "total" => Ok(Self::Total),
            Some(("route", name)) if !name.is_empty() => Ok(Self::Route(name.into())),
            Some(("upstream", name)) if !name.is_empty() => Ok(Self::Upstream(name.into())),
            _ => Err(format!(
                "unknown series `{s}`: expected `total`, `route:NAME` or `upstream:NAME`"
            )),
        }
    }
}

/// Which window to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// The last hour, by minute.
    Hour,
    /// The last day, by hour.
    Day,
}

impl Window {
    fn step_secs(self) -> u64 {
        match self {
            Self::Hour => 60,
            Self::Day => 3600,
        }
    }

    fn len(self) -> usize {
        match self {
            Self::Hour => MINUTES,
            Self::Day => HOURS,
        }
    }
}

/// One time bucket of a series, as read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Point {
    /// Start of the bucket, Unix seconds.
    pub t: u64,
    /// Requests finished in the bucket.
    pub requests: u64,
    /// Of which answered 5xx.
    pub errors: u64,
    /// Of which answered 4xx.
    pub client_errors: u64,
    /// Cache hits (cached routes only).
    pub cache_hits: u64,
    /// Cache misses (cached routes only).
    pub cache_misses: u64,
    /// Median latency in milliseconds (upper edge of its histogram bucket).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: Option<f64>,
}

/// A series over a window, oldest bucket first.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SeriesView {
    /// Bucket width in seconds.
    pub step: u64,
    /// The buckets, oldest first, the current (partial) one last.
    pub points: Vec<Point>,
    /// Latency histogram of the whole window: upper edges in milliseconds
    /// and counts, for distribution charts.
    pub latency: Vec<(f64, u64)>,
}

struct Slot {
    /// Period index plus one of the data held; 0 when never used.
    epoch: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    client_errors: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    latency: [AtomicU32; LATENCY_BUCKETS],
}

impl Slot {
    fn new() -> Self {
        Self {
            epoch: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            client_errors: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    /// Makes the slot hold `period`, clearing it if it held an older one.
    fn enter(&self, period: u64) {
        let want = period + 1;
        let have = self.epoch.load(Ordering::Acquire);
        if have == want {
            return;
        }
        if have > want {
            // A late request from a period already recycled: count it in
            // the newer one rather than lose it.
            return;
        }
        if self
            .epoch
            .compare_exchange(have, want, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            for c in [
                &self.requests,
                &self.errors,
                &self.client_errors,
                &self.cache_hits,
                &self.cache_misses,
            ] {
                c.store(0, Ordering::Relaxed);
            }
            for b in &self.latency {
                b.store(0, Ordering::Relaxed);
            }
        }
    }

    fn add(&self, s: &Sample<'_>, bucket: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if s.status >= 500 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        } else if s.status >= 400 {
            self.client_errors.fetch_add(1, Ordering::Relaxed);
        }
        match s.cache {
            Some(CacheOutcome::Hit) => self.cache_hits.fetch_add(1, Ordering::Relaxed),
            Some(CacheOutcome::Miss) => self.cache_misses.fetch_add(1, Ordering::Relaxed),
            None => 0,
        };
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The slot's counts if it holds `period`.
    fn read(&self, period: u64, hist: &mut [u64; LATENCY_BUCKETS]) -> Option<Point> {
        if self.epoch.load(Ordering::Acquire) != period + 1 {
            return None;
        }
        let mut own = [0u64; LATENCY_BUCKETS];
        for (i, b) in self.latency.iter().enumerate() {
            own[i] = u64::from(b.load(Ordering::Relaxed));
            hist[i] += own[i];
        }
        Some(Point {
            t: 0,
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            client_errors: self.client_errors.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            cache_misses: self.cache_misses.load(Ordering::Relaxed),
            p50_ms: quantile_ms(&own, 0.50),
            p99_ms: quantile_ms(&own, 0.99),
        })
    }
}

/// One series: the last hour by minute and the last day by hour.
struct Series {
    minutes: [Slot; MINUTES],
    hours: [Slot; HOURS],
}

impl Series {
    fn new() -> Self {
        Self {
            minutes: std::array::from_fn(|_| Slot::new()),
            hours: std::array::from_fn(|_| Slot::new()),
        }
    }

    fn record(&self, now_secs: u64, s: &Sample<'_>, bucket: usize) {
        let minute = now_secs / 60;
        let slot = &self.minutes[(minute % MINUTES as u64) as usize];
        slot.enter(minute);
        slot.add(s, bucket);
        let hour = now_secs / 3600;
        let slot = &self.hours[(hour % HOURS as u64) as usize];
        slot.enter(hour);
        slot.add(s, bucket);
    }

    fn view(&self, now_secs: u64, window: Window) -> SeriesView {
        let step = window.step_secs();
        let len = window.len() as u64;
        let slots: &[Slot] = match window {
            Window::Hour => &self.minutes,
            Window::Day => &self.hours,
        };
        let current = now_secs / step;
        let mut hist = [0u64; LATENCY_BUCKETS];
        let points = (current + 1 - len.min(current + 1)..=current)
            .map(|period| {
                let mut p = slots[(period % len) as usize]
                    .read(period, &mut hist)
                    .unwrap_or_default();
                p.t = period * step;
                p
            })
            .collect();
        SeriesView {
            step,
            points,
            latency: (0..LATENCY_BUCKETS)
                .map(|i| (bucket_upper_ms(i), hist[i]))
                .collect(),
        }
    }
}

/// Which latency bucket `elapsed` falls in.
fn latency_bucket(elapsed: Duration) -> usize {
    let secs = elapsed.as_secs_f64();
    if secs <= LATENCY_FLOOR {
        return 0;
    }
    // Bucket i's upper edge is FLOOR * 2^(i/2).
    let i = (2.0 * (secs / LATENCY_FLOOR).log2()).ceil() as usize;
    i.min(LATENCY_BUCKETS - 1)
}

fn bucket_upper_ms(i: usize) -> f64 {
    let ms = LATENCY_FLOOR * 1000.0 * 2f64.powf(i as f64 / 2.0);
    (ms * 1000.0).round() / 1000.0
}

fn quantile_ms(hist: &[u64; LATENCY_BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in hist.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(bucket_upper_ms(i));
        }
    }
    Some(bucket_upper_ms(LATENCY_BUCKETS - 1))
}

/// A route's series and its cluster's, found on first use: counting a
/// request through it takes no lock and no lookup by name. A route keeps
/// one for as long as its config serves; it must be used with one
/// [`History`] and always the same route and upstream names.
#[derive(Default)]
pub struct SeriesCache {
    route: OnceLock<Arc<Series>>,
    upstream: OnceLock<Arc<Series>>,
}

impl std::fmt::Debug for SeriesCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesCache").finish_non_exhaustive()
    }
}

/// The history store. Cheap to clone.
#[derive(Clone)]
pub struct History {
    inner: Arc<Inner>,
}

struct Inner {
    total: Series,
    routes: Named,
    upstreams: Named,
}

/// Series by name, capped at [`MAX_NAMED_SERIES`] plus `other`.
struct Named {
    /// Keyed by route and cluster names, which come from the config, so
    /// a fast hash without flood resistance serves (one lookup per
    /// request each).
    map: RwLock<FxHashMap<Box<str>, Arc<Series>>>,
    other: Arc<Series>,
}

impl Named {
    fn new() -> Self {
        Self {
            map: RwLock::new(FxHashMap::default()),
            other: Arc::new(Series::new()),
        }
    }

    fn get_or_add(&self, name: &str) -> Arc<Series> {
        if let Some(s) = self.map.read().get(name) {
            return s.clone();
        }
        let mut map = self.map.write();
        if let Some(s) = map.get(name) {
            return s.clone();
        }
        if map.len() >= MAX_NAMED_SERIES {
            return self.other.clone();
        }
        let s = Arc::new(Series::new());
        map.insert(name.into(), s.clone());
        s
    }

    fn get(&self, name: &str) -> Option<Arc<Series>> {
        if name == OTHER {
            return Some(self.other.clone());
        }
        self.map.read().get(name).cloned()
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.map.read().keys().map(|k| k.to_string()).collect();
        v.sort();
        v
    }
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").finish_non_exhaustive()
    }
}

impl History {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                total: Series::new(),
                routes: Named::new(),
                upstreams: Named::new(),
            }),
        }
    }

    /// Counts one finished request now.
    pub fn record(&self, sample: Sample<'_>) {
        self.record_at(unix_now(), sample);
    }

    /// Counts one finished request now, finding its route's and
    /// upstream's series through `cache`.
    pub fn record_cached(&self, cache: &SeriesCache, sample: Sample<'_>) {
        self.record_cached_at(unix_now(), cache, sample);
    }

    /// Counts one finished request at `now_secs` (Unix seconds).
    pub fn record_at(&self, now_secs: u64, sample: Sample<'_>) {
        self.record_cached_at(now_secs, &SeriesCache::default(), sample);
    }

    /// [`History::record_cached`] at `now_secs`.
    pub fn record_cached_at(&self, now_secs: u64, cache: &SeriesCache, sample: Sample<'_>) {
        let bucket = latency_bucket(sample.elapsed);
        self.inner.total.record(now_secs, &sample, bucket);
        if let Some(r) = sample.route {
            cache
                .route
                .get_or_init(|| self.inner.routes.get_or_add(r))
                .record(now_secs, &sample, bucket);
        }
        if let Some(u) = sample.upstream {
            cache
                .upstream
                .get_or_init(|| self.inner.upstreams.get_or_add(u))
                .record(now_secs, &sample, bucket);
        }
    }

    /// A series over a window ending now; `None` for a name never seen.
    pub fn view(&self, id: &SeriesId, window: Window) -> Option<SeriesView> {
        self.view_at(unix_now(), id, window)
    }

    /// A series over a window ending at `now_secs`.
    pub fn view_at(&self, now_secs: u64, id: &SeriesId, window: Window) -> Option<SeriesView> {
        let series = match id {
            SeriesId::Total => return Some(self.inner.total.view(now_secs, window)),
            SeriesId::Route(name) => self.inner.routes.get(name)?,
            SeriesId::Upstream(name) => self.inner.upstreams.get(name)?,
        };
        Some(series.view(now_secs, window))
    }

    /// Names of the routes with a series, sorted.
    pub fn routes(&self) -> Vec<String> {
        self.inner.routes.names()
    }

    /// Names of the upstreams with a series, sorted.
    pub fn upstreams(&self) -> Vec<String> {
        self.inner.upstreams.names()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(route: &str, status: u16, ms: u64) -> Sample<'_> {
        Sample {
            route: Some(route),
            upstream: Some("up"),
            status,
            elapsed: Duration::from_millis(ms),
            cache: None,
        }
    }

    #[test]
    fn counts_land_in_their_minute_and_hour() {
        let h = History::new();
        let t0 = 1_700_000_000 - 1_700_000_000 % 3600;
        h.record_at(t0 + 5, sample("a", 200, 3));
        h.record_at(t0 + 65, sample("a", 503, 3));
        h.record_at(t0 + 70, sample("b", 404, 3));
        let v = h.view_at(t0 + 70, &SeriesId::Total, Window::Hour).unwrap();
        assert_eq!(v.points.len(), MINUTES);
        let last = &v.points[MINUTES - 1];
        assert_eq!(
            (last.t, last.requests, last.errors, last.client_errors),
            (t0 + 60, 2, 1, 1)
        );
        assert_eq!(v.points[MINUTES - 2].requests, 1);
        let day = h.view_at(t0 + 70, &SeriesId::Total, Window::Day).unwrap();
        assert_eq!(day.points[HOURS - 1].requests, 3);
        let a = h
            .view_at(t0 + 70, &SeriesId::Route("a".into()), Window::Hour)
            .unwrap();
        assert_eq!(a.points.iter().map(|p| p.requests).sum::<u64>(), 2);
        assert!(h
            .view_at(t0, &SeriesId::Route("zzz".into()), Window::Hour)
            .is_none());
        assert_eq!(h.routes(), vec!["a", "b"]);
    }

    #[test]
    fn a_cache_counts_in_the_series_its_names_have() {
        let h = History::new();
        let t0 = 1_700_000_000 - 1_700_000_000 % 3600;
        let cache = SeriesCache::default();
        let requests = |id: SeriesId| {
            h.view_at(t0 + 10, &id, Window::Hour)
                .map(|v| v.points.iter().map(|p| p.requests).sum::<u64>())
        };
        // Answered without going upstream: no upstream series yet.
        h.record_cached_at(
            t0,
            &cache,
            Sample {
                upstream: None,
                ..sample("a", 200, 1)
            },
        );
        assert_eq!(h.upstreams(), Vec::<String>::new());
        h.record_cached_at(t0 + 1, &cache, sample("a", 200, 1));
        h.record_cached_at(t0 + 2, &cache, sample("a", 503, 1));
        // By name, into the same series.
        h.record_at(t0 + 3, sample("a", 200, 1));
        assert_eq!(requests(SeriesId::Route("a".into())), Some(4));
        assert_eq!(requests(SeriesId::Upstream("up".into())), Some(3));
        assert_eq!(requests(SeriesId::Total), Some(4));
        assert_eq!(h.routes(), vec!["a"]);
    }

    #[test]
    fn a_bucket_is_recycled_an_hour_later() {
        let h = History::new();
        let t0 = 1_700_000_040;
        h.record_at(t0, sample("a", 200, 1));
        h.record_at(t0 + 3600, sample("a", 200, 1));
        let v = h
            .view_at(t0 + 3600, &SeriesId::Total, Window::Hour)
            .unwrap();
        assert_eq!(v.points.iter().map(|p| p.requests).sum::<u64>(), 1);
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let h = History::new();
        let t = 1_700_000_000;
        for _ in 0..98 {
            h.record_at(t, sample("a", 200, 2));
        }
        h.record_at(t, sample("a", 200, 900));
        h.record_at(t, sample("a", 200, 900));
        let p = h.view_at(t, &SeriesId::Total, Window::Hour).unwrap().points[MINUTES - 1].clone();
        let p50 = p.p50_ms.unwrap();
        let p99 = p.p99_ms.unwrap();
        // Each bucket is √2 wide: the upper edge is within that of the truth.
        assert!((2.0..=2.0 * 1.42).contains(&p50), "p50 {p50}");
        assert!((900.0..=900.0 * 1.42).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn named_series_are_capped_with_the_rest_in_other() {
        let h = History::new();
        let names: Vec<String> = (0..MAX_NAMED_SERIES + 5).map(|i| format!("r{i}")).collect();
        for n in &names {
            h.record_at(1_700_000_000, sample(n, 200, 1));
        }
        assert_eq!(h.routes().len(), MAX_NAMED_SERIES);
        let other = h
            .view_at(1_700_000_000, &SeriesId::Route(OTHER.into()), Window::Hour)
            .unwrap();
        assert_eq!(other.points.iter().map(|p| p.requests).sum::<u64>(), 5);
    }

    #[test]
    fn series_ids_parse_and_refuse_what_they_should() {
        assert_eq!("total".parse::<SeriesId>().unwrap(), SeriesId::Total);
        assert_eq!(
            "route:fx".parse::<SeriesId>().unwrap(),
            SeriesId::Route("fx".into())
        );
        assert!("route:".parse::<SeriesId>().is_err());
        assert!("host:x".parse::<SeriesId>().is_err());
    }
}
