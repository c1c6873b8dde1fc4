//! What the disk tier holds, in memory: one small record per entry file
//! (never its body), ordered by key for `Vary` lookups and URL and prefix
//! purges, and by age for eviction under the byte bound.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::HeaderName;

use crate::key::{PrimaryKey, VariantKey};
use crate::storage::PurgeSelector;

/// One entry file.
#[derive(Debug, Clone)]
pub(crate) struct DiskEntry {
    /// The file's sequence number (its name); higher is newer.
    pub(crate) seq: u64,
    /// The file's length, charged against the bound.
    pub(crate) bytes: u64,
    /// The response's `Vary` names.
    pub(crate) vary: Vec<HeaderName>,
    /// Surrogate keys, for purge by tag.
    pub(crate) tags: Vec<String>,
    /// Marked stale by a soft purge.
    pub(crate) stale: bool,
    /// Queued but not yet renamed into place: not readable yet.
    pub(crate) pending: bool,
}

/// Every entry file, by key and by age.
#[derive(Debug, Default)]
pub(crate) struct DiskIndex {
    entries: BTreeMap<VariantKey, DiskEntry>,
    by_seq: BTreeMap<u64, VariantKey>,
    bytes: u64,
}

impl DiskIndex {
    /// Bytes of every entry file.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Number of entry files.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry stored under `key`.
    pub(crate) fn get(&self, key: &VariantKey) -> Option<&DiskEntry> {
        self.entries.get(key)
    }

    /// Adds `entry` under `key`; returns the entry it replaces.
    pub(crate) fn insert(&mut self, key: VariantKey, entry: DiskEntry) -> Option<DiskEntry> {
        let old = self.remove(&key);
        self.bytes += entry.bytes;
        self.by_seq.insert(entry.seq, key.clone());
        self.entries.insert(key, entry);
        old
    }

    /// Removes the entry under `key`.
    pub(crate) fn remove(&mut self, key: &VariantKey) -> Option<DiskEntry> {
        let old = self.entries.remove(key)?;
        self.by_seq.remove(&old.seq);
        self.bytes -= old.bytes;
        Some(old)
    }

    /// Removes the entry under `key` only if it is still file `seq`, so a
    /// late report about a replaced file leaves its replacement alone.
    pub(crate) fn remove_if_seq(&mut self, key: &VariantKey, seq: u64) -> bool {
        if self.entries.get(key).is_some_and(|e| e.seq == seq) {
            self.remove(key);
            true
        } else {
            false
        }
    }

    /// Marks file `seq` of `key` as written (readable).
    pub(crate) fn mark_written(&mut self, key: &VariantKey, seq: u64) {
        if let Some(entry) = self.entries.get_mut(key).filter(|e| e.seq == seq) {
            entry.pending = false;
        }
    }

    /// Removes and returns the oldest entry.
    pub(crate) fn pop_oldest(&mut self) -> Option<DiskEntry> {
        let key = self.by_seq.values().next()?.clone();
        self.remove(&key)
    }

    /// The `Vary` names stored for `primary` (those of its newest variant).
    pub(crate) fn vary(&self, primary: &PrimaryKey) -> Option<Vec<HeaderName>> {
        self.variants_of(primary)
            .into_iter()
            .filter_map(|k| self.entries.get(&k))
            .max_by_key(|e| e.seq)
            .map(|e| e.vary.clone())
    }

    /// Every stored variant of `primary`, oldest first.
    pub(crate) fn variants_of(&self, primary: &PrimaryKey) -> Vec<VariantKey> {
        let mut keys: Vec<(u64, VariantKey)> = self
            .entries
            .range(primary.variant("")..)
            .take_while(|(k, _)| k.url == primary.url && k.extra == primary.extra)
            .map(|(k, e)| (e.seq, k.clone()))
            .collect();
        keys.sort_unstable_by_key(|(seq, _)| *seq);
        keys.into_iter().map(|(_, k)| k).collect()
    }

    /// Every key `selector` selects.
    pub(crate) fn select(&self, selector: &PurgeSelector) -> Vec<VariantKey> {
        let from = |url: &str| VariantKey {
            url: Arc::from(url),
            extra: Arc::from(""),
            secondary: Arc::from(""),
        };
        match selector {
            PurgeSelector::Url(url) => self
                .entries
                .range(from(url.as_str())..)
                .take_while(|(k, _)| *k.url == **url)
                .map(|(k, _)| k.clone())
                .collect(),
            PurgeSelector::Prefix(prefix) => self
                .entries
                .range(from(prefix.as_str())..)
                .take_while(|(k, _)| k.url.starts_with(prefix.as_str()))
                .map(|(k, _)| k.clone())
                .collect(),
            PurgeSelector::Tag(tag) => self
                .entries
                .iter()
                .filter(|(_, e)| e.tags.iter().any(|t| t == tag))
                .map(|(k, _)| k.clone())
                .collect(),
        }
    }

    /// Marks the entry under `key` stale; returns its file.
    pub(crate) fn mark_stale(&mut self, key: &VariantKey) -> Option<u64> {
        let entry = self.entries.get_mut(key)?;
        entry.stale = true;
        Some(entry.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(url: &str, extra: &str, sec: &str) -> VariantKey {
        VariantKey {
            url: url.into(),
            extra: extra.into(),
            secondary: sec.into(),
        }
    }

    fn entry(seq: u64, tags: &[&str]) -> DiskEntry {
        DiskEntry {
            seq,
            bytes: 100,
            vary: vec![],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            stale: false,
            pending: false,
        }
    }

    #[test]
    fn selectors_match_urls_prefixes_and_tags() {
        let mut index = DiskIndex::default();
        index.insert(key("https://h/a", "", ""), entry(1, &["x"]));
        index.insert(key("https://h/a", "t", "v"), entry(2, &[]));
        index.insert(key("https://h/ab", "", ""), entry(3, &["x"]));
        index.insert(key("https://h/b", "", ""), entry(4, &[]));
        let url = index.select(&PurgeSelector::Url("https://h/a".into()));
        assert_eq!(url.len(), 2);
        let prefix = index.select(&PurgeSelector::Prefix("https://h/a".into()));
        assert_eq!(prefix.len(), 3);
        let tag = index.select(&PurgeSelector::Tag("x".into()));
        assert_eq!(tag.len(), 2);
        assert_eq!(index.bytes(), 400);
    }

    #[test]
    fn replacing_and_late_reports_keep_bytes_exact() {
        let mut index = DiskIndex::default();
        let k = key("https://h/a", "", "");
        index.insert(k.clone(), entry(1, &[]));
        assert!(index.insert(k.clone(), entry(2, &[])).is_some());
        assert_eq!(index.bytes(), 100);
        assert!(!index.remove_if_seq(&k, 1), "a report about the old file");
        assert!(index.get(&k).is_some());
        assert_eq!(index.pop_oldest().map(|e| e.seq), Some(2));
        assert_eq!(index.bytes(), 0);
        assert_eq!(index.len(), 0);
    }
}
