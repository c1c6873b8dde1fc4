//! The in-memory keyring: what the hot path verifies against.
//!
//! A [`Keyring`] holds an immutable [`Snapshot`] behind an `ArcSwap`, so
//! readers never lock and never do I/O. Changes (from the admin API or the
//! change feed) build a patched copy and swap it in whole; a periodic full
//! reload from the store replaces it outright.
//!
//! Lookup is by the first 8 bytes of the SHA-256 of the presented key; the
//! candidate's full 32-byte hash is then compared in constant time. An
//! attacker cannot steer which bucket a guess lands in without a SHA-256
//! preimage, and the final comparison takes the same time whether or not
//! the key exists, so timing reveals nothing about which keys exist.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};

use crate::identity::{Identity, IdentityHeaders};
use crate::key::{ApiKey, ConsumerId, KeyHash, KeyId};
use crate::model::{Consumer, KeyRecord, KeyStatus};

/// A key and its owner, as held in memory.
#[derive(Debug)]
pub struct KeyEntry {
    /// The key's metadata.
    pub record: KeyRecord,
    /// Its consumer.
    pub consumer: Arc<Consumer>,
    /// The identity headers a request with this key forwards, built once
    /// here rather than parsed on every request.
    pub(crate) headers: IdentityHeaders,
    /// The identity a request with this key gets, likewise built once.
    pub(crate) identity: Arc<Identity>,
    /// What [`KeyRecord::status`] needs, as plain values: the hot path
    /// compares microseconds instead of calendar dates.
    revoked: bool,
    retiring: bool,
    /// Effective expiry in microseconds since the epoch (`i64::MAX`: none).
    expires_us: i64,
    /// The last use noted for the last-used update, as `second * 2 +
    /// retiring`: a key in steady use is noted once a second, so the
    /// request path only reads this (see `KeyService::note_use`).
    pub(crate) noted: AtomicI64,
}

impl KeyEntry {
    pub(crate) fn new(record: KeyRecord, consumer: Arc<Consumer>) -> Self {
        KeyEntry {
            headers: IdentityHeaders::for_key(&record, &consumer),
            identity: Arc::new(Identity::for_key(&record, &consumer)),
            revoked: record.revoked_at.is_some(),
            retiring: record.successor.is_some(),
            expires_us: record
                .effective_expiry()
                .map_or(i64::MAX, |e| e.timestamp_micros()),
            noted: AtomicI64::new(i64::MIN),
            record,
            consumer,
        }
    }

    /// [`KeyRecord::status`] at `now_us` (microseconds since the epoch).
    pub fn status_at(&self, now_us: i64) -> KeyStatus {
        if self.revoked {
            KeyStatus::Revoked
        } else if self.expires_us <= now_us {
            KeyStatus::Expired
        } else if self.retiring {
            KeyStatus::Retiring
        } else {
            KeyStatus::Active
        }
    }
}

/// The keyring's index is the first 8 bytes of a SHA-256, already uniform
/// and not steerable by a client (see the module docs), so it is used as
/// its own hash instead of being hashed again.
#[derive(Default)]
struct IndexHasher(u64);

impl Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type ByIndex = HashMap<u64, Vec<Arc<KeyEntry>>, BuildHasherDefault<IndexHasher>>;

/// Why a well-formed key did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyFailure {
    /// No such key.
    Unknown,
    /// Expired, or its grace period after rotation is over.
    Expired,
    /// Revoked.
    Revoked,
}

impl VerifyFailure {
    /// Stable identifier.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Unknown => "unknown_key",
            Self::Expired => "expired_key",
            Self::Revoked => "revoked_key",
        }
    }
}

/// A successful verification.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The key and consumer.
    pub entry: Arc<KeyEntry>,
    /// `Active` or `Retiring`.
    pub status: KeyStatus,
}

