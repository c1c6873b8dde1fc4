//! The background loop: batched writes of what the request path noted
//! (last-used times, audit entries, quota counts), the rotation-policy
//! sweep (expiries noted, expiry warnings sent), periodic reloads and the
//! change-feed listener.

use futures::StreamExt;
use serde_json::json;

use crate::key::KeyId;
use crate::model::{AuditAction, KeyStatus, NewAuditEntry};

use super::error::ServiceError;
use super::state::{BackgroundTasks, KeyService, UseNote, SYSTEM_ACTOR};

/// How often a retiring key's use is written to the audit log, at most.
const GRACE_USE_AUDIT_EVERY: chrono::Duration = chrono::Duration::hours(1);

impl KeyService {
    /// Starts the background loop (see [`KeyService::spawn_background`])
    /// owned by the service itself, unless it is already running.
    /// [`KeyService::open`] calls this; [`KeyService::stop_background`]
    /// stops it with a final flush.
    pub fn start_background(&self) {
        let mut slot = self.inner.background.lock();
        if slot.is_none() {
            *slot = Some(self.spawn_background());
        }
    }

    /// Stops the loop started by [`KeyService::start_background`], after a
    /// final flush. Does nothing if it is not running.
    pub async fn stop_background(&self) {
        let tasks = self.inner.background.lock().take();
        if let Some(t) = tasks {
            t.shutdown().await;
        }
    }

    /// Writes queued last-used times, audit entries and quota counts.
    pub async fn flush(&self) -> Result<(), ServiceError> {
        let now = self.inner.clock.now();
        let keys: Vec<KeyId> = self.inner.uses.iter().map(|e| e.key().clone()).collect();
        let mut batch = Vec::with_capacity(keys.len());
        let mut grace_audits = Vec::new();
        for id in keys {
            if let Some((id, note)) = self.inner.uses.remove(&id) {
                if note.retiring {
                    let due = self
                        .inner
                        .grace_audited
                        .get(&id)
                        .is_none_or(|last| now - *last >= GRACE_USE_AUDIT_EVERY);
                    if due {
                        self.inner.grace_audited.insert(id.clone(), now);
                        let entry = self.inner.keyring.key(&id);
                        tracing::warn!(key_id = %id, consumer_id = ?entry.as_ref().map(|e| e.record.consumer_id.to_string()), "retiring key still in use during its grace period");
                        grace_audits.push(NewAuditEntry {
                            at: note.at,
                            actor: SYSTEM_ACTOR.into(),
                            action: AuditAction::UsedInGrace,
                            key_id: Some(id.clone()),
                            consumer_id: entry.as_ref().map(|e| e.record.consumer_id.clone()),
                            detail: json!({
                                "successor": entry.as_ref().and_then(|e| e.record.successor.clone()),
                                "grace_until": entry.as_ref().and_then(|e| e.record.grace_until),
                                "last_used_at": note.at,
                                "clients": self.inner.grace_clients.report(&id),
                            }),
                        });
                    }
                }
                batch.push((id, note.at));
            }
        }
        if let Err(e) = self.inner.store.record_last_used(&batch).await {
            // Keep the notes for the next attempt.
            for (id, at) in batch {
                self.inner.uses.entry(id).or_insert(UseNote {
                    at,
                    retiring: false,
                });
            }
            return Err(e.into());
        }
        let mut audits = std::mem::take(&mut *self.inner.audit_queue.lock());
        audits.extend(grace_audits);
        if let Err(e) = self.inner.store.append_audit(&audits).await {
            self.inner.audit_queue.lock().extend(audits);
            return Err(e.into());
        }
        self.inner.denials_seen.clear();
        let deltas = self.inner.limits.quotas().drain_pending();
        if let Err(e) = self.inner.store.add_quota_usage(&deltas).await {
            self.inner.limits.quotas().restore_pending(&deltas);
            return Err(e.into());
        }
        Ok(())
    }

