//! [`TieredStorage`]: the memory tier in front of the disk tier.
//!
//! Every stored response goes to both (the disk write queued, never
//! awaited). A lookup tries memory first; a memory miss that the disk
//! holds is read, checked, and put back into memory, where the memory
//! bound and TinyLFU admission apply to it like to any other entry.
//! Removals and purges (URL, prefix, tag; soft and hard) reach both tiers.

use std::sync::Arc;

use http::HeaderName;

use crate::disk::DiskStore;
use crate::key::{PrimaryKey, VariantKey};
use crate::storage::{CachedResponse, MemoryStorage, PurgeSelector, Storage, StorageUsage};

/// Memory in front of disk.
pub struct TieredStorage {
    memory: MemoryStorage,
    disk: DiskStore,
}

impl TieredStorage {
    /// The two tiers together.
    pub fn new(memory: MemoryStorage, disk: DiskStore) -> Self {
        Self { memory, disk }
    }

    /// The disk tier.
    pub fn disk(&self) -> &DiskStore {
        &self.disk
    }
}

impl Storage for TieredStorage {
    fn vary(&self, primary: &PrimaryKey) -> Option<Vec<HeaderName>> {
        self.memory
            .vary(primary)
            .or_else(|| self.disk.vary(primary))
    }

    fn get(&self, key: &VariantKey) -> Option<Arc<CachedResponse>> {
        if let Some(object) = self.memory.get(key) {
            return Some(object);
        }
        let (vary, object) = self.disk.get(key)?;
        self.memory.put(key.clone(), vary, object.clone());
        Some(object)
    }

    fn put(&self, key: VariantKey, vary: Vec<HeaderName>, object: Arc<CachedResponse>) {
        self.disk.put(key.clone(), vary.clone(), &object);
        self.memory.put(key, vary, object);
    }

    fn remove(&self, key: &VariantKey) {
        self.memory.remove(key);
        self.disk.remove(key);
    }

    /// Counts variants in either tier once: nearly every variant in memory
    /// is on disk too, so the larger count of the two is reported.
    fn purge(&self, selector: &PurgeSelector, soft: bool) -> usize {
        let in_memory = self.memory.purge(selector, soft);
        let on_disk = self.disk.purge(selector, soft);
        in_memory.max(on_disk)
    }

    fn usage(&self) -> StorageUsage {
        StorageUsage {
            disk: Some(self.disk.usage()),
            ..self.memory.usage()
        }
    }

    fn bytes(&self) -> u64 {
        self.memory.bytes()
    }

    fn mark_stale(&self, key: &VariantKey, object: &CachedResponse) {
        object.invalidate();
        self.disk.mark_stale(key);
    }

    fn flush(&self) {
        self.disk.flush();
    }
}