/// One immutable generation of the keyring.
#[derive(Debug, Default)]
pub struct Snapshot {
    by_index: ByIndex,
    by_id: HashMap<KeyId, Arc<KeyEntry>>,
    consumers: HashMap<ConsumerId, Arc<Consumer>>,
    /// Consumers by their unique name: a client certificate names one.
    consumers_by_name: HashMap<String, Arc<Consumer>>,
}

impl Snapshot {
    /// Builds a snapshot from full lists. Keys whose consumer is missing are
    /// skipped (they cannot authenticate anyone).
    pub fn build(consumers: Vec<Consumer>, keys: Vec<KeyRecord>) -> Self {
        let mut s = Snapshot::default();
        for c in consumers {
            s.insert_consumer(Arc::new(c));
        }
        for k in keys {
            s.insert_key(k);
        }
        s
    }

    fn insert_consumer(&mut self, consumer: Arc<Consumer>) {
        if let Some(old) = self.consumers.insert(consumer.id.clone(), consumer.clone()) {
            if old.name != consumer.name {
                self.consumers_by_name.remove(&old.name);
            }
        }
        self.consumers_by_name
            .insert(consumer.name.clone(), consumer);
    }

    fn insert_key(&mut self, record: KeyRecord) {
        let Some(consumer) = self.consumers.get(&record.consumer_id).cloned() else {
            tracing::warn!(key_id = %record.id, consumer_id = %record.consumer_id, "key without consumer skipped");
            return;
        };
        self.remove_key(&record.id);
        let entry = Arc::new(KeyEntry::new(record, consumer));
        self.by_index
            .entry(entry.record.hash.index())
            .or_default()
            .push(entry.clone());
        self.by_id.insert(entry.record.id.clone(), entry);
    }

    fn remove_key(&mut self, id: &KeyId) {
        if let Some(old) = self.by_id.remove(id) {
            let idx = old.record.hash.index();
            if let Some(v) = self.by_index.get_mut(&idx) {
                v.retain(|e| e.record.id != *id);
                if v.is_empty() {
                    self.by_index.remove(&idx);
                }
            }
        }
    }

