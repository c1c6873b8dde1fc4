//! Reload triggers (SIGHUP, file changes) and signal-driven shutdown.

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
/// watch on the file itself would miss) and reloads on change.
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
                    if event
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
            let _ = gateway.reload_from_file().await;
        }
    })
}

pub(crate) async fn run_until_signal(running: Running) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading config");
                let _ = running.gateway.reload_from_file().await;
            }
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
