//! Where stored responses live: the narrow [`Storage`] trait and the
//! in-memory [`MemoryStorage`] over moka.
//!
//! moka brings what is hard to get right by hand: a byte-weighted bound and
//! TinyLFU admission, which keeps one-hit wonders (a crawler walking every
//! URL once) from flushing the popular entries. Around it this module keeps
//! the indexes moka does not have: URL → variants (for `Vary` lookups,
//! purge by URL and by prefix, in URL order) and tag → variants (purge by
//! surrogate key). The eviction listener keeps both indexes consistent with
//! what moka drops; every index entry carries the id of the object it
//! describes, so a late notification about a replaced object never removes
//! the index entry of its replacement.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};
use moka::notification::RemovalCause;
use parking_lot::RwLock;

use crate::key::{PrimaryKey, VariantKey};
use crate::policy::Freshness;

/// Fixed per-entry overhead counted in the weight, for the map node, the
/// `Arc`, the index entries and the header map's own allocation.
const ENTRY_OVERHEAD: u64 = 256;

/// One stored response (one variant of one URL).
#[derive(Debug)]
pub struct CachedResponse {
    /// Unique id, so indexes can tell this object from its replacement.
    pub id: u64,
    /// The route that stored it, for per-route metrics.
    pub route: Arc<str>,
    /// The response status.
    pub status: StatusCode,
    /// The stored header fields (hop-by-hop fields removed).
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// Surrogate keys (tags) for purge by tag.
    pub tags: Vec<String>,
    /// Freshness facts.
    pub freshness: Freshness,
    /// Set by a soft purge: the entry is stale from now on but may still be
    /// served by stale-while-revalidate and stale-if-error.
    invalidated: AtomicBool,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl CachedResponse {
    /// A new stored response with a fresh id.
    pub fn new(
        route: Arc<str>,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        tags: Vec<String>,
        freshness: Freshness,
    ) -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            route,
            status,
            headers,
            body,
            tags,
            freshness,
            invalidated: AtomicBool::new(false),
        }
    }

    /// Whether a soft purge marked this entry stale.
    pub fn is_invalidated(&self) -> bool {
        self.invalidated.load(Ordering::Acquire)
    }

    /// Marks the entry stale (soft purge).
    pub fn invalidate(&self) {
        self.invalidated.store(true, Ordering::Release);
    }

    /// Bytes this entry is charged against the memory bound.
    pub fn weight(&self, key: &VariantKey) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        let tags: usize = self.tags.iter().map(|t| t.len() + 24).sum();
        (self.body.len() + headers + tags + key.url.len() + key.extra.len() + key.secondary.len())
            as u64
            + ENTRY_OVERHEAD
    }
}

/// What to purge, after normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeSelector {
    /// Every variant and extra key part of one normalised URL.
    Url(String),
    /// Every URL starting with this normalised prefix.
    Prefix(String),
    /// Every response carrying this tag.
    Tag(String),
}

/// Storage occupancy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct StorageUsage {
    /// Stored variants.
    pub entries: u64,
    /// Bytes charged against the bound.
    pub bytes: u64,
    /// The bound.
    pub max_bytes: u64,
    /// Entries dropped to stay under the bound (or refused admission).
    pub evictions: u64,
    /// The disk tier's figures, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskUsage>,
}

/// Occupancy and health of the disk tier.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
pub struct DiskUsage {
    /// Entry files held or queued to be written.
    pub entries: u64,
    /// Bytes of those files, charged against the bound.
    pub bytes: u64,
    /// The bound (`cache.disk.max_bytes`).
    pub max_bytes: u64,
    /// Entry files written.
    pub writes: u64,
    /// Entries read back into memory: lookups memory no longer held (or
    /// never held, after a restart) that the disk answered.
    pub reads: u64,
    /// Writes dropped: the writer's queue was full, or the disk was full.
    pub write_drops: u64,
    /// Entries deleted to stay under the bound.
    pub evictions: u64,
    /// Entries found torn or corrupt (checksum, length or key mismatch),
    /// deleted and never served.
    pub corrupt: u64,
    /// Whether writes are paused after a write failed (a full disk); the
    /// cache runs from memory until they resume.
    pub degraded: bool,
}

