//! The state the request path and the writer thread share: the directory,
//! the index, the counters and whether writes are paused.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::index::DiskIndex;
use crate::key::VariantKey;
use crate::storage::DiskUsage;

/// How long writes stay paused after one failed (a full disk, an I/O
/// error): long enough not to fail on every store, short enough that
/// freed space is used again soon.
pub(crate) const PAUSE_AFTER_WRITE_FAILURE: Duration = Duration::from_secs(30);

/// Suffix of entry files.
pub(crate) const ENTRY_SUFFIX: &str = "entry";
/// Suffix of files being written; left behind only by a crash.
pub(crate) const TEMP_SUFFIX: &str = "tmp";

pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) max_bytes: u64,
    pub(crate) index: Mutex<DiskIndex>,
    paused_until: Mutex<Option<Instant>>,
    degraded: AtomicBool,
    writes: AtomicU64,
    reads: AtomicU64,
    write_drops: AtomicU64,
    evictions: AtomicU64,
    corrupt: AtomicU64,
}

impl Shared {
    pub(crate) fn new(dir: PathBuf, max_bytes: u64, index: DiskIndex, corrupt: u64) -> Self {
        Self {
            dir,
            max_bytes,
            index: Mutex::new(index),
            paused_until: Mutex::new(None),
            degraded: AtomicBool::new(false),
            writes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            write_drops: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            corrupt: AtomicU64::new(corrupt),
        }
    }

    /// The entry file of sequence number `seq`.
    pub(crate) fn entry_path(&self, seq: u64) -> PathBuf {
        entry_path(&self.dir, seq, ENTRY_SUFFIX)
    }

    /// Where file `seq` is written before it is renamed into place.
    pub(crate) fn temp_path(&self, seq: u64) -> PathBuf {
        entry_path(&self.dir, seq, TEMP_SUFFIX)
    }

    /// Whether writes are paused after a failure; resumes them once the
    /// pause is over.
    pub(crate) fn writes_paused(&self) -> bool {
        if !self.degraded.load(Ordering::Acquire) {
            return false;
        }
        let mut until = self.paused_until.lock();
        match *until {
            Some(t) if Instant::now() < t => true,
            _ => {
                *until = None;
                self.degraded.store(false, Ordering::Release);
                tracing::info!(dir = %self.dir.display(), "cache disk tier: writes resumed");
                false
            }
        }
    }

    /// Pauses writes after `error`; warns once per pause.
    pub(crate) fn pause_writes(&self, error: &std::io::Error) {
        *self.paused_until.lock() = Some(Instant::now() + PAUSE_AFTER_WRITE_FAILURE);
        if !self.degraded.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                dir = %self.dir.display(),
                %error,
                pause_secs = PAUSE_AFTER_WRITE_FAILURE.as_secs(),
                "cache disk tier: a write failed (disk full?); serving from memory only until writes resume"
            );
        }
    }

    /// Forgets file `seq` of `key` (it was never written, or is gone).
    pub(crate) fn forget(&self, key: &VariantKey, seq: u64) {
        self.index.lock().remove_if_seq(key, seq);
    }

    pub(crate) fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("gatehouse_cache_disk_reads_total").increment(1);
    }

    pub(crate) fn dropped_write(&self) {
        self.write_drops.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("gatehouse_cache_disk_write_drops_total").increment(1);
    }

    pub(crate) fn evicted(&self) {
        self.evictions.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn found_corrupt(&self) {
        self.corrupt.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("gatehouse_cache_disk_corrupt_total").increment(1);
    }

    pub(crate) fn usage(&self) -> DiskUsage {
        let (entries, bytes) = {
            let index = self.index.lock();
            (index.len() as u64, index.bytes())
        };
        DiskUsage {
            entries,
            bytes,
            max_bytes: self.max_bytes,
            writes: self.writes.load(Ordering::Relaxed),
            reads: self.reads.load(Ordering::Relaxed),
            write_drops: self.write_drops.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            corrupt: self.corrupt.load(Ordering::Relaxed),
            degraded: self.degraded.load(Ordering::Relaxed),
        }
    }
}

/// `dir/<seq as 16 hex digits>.<suffix>`.
pub(crate) fn entry_path(dir: &Path, seq: u64, suffix: &str) -> PathBuf {
    dir.join(format!("{seq:016x}.{suffix}"))
}
