//! The disk tier: stored responses kept in files too, so a restarted or
//! newly started node serves hits at once.
//!
//! One file per stored variant (`format` describes it and says why), named
//! by a sequence number that only grows, written under a temp name and
//! renamed into place. An in-memory index (`index`) of keys, sizes, tags
//! and `Vary` names answers lookups and purges without touching the disk;
//! it is rebuilt from the files' headers at startup (`load`).
//!
//! The request path never writes: [`DiskStore::put`], purges and removals
//! update the index and queue jobs for one writer thread (`writer`), whose
//! queue of writes is bounded (a full queue drops the write, counted). A
//! failed write (a full disk) pauses writes with a warning, and the cache
//! runs from memory only until they resume. Reads ([`DiskStore::get`]) run
//! on a memory miss and check the whole file before anything is served; a
//! file that fails is deleted and counted, and the request goes to the
//! origin.
//!
//! Module map: `format` (the file layout, encode and check), `index`
//! (what is held), `shared` (state shared with the writer thread), `load`
//! (startup), `writer` (the thread and its queue).

mod format;
mod index;
mod load;
mod shared;
mod writer;

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use http::HeaderName;

pub use format::FormatError;

use crate::config::DiskConfig;
use crate::key::{PrimaryKey, VariantKey};
use crate::storage::{CachedResponse, DiskUsage, PurgeSelector};
use index::DiskEntry;
use shared::Shared;
use writer::{Job, Queue};

/// Why the disk tier could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cache.disk.path: cannot use `{path}`: {source}")]
pub struct DiskOpenError {
    /// The configured directory.
    pub path: PathBuf,
    /// What failed.
    #[source]
    pub source: io::Error,
}

/// The disk tier of one cache: an index in memory, files in a directory.
pub struct DiskStore {
    shared: Arc<Shared>,
    queue: Arc<Queue>,
    next_seq: AtomicU64,
    max_variants: usize,
    writer: Option<JoinHandle<()>>,
}

impl DiskStore {
    /// Opens (creating when missing) the directory in `cfg`, rebuilds the
    /// index from the files in it and starts the writer thread. At most
    /// `max_variants` variants are kept per primary key, as in memory.
    pub fn open(cfg: &DiskConfig, max_variants: usize) -> Result<Self, DiskOpenError> {
        let fail = |source| DiskOpenError {
            path: cfg.path.clone(),
            source,
        };
        fs::create_dir_all(&cfg.path).map_err(fail)?;
        let loaded = load::load(&cfg.path, cfg.max_bytes).map_err(fail)?;
        tracing::info!(
            dir = %cfg.path.display(),
            entries = loaded.index.len(),
            bytes = loaded.index.bytes(),
            corrupt = loaded.corrupt,
            "cache disk tier opened"
        );
        let shared = Arc::new(Shared::new(
            cfg.path.clone(),
            cfg.max_bytes,
            loaded.index,
            loaded.corrupt,
        ));
        let queue = Arc::new(Queue::default());
        let writer = writer::spawn(shared.clone(), queue.clone()).map_err(fail)?;
        Ok(Self {
            shared,
            queue,
            next_seq: AtomicU64::new(loaded.next_seq),
            max_variants: max_variants.max(1),
            writer: Some(writer),
        })
    }

    /// The `Vary` names stored on disk for `primary`.
    pub fn vary(&self, primary: &PrimaryKey) -> Option<Vec<HeaderName>> {
        self.shared.index.lock().vary(primary)
    }