/// Storage of responses, keyed by variant (pingora-cache style).
///
/// Every method is synchronous and non-blocking: implementations over the
/// network would put a local tier in front. Purges are expressed as data
/// ([`PurgeSelector`]) so they can be fanned out to other nodes.
pub trait Storage: Send + Sync + 'static {
    /// The `Vary` header names of what is stored under `primary`, or `None`
    /// when nothing is stored for it.
    fn vary(&self, primary: &PrimaryKey) -> Option<Vec<HeaderName>>;

    /// The stored variant, if any.
    fn get(&self, key: &VariantKey) -> Option<Arc<CachedResponse>>;

    /// Stores (or replaces) a variant. `vary` is the response's `Vary`
    /// names; if they differ from those stored for the primary key, the
    /// older variants are dropped (they were selected by other headers).
    fn put(&self, key: VariantKey, vary: Vec<HeaderName>, object: Arc<CachedResponse>);

    /// Removes one variant, e.g. when the origin replaced it with a response
    /// that may not be stored.
    fn remove(&self, key: &VariantKey);

    /// Removes every variant selected by `selector` (`soft == false`) or
    /// marks them stale (`soft == true`); returns how many were affected.
    fn purge(&self, selector: &PurgeSelector, soft: bool) -> usize;

    /// Occupancy figures (may run pending maintenance to be exact).
    fn usage(&self) -> StorageUsage;

    /// Bytes currently held in memory, cheaply and without maintenance.
    fn bytes(&self) -> u64;

    /// Marks `object`, stored under `key`, stale in every tier (a HEAD
    /// response showed it changed). The default marks the object itself.
    fn mark_stale(&self, key: &VariantKey, object: &CachedResponse) {
        let _ = key;
        object.invalidate();
    }

    /// Blocks until the writes queued so far have reached a slower tier
    /// (the disk tier). Never called on the request path; the default has
    /// nothing to wait for.
    fn flush(&self) {}
}

// === impl MemoryStorage ===

#[derive(Default)]
struct PrimaryEntry {
    vary: Vec<HeaderName>,
    /// Oldest first, so the variant bound drops the oldest.
    variants: VecDeque<(Arc<str>, u64)>,
}

#[derive(Default)]
struct Index {
    /// url → extra → entry. A BTreeMap so prefix purges are range scans.
    urls: BTreeMap<Arc<str>, HashMap<Arc<str>, PrimaryEntry>>,
    /// tag → variant → object id.
    tags: HashMap<String, HashMap<VariantKey, u64>>,
}

impl Index {
    /// Removes `key` if the index still describes object `id`.
    fn remove(&mut self, key: &VariantKey, id: u64, tags: &[String]) {
        if let Some(extras) = self.urls.get_mut(&key.url) {
            if let Some(entry) = extras.get_mut(&key.extra) {
                entry
                    .variants
                    .retain(|(sec, vid)| !(*vid == id && *sec == key.secondary));
                if entry.variants.is_empty() {
                    extras.remove(&key.extra);
                }
            }
            if extras.is_empty() {
                self.urls.remove(&key.url);
            }
        }
        for tag in tags {
            if let Some(keys) = self.tags.get_mut(tag) {
                if keys.get(key) == Some(&id) {
                    keys.remove(key);
                }
                if keys.is_empty() {
                    self.tags.remove(tag);
                }
            }
        }
    }

    fn variants_of(
        &self,
        url: &Arc<str>,
        extras: &HashMap<Arc<str>, PrimaryEntry>,
    ) -> Vec<VariantKey> {
        extras
            .iter()
            .flat_map(|(extra, e)| {
                e.variants.iter().map(|(sec, _)| VariantKey {
                    url: url.clone(),
                    extra: extra.clone(),
                    secondary: sec.clone(),
                })
            })
            .collect()
    }
}

/// Called with the route of each entry evicted to respect the bound.
pub type EvictionHook = Arc<dyn Fn(&CachedResponse) + Send + Sync>;

/// In-memory storage: moka bounded by bytes with TinyLFU admission.
pub struct MemoryStorage {
    cache: moka::sync::Cache<VariantKey, Arc<CachedResponse>>,
    index: Arc<RwLock<Index>>,
    resident: Arc<AtomicU64>,
    evictions: Arc<AtomicU64>,
    max_bytes: u64,
    max_variants: usize,
}

