//! Reload triggers (SIGHUP, file changes), the access log's reopen
//! (SIGUSR1) and signal-driven shutdown.

use std::path::PathBuf;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::gateway::Gateway;
use crate::Running;

/// Editors save in bursts (truncate, write, rename); wait for quiet.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Watches the config file's directory (editors replace files, which a
/// watch on the file itself would miss) and reloads when its content
/// changes: once per change, whatever the number of events.
///
/// Two things keep a reload from triggering another, or a mere read from
/// triggering one: events that only report access (open, read, close after
/// reading; the reload's own read of the file is one) are ignored, and a
/// file whose content hashes the same as the running config or as the last
/// content tried is not reloaded (a `touch`, an editor saving unchanged
/// text, a rejected file touched again). SIGHUP and the admin endpoint are
/// explicit requests and always reload.
pub(crate) fn watch_file(
    gateway: Gateway,
    path: PathBuf,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let file_name = path.file_name().map(|f| f.to_os_string());
        let mut watcher = match notify::recommended_watcher(
            move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event {
                    if may_change_content(&event.kind)
                        && event
                            .paths
                            .iter()
                            .any(|p| p.file_name().map(|f| f.to_os_string()) == file_name)
                    {
                        let _ = tx.send(());
                    }
                }
            },
        ) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the config file; SIGHUP still reloads");
                return;
            }
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map(|d| d.to_path_buf())
            .unwrap_or_else(|| PathBuf::from("."));
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the config directory; SIGHUP still reloads");
            return;
        }
        // The content last tried, so a rejected file is not tried again
        // until it changes.
        let mut last_tried = content_hash(gateway.snapshot().config.source.as_bytes());
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                got = rx.recv() => if got.is_none() { return },
            }
            // Debounce: wait until no event arrived for DEBOUNCE.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let content = match tokio::fs::read(&path).await {
                Ok(c) => c,
                // Mid-replace, or removed: the next event says more.
                Err(e) => {
                    tracing::debug!(file = %path.display(), error = %e, "config file not readable; waiting for the next change");
                    continue;
                }
            };
            let hash = content_hash(&content);
            let running = content_hash(gateway.snapshot().config.source.as_bytes());
            if hash == running || hash == last_tried {
                tracing::debug!(file = %path.display(), "config file event without a content change; not reloading");
                continue;
            }
            last_tried = hash;
            let _ = gateway.reload_from_file().await;
        }
    })
}

/// Whether a file event can mean new content. Access events (open, read,
/// close without writing) cannot; `close` after writing can, as can
/// creation, modification, removal and rename.
fn may_change_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    use notify::EventKind;
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Any
        | EventKind::Create(_)
        | EventKind::Modify(_)
        | EventKind::Remove(_)
        | EventKind::Other => true,
    }
}

/// A hash of the file's bytes: equal content, equal hash.
fn content_hash(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

pub(crate) async fn run_until_signal(running: Running) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    // Also replaces SIGUSR1's default action (exit), so a logrotate
    // `postrotate` never stops a gateway that logs to stdout.
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading config");
                let _ = running.gateway.reload_from_file().await;
            }
            _ = usr1.recv() => reopen_access_log(&running.gateway).await,
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let grace = running.grace();
    let in_flight = running.gateway.in_flight();
    tracing::info!(in_flight, grace = ?grace, "draining");
    let drained = running.shutdown(grace).await;
    if drained {
        tracing::info!("drained; exiting");
    } else {
        tracing::warn!("grace period over with requests still in flight; exiting");
    }
    Ok(())
}

/// Reopens the access log file after log rotation renamed it. The writer
/// thread does it behind the lines already queued, so this waits on a
/// blocking thread, never on the signal loop's runtime thread.
async fn reopen_access_log(gateway: &Gateway) {
    let gateway = gateway.clone();
    match tokio::task::spawn_blocking(move || gateway.reopen_access_log()).await {
        Ok(Ok(())) => tracing::info!("SIGUSR1: access log reopened"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "SIGUSR1: cannot reopen the access log; writing to the old file")
        }
        Err(e) => tracing::warn!(error = %e, "SIGUSR1: access log reopen did not finish"),
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, ModifyKind};
    use notify::EventKind;

    use super::*;

    #[test]
    fn reads_are_not_changes_and_writes_are() {
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Any),
        ] {
            assert!(!may_change_content(&kind), "{kind:?}");
        }
        for kind in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
        ] {
            assert!(may_change_content(&kind), "{kind:?}");
        }
    }

    #[test]
    fn equal_content_hashes_equal() {
        assert_eq!(content_hash(b"a = 1\n"), content_hash(b"a = 1\n"));
        assert_ne!(content_hash(b"a = 1\n"), content_hash(b"a = 2\n"));
    }
}