    /// The rotation-policy sweep: notes expiries in the audit log and sends
    /// expiry warnings (log event, audit entry, optional webhook).
    pub async fn sweep(&self) -> Result<SweepReport, ServiceError> {
        let now = self.inner.clock.now();
        let mut report = SweepReport::default();
        let warn_before = chrono::Duration::from_std(self.inner.config.load().rotation.warn_before)
            .unwrap_or(chrono::Duration::MAX);
        for k in self.inner.store.list_keys(None).await? {
            if k.revoked_at.is_some() {
                self.inner.grace_clients.forget(&k.id);
                continue;
            }
            let status = k.status(now);
            if status == KeyStatus::Expired {
                self.inner.grace_clients.forget(&k.id);
                if k.expiry_noted_at.is_none() {
                    let reason = if k.grace_until.is_some_and(|g| g <= now) {
                        "grace_ended"
                    } else {
                        "expired"
                    };
                    let audit = NewAuditEntry {
                        at: now,
                        actor: SYSTEM_ACTOR.into(),
                        action: AuditAction::KeyExpired,
                        key_id: Some(k.id.clone()),
                        consumer_id: Some(k.consumer_id.clone()),
                        detail: json!({ "reason": reason, "at": k.effective_expiry() }),
                    };
                    self.inner
                        .store
                        .mark_expiry_noted(&k.id, now, &audit)
                        .await?;
                    tracing::info!(key_id = %k.id, consumer_id = %k.consumer_id, reason, "key expired");
                    report.expired.push(k.id.clone());
                }
                continue;
            }
            if status != KeyStatus::Active || k.warned_at.is_some() {
                continue;
            }
            let Some(exp) = k.expires_at else { continue };
            if exp - now > warn_before {
                continue;
            }
            let consumer = self.inner.keyring.consumer(&k.consumer_id);
            let payload = json!({
                "event": "key.expiring",
                "key_id": k.id,
                "key_name": k.name,
                "consumer_id": k.consumer_id,
                "consumer_name": consumer.as_ref().map(|c| c.name.clone()),
                "expires_at": exp,
                "seconds_left": (exp - now).num_seconds(),
            });
            tracing::warn!(key_id = %k.id, consumer_id = %k.consumer_id, expires_at = %exp, "key expires soon; rotate it");
            let mut webhook = serde_json::Value::Null;
            if let Some(url) = &self.inner.config.load().rotation.webhook_url {
                let outcome = match self.inner.http.post(url).json(&payload).send().await {
                    Ok(r) if r.status().is_success() => "delivered".to_string(),
                    Ok(r) => format!("http {}", r.status().as_u16()),
                    Err(e) => {
                        tracing::warn!(key_id = %k.id, error = %e, "expiry webhook failed");
                        "failed".to_string()
                    }
                };
                webhook = json!(outcome);
            }
            let audit = NewAuditEntry {
                at: now,
                actor: SYSTEM_ACTOR.into(),
                action: AuditAction::KeyExpiring,
                key_id: Some(k.id.clone()),
                consumer_id: Some(k.consumer_id.clone()),
                detail: json!({ "expires_at": exp, "webhook": webhook }),
            };
            self.inner.store.mark_warned(&k.id, now, &audit).await?;
            report.warned.push(k.id.clone());
        }
        // Expired keys can also leave the keyring's view of "usable" keys,
        // but they stay in memory so the 401 says "expired", not "unknown".
        Ok(report)
    }

    /// Spawns the background loop: change-feed listener, periodic flush,
    /// sweep, full reload and limiter pruning. Call
    /// [`BackgroundTasks::shutdown`] to stop it with a final flush.
    pub fn spawn_background(&self) -> BackgroundTasks {
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let svc = self.clone();
        let handle = tokio::spawn(async move {
            let cfg = svc.config();
            let mut events = svc.inner.feed.subscribe();
            let mut flush = tokio::time::interval(cfg.flush_interval);
            let mut sweep = tokio::time::interval(cfg.sweep_interval);
            let mut reload = tokio::time::interval(cfg.reload_interval);
            for t in [&mut flush, &mut sweep, &mut reload] {
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            }
            // The first tick of an interval fires at once; the keyring was
            // just loaded, so skip the immediate reload.
            reload.tick().await;
            loop {
                tokio::select! {
                    _ = rx.changed() => break,
                    ev = events.next() => match ev {
                        Some(ev) => {
                            if let Err(e) = svc.apply_event(&ev).await {
                                tracing::warn!(event = ev.as_str(), error = %e, "applying key change failed");
                            }
                        }
                        None => {
                            tracing::warn!("change feed closed; relying on periodic reloads");
                            events = Box::pin(futures::stream::pending());
                        }
                    },
                    _ = flush.tick() => {
                        if let Err(e) = svc.flush().await {
                            tracing::warn!(error = %e, "key usage flush failed; will retry");
                        }
                    }
                    _ = sweep.tick() => {
                        if let Err(e) = svc.sweep().await {
                            tracing::warn!(error = %e, "key sweep failed; will retry");
                        }
                        svc.inner.limits.prune().await;
                    }
                    _ = reload.tick() => {
                        if let Err(e) = svc.reload().await {
                            tracing::warn!(error = %e, "keyring reload failed; serving the previous snapshot");
                        }
                    }
                }
            }
            if let Err(e) = svc.flush().await {
                tracing::warn!(error = %e, "final key usage flush failed");
            }
        });
        BackgroundTasks { stop: tx, handle }
    }
}

/// What one [`KeyService::sweep`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Keys whose expiry was newly noted.
    pub expired: Vec<KeyId>,
    /// Keys newly warned about.
    pub warned: Vec<KeyId>,
}