    /// Reads and checks the entry stored under `key`: its `Vary` names and
    /// the response (marked stale if a soft purge reached it). A file that
    /// fails its checks is deleted and counted; `None` then, as for a miss.
    pub fn get(&self, key: &VariantKey) -> Option<(Vec<HeaderName>, Arc<CachedResponse>)> {
        let (seq, stale) = {
            let index = self.shared.index.lock();
            let entry = index.get(key).filter(|e| !e.pending)?;
            (entry.seq, entry.stale)
        };
        let file = match fs::read(self.shared.entry_path(seq)) {
            Ok(file) => Bytes::from(file),
            Err(error) => {
                if error.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(seq, %error, "cache disk tier: cannot read an entry");
                }
                self.shared.forget(key, seq);
                return None;
            }
        };
        let decoded = format::decode(file).and_then(|(meta, body, file_stale)| {
            if meta.key == *key {
                Ok((meta, body, file_stale))
            } else {
                Err(FormatError::Meta("the file holds another key"))
            }
        });
        let (meta, body, file_stale) = match decoded {
            Ok(decoded) => decoded,
            Err(reason) => {
                tracing::warn!(
                    file = %self.shared.entry_path(seq).display(),
                    %reason,
                    "cache disk tier: corrupt entry deleted, not served"
                );
                self.shared.found_corrupt();
                if self.shared.index.lock().remove_if_seq(key, seq) {
                    self.queue.push(Job::Delete { seq });
                }
                return None;
            }
        };
        let object = CachedResponse::new(
            meta.route.into(),
            meta.status,
            meta.headers,
            body,
            meta.tags,
            meta.freshness,
        );
        if stale || file_stale {
            object.invalidate();
        }
        self.shared.read();
        Some((meta.vary, Arc::new(object)))
    }

    /// Queues `object` to be written under `key`, replacing what is stored
    /// for it, dropping variants selected by other `Vary` names and, to
    /// stay under the bound, the oldest entries. Never blocks: when the
    /// writer's queue is full or writes are paused, the write is dropped
    /// (counted) and the entry lives in memory only.
    pub fn put(&self, key: VariantKey, vary: Vec<HeaderName>, object: &CachedResponse) {
        if self.shared.writes_paused() {
            self.shared.dropped_write();
            self.remove(&key);
            return;
        }
        let meta = format::encode_meta(&key, &vary, object);
        let bytes = (format::HEADER_LEN + meta.len() + object.body.len()) as u64;
        let mut index = self.shared.index.lock();
        let mut deletes = Vec::new();
        if let Some(old) = index.remove(&key) {
            deletes.push(old.seq);
        }
        let primary = PrimaryKey {
            url: key.url.clone(),
            extra: key.extra.clone(),
        };
        let variants = index.variants_of(&primary);
        let other_vary = index.vary(&primary).is_some_and(|v| v != vary);
        let over = (variants.len() + 1).saturating_sub(self.max_variants);
        for (i, variant) in variants.iter().enumerate() {
            if other_vary || i < over {
                deletes.extend(index.remove(variant).map(|e| e.seq));
            }
        }
        let fits = bytes <= self.shared.max_bytes;
        while fits && index.bytes() + bytes > self.shared.max_bytes {
            let Some(oldest) = index.pop_oldest() else {
                break;
            };
            deletes.push(oldest.seq);
            self.shared.evicted();
        }
        // Queued under the index lock, so jobs run in the order the index
        // changed.
        for seq in deletes {
            self.queue.push(Job::Delete { seq });
        }
        if !fits {
            return;
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let job = Job::Write {
            seq,
            key: key.clone(),
            meta,
            body: object.body.clone(),
        };
        if self.queue.push_write(job) {
            let entry = DiskEntry {
                seq,
                bytes,
                vary,
                tags: object.tags.clone(),
                stale: object.is_invalidated(),
                pending: true,
            };
            index.insert(key, entry);
        } else {
            self.shared.dropped_write();
        }
    }

    /// Deletes the entry stored under `key`.
    pub fn remove(&self, key: &VariantKey) {
        let mut index = self.shared.index.lock();
        if let Some(old) = index.remove(key) {
            self.queue.push(Job::Delete { seq: old.seq });
        }
    }

    /// Deletes (`soft == false`) or marks stale the entries `selector`
    /// selects; returns how many.
    pub fn purge(&self, selector: &PurgeSelector, soft: bool) -> usize {
        let mut index = self.shared.index.lock();
        let keys = index.select(selector);
        for key in &keys {
            if soft {
                if let Some(seq) = index.mark_stale(key) {
                    self.queue.push(Job::MarkStale { seq });
                }
            } else if let Some(old) = index.remove(key) {
                self.queue.push(Job::Delete { seq: old.seq });
            }
        }
        keys.len()
    }

    /// Marks the entry stored under `key` stale, in the index and in its
    /// file.
    pub fn mark_stale(&self, key: &VariantKey) {
        let mut index = self.shared.index.lock();
        if let Some(seq) = index.mark_stale(key) {
            self.queue.push(Job::MarkStale { seq });
        }
    }

    /// Occupancy and health figures.
    pub fn usage(&self) -> DiskUsage {
        self.shared.usage()
    }

    /// Blocks until every write, mark and delete queued so far is on disk;
    /// for shutdown and tests, never the request path.
    pub fn flush(&self) {
        self.queue.wait_idle();
    }
}

impl Drop for DiskStore {
    /// Finishes the queued jobs, so a clean shutdown keeps what was stored.
    fn drop(&mut self) {
        self.queue.close();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}
