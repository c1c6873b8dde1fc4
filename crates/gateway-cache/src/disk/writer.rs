//! The writer thread and its queue: the only place entry files are
//! written, renamed, marked or deleted while the gateway runs.
//!
//! The request path only pushes jobs. Writes are bounded
//! ([`MAX_QUEUED_WRITES`]): when the thread falls behind, a new write is
//! refused and counted, and the entry simply stays in memory only.
//! Deletes and stale marks are never refused (they are small, and
//! dropping one would let a purged or evicted file survive). One queue in
//! FIFO order keeps a file's write before its mark or delete.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use super::format::{self, Head};
use super::shared::Shared;
use crate::key::VariantKey;

/// Writes that may wait for the writer thread; more are dropped, counted.
pub(crate) const MAX_QUEUED_WRITES: usize = 1024;

/// One change to the directory.
pub(crate) enum Job {
    /// Writes file `seq` (to a temp file, then renamed into place).
    Write {
        seq: u64,
        key: VariantKey,
        meta: Vec<u8>,
        body: Bytes,
    },
    /// Sets the stale flag of file `seq` (a soft purge).
    MarkStale { seq: u64 },
    /// Deletes file `seq` (replaced, evicted, purged or corrupt).
    Delete { seq: u64 },
}

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    queued_writes: usize,
    /// Jobs taken by the thread and not finished yet.
    busy: bool,
    closed: bool,
}

/// The jobs waiting for the writer thread.
#[derive(Default)]
pub(crate) struct Queue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

impl Queue {
    /// Queues a write unless [`MAX_QUEUED_WRITES`] are waiting; returns
    /// whether it was queued.
    pub(crate) fn push_write(&self, job: Job) -> bool {
        let mut state = self.state.lock();
        if state.queued_writes >= MAX_QUEUED_WRITES || state.closed {
            return false;
        }
        state.queued_writes += 1;
        state.jobs.push_back(job);
        self.changed.notify_all();
        true
    }

    /// Queues a mark or a delete; never refused.
    pub(crate) fn push(&self, job: Job) {
        let mut state = self.state.lock();
        state.jobs.push_back(job);
        self.changed.notify_all();
    }

    /// Blocks until every job queued so far is done.
    pub(crate) fn wait_idle(&self) {
        let mut state = self.state.lock();
        while !state.jobs.is_empty() || state.busy {
            self.changed.wait(&mut state);
        }
    }

    /// Lets the thread finish the queued jobs and exit.
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.changed.notify_all();
    }

    /// The next job, or `None` once closed and drained.
    fn next(&self) -> Option<Job> {
        let mut state = self.state.lock();
        state.busy = false;
        self.changed.notify_all();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                if matches!(job, Job::Write { .. }) {
                    state.queued_writes -= 1;
                }
                state.busy = true;
                return Some(job);
            }
            if state.closed {
                return None;
            }
            self.changed.wait(&mut state);
        }
    }
}

/// Starts the writer thread.
pub(crate) fn spawn(shared: Arc<Shared>, queue: Arc<Queue>) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("gatehouse-cache-disk".into())
        .spawn(move || {
            while let Some(job) = queue.next() {
                run(&shared, job);
            }
        })
}

fn run(shared: &Shared, job: Job) {
    match job {
        Job::Write {
            seq,
            key,
            meta,
            body,
        } => {
            if shared.writes_paused() {
                shared.forget(&key, seq);
                shared.dropped_write();
                return;
            }
            match write_entry(shared, seq, &meta, &body) {
                Ok(()) => {
                    shared.index.lock().mark_written(&key, seq);
                    shared.wrote();
                }
                Err(error) => {
                    let _ = fs::remove_file(shared.temp_path(seq));
                    shared.forget(&key, seq);
                    shared.dropped_write();
                    shared.pause_writes(&error);
                }
            }
        }
        Job::MarkStale { seq } => {
            if let Err(error) = mark_stale(shared, seq) {
                if error.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(seq, %error, "cache disk tier: cannot mark an entry stale");
                }
            }
        }
        Job::Delete { seq } => {
            if let Err(error) = fs::remove_file(shared.entry_path(seq)) {
                if error.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(seq, %error, "cache disk tier: cannot delete an entry");
                }
            }
        }
    }
}

/// Writes the whole file under a temp name, then renames it into place, so
/// a reader sees a complete file or none. No fsync: a crash may lose the
/// latest entries or leave a torn one, which the checksums refuse.
fn write_entry(shared: &Shared, seq: u64, meta: &[u8], body: &[u8]) -> io::Result<()> {
    let temp = shared.temp_path(seq);
    let mut file = fs::File::create(&temp)?;
    file.write_all(&Head::encode(meta, body))?;
    file.write_all(meta)?;
    file.write_all(body)?;
    drop(file);
    fs::rename(&temp, shared.entry_path(seq))
}

fn mark_stale(shared: &Shared, seq: u64) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .open(shared.entry_path(seq))?;
    file.seek(SeekFrom::Start(format::FLAGS_OFFSET))?;
    file.write_all(&[format::FLAG_STALE])
}