impl MemoryStorage {
    /// Storage bounded at `max_bytes`, keeping at most `max_variants` per
    /// primary key. `on_evict` runs for each entry dropped by the bound.
    pub fn new(max_bytes: u64, max_variants: usize, on_evict: Option<EvictionHook>) -> Self {
        let index: Arc<RwLock<Index>> = Arc::default();
        let resident = Arc::new(AtomicU64::new(0));
        let evictions = Arc::new(AtomicU64::new(0));
        let listener = {
            let index = index.clone();
            let resident = resident.clone();
            let evictions = evictions.clone();
            move |key: Arc<VariantKey>, value: Arc<CachedResponse>, cause: RemovalCause| {
                resident.fetch_sub(value.weight(&key), Ordering::AcqRel);
                if cause == RemovalCause::Size {
                    evictions.fetch_add(1, Ordering::Relaxed);
                    if let Some(hook) = &on_evict {
                        hook(&value);
                    }
                }
                index.write().remove(&key, value.id, &value.tags);
            }
        };
        let cache = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &VariantKey, v: &Arc<CachedResponse>| {
                u32::try_from(v.weight(k)).unwrap_or(u32::MAX)
            })
            .eviction_listener(listener)
            .build();
        Self {
            cache,
            index,
            resident,
            evictions,
            max_bytes,
            max_variants: max_variants.max(1),
        }
    }

    /// Runs moka's pending maintenance (admission, eviction, listeners).
    pub fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }

    /// Bytes currently held by stored objects, counted at insert and at
    /// removal; unlike moka's `weighted_size` it includes entries whose
    /// admission is still pending.
    pub fn resident_bytes(&self) -> u64 {
        self.resident.load(Ordering::Acquire)
    }
}

impl Storage for MemoryStorage {
    fn vary(&self, primary: &PrimaryKey) -> Option<Vec<HeaderName>> {
        let index = self.index.read();
        index
            .urls
            .get(&primary.url)
            .and_then(|extras| extras.get(&primary.extra))
            .map(|e| e.vary.clone())
    }

    fn get(&self, key: &VariantKey) -> Option<Arc<CachedResponse>> {
        self.cache.get(key)
    }

    fn put(&self, key: VariantKey, vary: Vec<HeaderName>, object: Arc<CachedResponse>) {
        let mut drop_keys = Vec::new();
        {
            let mut index = self.index.write();
            let extras = index.urls.entry(key.url.clone()).or_default();
            let entry = extras.entry(key.extra.clone()).or_default();
            if entry.vary != vary {
                for (sec, _) in entry.variants.drain(..) {
                    if sec != key.secondary {
                        drop_keys.push(VariantKey {
                            secondary: sec,
                            ..key.clone()
                        });
                    }
                }
                entry.vary = vary;
            }
            entry.variants.retain(|(sec, _)| *sec != key.secondary);
            entry.variants.push_back((key.secondary.clone(), object.id));
            while entry.variants.len() > self.max_variants {
                if let Some((sec, _)) = entry.variants.pop_front() {
                    drop_keys.push(VariantKey {
                        secondary: sec,
                        ..key.clone()
                    });
                }
            }
            for tag in &object.tags {
                index
                    .tags
                    .entry(tag.clone())
                    .or_default()
                    .insert(key.clone(), object.id);
            }
        }
        // moka calls the listener on this thread; the index lock is released.
        self.resident
            .fetch_add(object.weight(&key), Ordering::AcqRel);
        self.cache.insert(key, object);
        for k in drop_keys {
            self.cache.invalidate(&k);
        }
        if self.resident_bytes() > self.max_bytes {
            // Admission and eviction are batched by moka; run them now so
            // the bound holds at every insert rather than eventually.
            self.cache.run_pending_tasks();
        }
    }

    fn remove(&self, key: &VariantKey) {
        if let Some(obj) = self.cache.remove(key) {
            self.index.write().remove(key, obj.id, &obj.tags);
        }
    }

    fn purge(&self, selector: &PurgeSelector, soft: bool) -> usize {
        let keys: Vec<VariantKey> = {
            let index = self.index.read();
            match selector {
                PurgeSelector::Url(url) => index
                    .urls
                    .get_key_value(url.as_str())
                    .map(|(u, extras)| index.variants_of(u, extras))
                    .unwrap_or_default(),
                PurgeSelector::Prefix(prefix) => index
                    .urls
                    .range::<str, _>((
                        std::ops::Bound::Included(prefix.as_str()),
                        std::ops::Bound::Unbounded,
                    ))
                    .take_while(|(u, _)| u.starts_with(prefix.as_str()))
                    .flat_map(|(u, extras)| index.variants_of(u, extras))
                    .collect(),
                PurgeSelector::Tag(tag) => index
                    .tags
                    .get(tag)
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default(),
            }
        };
        let mut n = 0;
        for key in keys {
            if soft {
                if let Some(obj) = self.cache.get(&key) {
                    obj.invalidate();
                    n += 1;
                }
            } else if let Some(obj) = self.cache.remove(&key) {
                // The listener also cleans the index; doing it here makes
                // the purge visible before this call returns.
                self.index.write().remove(&key, obj.id, &obj.tags);
                n += 1;
            }
        }
        n
    }

