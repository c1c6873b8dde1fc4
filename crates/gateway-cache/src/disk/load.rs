//! Startup: the index rebuilt from the entry files a previous run left.
//!
//! Only each file's fixed header and meta section are read (and checked);
//! bodies are checked when they are first served. Temp files (a write cut
//! short by a crash), files that fail their checks, and older files of a
//! key that has a newer one are deleted. If the directory holds more than
//! the bound (it was lowered), the oldest entries go.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use super::format::{FormatError, Head, HEADER_LEN};
use super::index::{DiskEntry, DiskIndex};
use super::shared::{entry_path, ENTRY_SUFFIX, TEMP_SUFFIX};

/// What a directory held.
pub(crate) struct Loaded {
    pub(crate) index: DiskIndex,
    /// The sequence number for the next file.
    pub(crate) next_seq: u64,
    /// Files refused by their checks (and deleted).
    pub(crate) corrupt: u64,
}

/// Reads every entry file's header and meta in `dir`.
pub(crate) fn load(dir: &Path, max_bytes: u64) -> io::Result<Loaded> {
    let mut index = DiskIndex::default();
    let mut next_seq = 1;
    let mut corrupt = 0;
    for dirent in fs::read_dir(dir)? {
        let path = dirent?.path();
        let Some((seq, suffix)) = parse_name(&path) else {
            continue;
        };
        if suffix == TEMP_SUFFIX {
            remove(&path);
            continue;
        }
        next_seq = next_seq.max(seq + 1);
        match read_entry(&path, seq) {
            Ok((key, entry)) => {
                let newer = index.get(&key).is_some_and(|e| e.seq > seq);
                if newer {
                    remove(&path);
                } else if let Some(older) = index.insert(key, entry) {
                    remove(&entry_path(dir, older.seq, ENTRY_SUFFIX));
                }
            }
            Err(LoadError::Io(e)) => return Err(e),
            Err(LoadError::Format(reason)) => {
                tracing::warn!(file = %path.display(), %reason, "cache disk tier: corrupt entry deleted");
                corrupt += 1;
                remove(&path);
            }
        }
    }
    while index.bytes() > max_bytes {
        let Some(oldest) = index.pop_oldest() else {
            break;
        };
        remove(&entry_path(dir, oldest.seq, ENTRY_SUFFIX));
    }
    Ok(Loaded {
        index,
        next_seq,
        corrupt,
    })
}

enum LoadError {
    Io(io::Error),
    Format(FormatError),
}

fn read_entry(path: &Path, seq: u64) -> Result<(crate::key::VariantKey, DiskEntry), LoadError> {
    let mut file = fs::File::open(path).map_err(LoadError::Io)?;
    let len = file.metadata().map_err(LoadError::Io)?.len();
    let mut head = [0u8; HEADER_LEN];
    if len < HEADER_LEN as u64 {
        return Err(LoadError::Format(FormatError::Truncated(len)));
    }
    file.read_exact(&mut head).map_err(LoadError::Io)?;
    let head = Head::parse(&head).map_err(LoadError::Format)?;
    if head.file_len() != len {
        return Err(LoadError::Format(FormatError::Truncated(len)));
    }
    let mut meta = vec![0u8; head.meta_len as usize];
    file.read_exact(&mut meta).map_err(LoadError::Io)?;
    let meta = head.meta(&meta).map_err(LoadError::Format)?;
    let entry = DiskEntry {
        seq,
        bytes: len,
        vary: meta.vary,
        tags: meta.tags,
        stale: head.stale,
        pending: false,
    };
    Ok((meta.key, entry))
}

/// `(seq, suffix)` of a file named like an entry or temp file.
fn parse_name(path: &Path) -> Option<(u64, &str)> {
    let (stem, suffix) = path.file_name()?.to_str()?.split_once('.')?;
    if stem.len() != 16 || (suffix != ENTRY_SUFFIX && suffix != TEMP_SUFFIX) {
        return None;
    }
    Some((u64::from_str_radix(stem, 16).ok()?, suffix))
}

fn remove(path: &Path) {
    if let Err(error) = fs::remove_file(path) {
        tracing::warn!(file = %path.display(), %error, "cache disk tier: cannot delete a file");
    }
}