    fn clone_shallow(&self) -> Self {
        Snapshot {
            by_index: self.by_index.clone(),
            by_id: self.by_id.clone(),
            consumers: self.consumers.clone(),
            consumers_by_name: self.consumers_by_name.clone(),
        }
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no keys are held.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// The lock-free in-memory keyring.
#[derive(Debug, Default)]
pub struct Keyring {
    snap: ArcSwap<Snapshot>,
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the whole snapshot.
    pub fn replace(&self, snapshot: Snapshot) {
        self.snap.store(Arc::new(snapshot));
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snap.load_full()
    }

    /// Inserts or replaces one key.
    pub fn upsert_key(&self, record: KeyRecord) {
        self.snap.rcu(|cur| {
            let mut next = cur.clone_shallow();
            next.insert_key(record.clone());
            next
        });
    }

    /// Inserts or replaces one consumer (and re-links its keys).
    pub fn upsert_consumer(&self, consumer: Consumer) {
        self.snap.rcu(|cur| {
            let mut next = cur.clone_shallow();
            let c = Arc::new(consumer.clone());
            next.insert_consumer(c.clone());
            let keys: Vec<KeyRecord> = next
                .by_id
                .values()
                .filter(|e| e.record.consumer_id == c.id)
                .map(|e| e.record.clone())
                .collect();
            for k in keys {
                next.insert_key(k);
            }
            next
        });
    }

    /// A consumer by id.
    pub fn consumer(&self, id: &ConsumerId) -> Option<Arc<Consumer>> {
        self.snap.load().consumers.get(id).cloned()
    }

    /// A consumer by its name.
    pub fn consumer_named(&self, name: &str) -> Option<Arc<Consumer>> {
        self.snap.load().consumers_by_name.get(name).cloned()
    }

    /// A key by id.
    pub fn key(&self, id: &KeyId) -> Option<Arc<KeyEntry>> {
        self.snap.load().by_id.get(id).cloned()
    }

    /// Verifies a parsed key at `now`. No I/O, no locks.
    pub fn verify(&self, key: &ApiKey, now: DateTime<Utc>) -> Result<Verified, VerifyFailure> {
        self.verify_hash(&key.hash(), now)
    }

    /// Verifies a key hash at `now`.
    pub fn verify_hash(
        &self,
        hash: &KeyHash,
        now: DateTime<Utc>,
    ) -> Result<Verified, VerifyFailure> {
        self.verify_hash_at(hash, now.timestamp_micros())
    }

    /// [`Self::verify_hash`] at `now_us`, microseconds since the epoch.
    pub fn verify_hash_at(&self, hash: &KeyHash, now_us: i64) -> Result<Verified, VerifyFailure> {
        self.lend_hash_at(hash, now_us, |entry, status| Verified {
            entry: entry.clone(),
            status,
        })
    }

    /// [`Self::verify_hash_at`] lending the entry to `f` instead of
    /// returning a counted reference to it (the request path's variant:
    /// one reference-count update and its release fewer per request).
    /// The id of the key with this hash, whatever its state (for counting
    /// refusals of known keys; not on the success path).
    pub(crate) fn key_id_of(&self, hash: &KeyHash) -> Option<crate::key::KeyId> {
        let snap = self.snap.load();
        snap.by_index
            .get(&hash.index())?
            .iter()
            .find(|c| c.record.hash.ct_eq(hash))
            .map(|c| c.record.id.clone())
    }

    pub(crate) fn lend_hash_at<R>(
        &self,
        hash: &KeyHash,
        now_us: i64,
        f: impl FnOnce(&Arc<KeyEntry>, KeyStatus) -> R,
    ) -> Result<R, VerifyFailure> {
        let snap = self.snap.load();
        let mut found: Option<&Arc<KeyEntry>> = None;
        if let Some(candidates) = snap.by_index.get(&hash.index()) {
            for c in candidates {
                // Compare every candidate so the time does not depend on
                // where a match sits in the bucket.
                if c.record.hash.ct_eq(hash) {
                    found = Some(c);
                }
            }
        } else {
            // Spend the same comparison on a miss as on a hit.
            let _ = KeyHash([0; 32]).ct_eq(hash);
        }
        let entry = found.ok_or(VerifyFailure::Unknown)?;
        match entry.status_at(now_us) {
            KeyStatus::Revoked => Err(VerifyFailure::Revoked),
            KeyStatus::Expired => Err(VerifyFailure::Expired),
            status => Ok(f(entry, status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::model::tests::record;

    /// The record's status at `at`, checked against the keyring entry's
    /// (which the request path uses) at the same instant and just before.
    fn status(r: &KeyRecord, at: DateTime<Utc>) -> KeyStatus {
        let consumer = Consumer {
            id: r.consumer_id.clone(),
            name: "c".into(),
            plan: None,
            group: None,
            created_at: at,
        };
        let entry = KeyEntry::new(r.clone(), Arc::new(consumer));
        for t in [at, at - Duration::microseconds(1)] {
            assert_eq!(entry.status_at(t.timestamp_micros()), r.status(t), "at {t}");
        }
        r.status(at)
    }

    #[test]
    fn status_follows_revocation_expiry_and_grace() {
        let now = Utc::now();
        let mut r = record(now);
        assert_eq!(status(&r, now), KeyStatus::Active);
        r.successor = Some(KeyId::generate());
        r.grace_until = Some(now + Duration::hours(1));
        assert_eq!(status(&r, now), KeyStatus::Retiring);
        assert_eq!(status(&r, now + Duration::hours(1)), KeyStatus::Expired);
        r.expires_at = Some(now + Duration::minutes(5));
        assert_eq!(status(&r, now + Duration::minutes(5)), KeyStatus::Expired);
        r.revoked_at = Some(now);
        assert_eq!(status(&r, now), KeyStatus::Revoked);
    }
}