    fn bytes(&self) -> u64 {
        self.resident_bytes()
    }

    fn usage(&self) -> StorageUsage {
        // Entry counts are only exact after moka's batched maintenance.
        self.cache.run_pending_tasks();
        StorageUsage {
            entries: self.cache.entry_count(),
            bytes: self.resident_bytes(),
            max_bytes: self.max_bytes,
            evictions: self.evictions.load(Ordering::Relaxed),
            disk: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn obj(body: usize, tags: &[&str]) -> Arc<CachedResponse> {
        let t = DateTime::from_timestamp(0, 0).unwrap();
        Arc::new(CachedResponse::new(
            "r".into(),
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from(vec![0u8; body]),
            tags.iter().map(|s| s.to_string()).collect(),
            Freshness {
                request_time: t,
                response_time: t,
                date: None,
                age_value: 0,
                lifetime: 60,
                stale_while_revalidate: 0,
                stale_if_error: 0,
                forbids_stale: false,
                no_cache: false,
            },
        ))
    }

    fn key(url: &str, sec: &str) -> VariantKey {
        VariantKey {
            url: url.into(),
            extra: "".into(),
            secondary: sec.into(),
        }
    }

    #[test]
    fn variant_bound_drops_oldest_and_vary_change_drops_all() {
        let s = MemoryStorage::new(1 << 20, 2, None);
        let v = vec![HeaderName::from_static("accept")];
        s.put(key("u", "a"), v.clone(), obj(1, &[]));
        s.put(key("u", "b"), v.clone(), obj(1, &[]));
        s.put(key("u", "c"), v.clone(), obj(1, &[]));
        assert!(s.get(&key("u", "a")).is_none());
        assert!(s.get(&key("u", "b")).is_some());
        assert!(s.get(&key("u", "c")).is_some());
        s.put(key("u", "x"), vec![], obj(1, &[]));
        assert!(s.get(&key("u", "b")).is_none());
        assert!(s.get(&key("u", "c")).is_none());
        let primary = PrimaryKey {
            url: "u".into(),
            extra: "".into(),
        };
        assert_eq!(s.vary(&primary), Some(vec![]));
    }

    #[test]
    fn purge_selectors_and_index_cleanup() {
        let s = MemoryStorage::new(1 << 20, 4, None);
        s.put(key("https://h/a/1", ""), vec![], obj(1, &["t1"]));
        s.put(key("https://h/a/2", ""), vec![], obj(1, &["t1", "t2"]));
        s.put(key("https://h/b", ""), vec![], obj(1, &["t2"]));
        assert_eq!(s.purge(&PurgeSelector::Tag("t1".into()), true), 2);
        assert!(s.get(&key("https://h/a/1", "")).unwrap().is_invalidated());
        assert_eq!(
            s.purge(&PurgeSelector::Prefix("https://h/a/".into()), false),
            2
        );
        assert!(s.get(&key("https://h/a/2", "")).is_none());
        // The tag index no longer points at purged objects.
        assert_eq!(s.purge(&PurgeSelector::Tag("t2".into()), false), 1);
        assert_eq!(s.purge(&PurgeSelector::Url("https://h/b".into()), false), 0);
        s.run_pending_tasks();
        assert_eq!(s.usage().entries, 0);
        assert_eq!(s.resident_bytes(), 0);
        assert!(s.index.read().urls.is_empty());
        assert!(s.index.read().tags.is_empty());
    }

    #[test]
    fn evictions_keep_indexes_consistent() {
        let s = MemoryStorage::new(64 * 1024, 4, None);
        for i in 0..200 {
            s.put(
                key(&format!("https://h/{i}"), ""),
                vec![],
                obj(4096, &["all"]),
            );
            assert!(s.resident_bytes() <= 64 * 1024, "over bound at {i}");
        }
        s.run_pending_tasks();
        let index = s.index.read();
        let live = index.urls.len() as u64;
        assert_eq!(live, s.cache.entry_count());
        assert_eq!(index.tags["all"].len() as u64, live);
        assert!(s.usage().evictions > 0);
    }
}
