//! Shared setup for the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use gateway_core::ManualClock;
use gateway_keys::config::{KeysConfig, PlanConfig};
use gateway_keys::key::{ConsumerId, KeyHash, KeyId};
use gateway_keys::model::{AuditAction, Consumer, KeyRecord, NewAuditEntry};
use gateway_keys::scope::Scope;
use gateway_keys::service::{CreateKey, KeyService};
use gateway_keys::store::{AuditQuery, KeyStore, QuotaUsage, SqlStore, StoreError};

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

pub async fn service(
    cfg: KeysConfig,
    plans: BTreeMap<String, PlanConfig>,
) -> (KeyService, ManualClock, Arc<SqlStore>) {
    let store = Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap());
    let clock = ManualClock::new(t0());
    let svc = KeyService::builder(store.clone())
        .config(cfg)
        .plans(plans)
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    (svc, clock, store)
}

pub fn create(owner: &str) -> CreateKey {
    CreateKey {
        owner: owner.into(),
        ..CreateKey::default()
    }
}

pub async fn wait_until(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    panic!("condition not reached");
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).to_string()
    }
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        let w = self.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn capture_logs() -> Logs {
    Logs::default()
}

fn audit(action: AuditAction, key: Option<&KeyId>, consumer: &ConsumerId) -> NewAuditEntry {
    NewAuditEntry {
        at: t0(),
        actor: "tester".into(),
        action,
        key_id: key.cloned(),
        consumer_id: Some(consumer.clone()),
        detail: serde_json::json!({"n": 1}),
    }
}

fn key(consumer: &ConsumerId, text: &str) -> KeyRecord {
    KeyRecord {
        id: KeyId::generate(),
        consumer_id: consumer.clone(),
        name: "k".into(),
        environment: "live".into(),
        scopes: vec![
            Scope::Route("orders".into()),
            Scope::Custom("orders:write".into()),
        ],
        plan: Some("gold".into()),
        created_at: t0(),
        created_by: "tester".into(),
        expires_at: Some(t0() + Duration::days(90)),
        revoked_at: None,
        revoked_reason: None,
        last_used_at: None,
        predecessor: None,
        successor: None,
        grace_until: None,
        warned_at: None,
        expiry_noted_at: None,
        metadata: Default::default(),
        hash: KeyHash::of(text),
    }
}

/// The store contract, run against every backend.
pub async fn store_suite(store: &dyn KeyStore) {
    let c = Consumer {
        id: ConsumerId::generate(),
        name: format!("suite-{}", ConsumerId::generate()),
        plan: Some("gold".into()),
        group: Some("g1".into()),
        created_at: t0(),
    };
    store
        .insert_consumer(&c, &audit(AuditAction::ConsumerCreated, None, &c.id))
        .await
        .unwrap();
    assert!(matches!(
        store
            .insert_consumer(&c, &audit(AuditAction::ConsumerCreated, None, &c.id))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_consumer(&c.id).await.unwrap(), Some(c.clone()));
    assert_eq!(
        store.find_consumer_by_name(&c.name).await.unwrap(),
        Some(c.clone())
    );

    let k1 = key(&c.id, "one");
    store
        .insert_key(&k1, &audit(AuditAction::KeyCreated, Some(&k1.id), &c.id))
        .await
        .unwrap();
    assert_eq!(store.get_key(&k1.id).await.unwrap(), Some(k1.clone()));

    let mut k2 = key(&c.id, "two");
    k2.predecessor = Some(k1.id.clone());
    let grace = t0() + Duration::hours(24);
    store
        .rotate_key(
            &k1.id,
            grace,
            &k2,
            &[audit(AuditAction::KeyRotated, Some(&k1.id), &c.id)],
        )
        .await
        .unwrap();
    let k1b = store.get_key(&k1.id).await.unwrap().unwrap();
    assert_eq!(k1b.successor.as_ref(), Some(&k2.id));
    assert_eq!(k1b.grace_until, Some(grace));
    // A second rotation of the same key conflicts and changes nothing.
    let k3 = key(&c.id, "three");
    assert!(matches!(
        store.rotate_key(&k1.id, grace, &k3, &[]).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_key(&k3.id).await.unwrap(), None);

    store
        .record_last_used(&[(k2.id.clone(), t0() + Duration::minutes(5))])
        .await
        .unwrap();
    store
        .record_last_used(&[(k2.id.clone(), t0() + Duration::minutes(1))])
        .await
        .unwrap();
    assert_eq!(
        store.get_key(&k2.id).await.unwrap().unwrap().last_used_at,
        Some(t0() + Duration::minutes(5))
    );

    store
        .revoke_key(
            &k2.id,
            t0(),
            Some("leak"),
            &audit(AuditAction::KeyRevoked, Some(&k2.id), &c.id),
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .revoke_key(
                &k2.id,
                t0(),
                None,
                &audit(AuditAction::KeyRevoked, Some(&k2.id), &c.id)
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .revoke_key(
                &KeyId::generate(),
                t0(),
                None,
                &audit(AuditAction::KeyRevoked, None, &c.id)
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
    let keys = store.list_keys(Some(&c.id)).await.unwrap();
    assert_eq!(keys.len(), 2);

    let trail = store
        .audit(&AuditQuery {
            key_id: Some(k1.id.clone()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        trail.iter().map(|e| e.action).collect::<Vec<_>>(),
        [AuditAction::KeyRotated, AuditAction::KeyCreated]
    );
    let page = store
        .audit(&AuditQuery {
            limit: 2,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 2);
    assert!(page[0].id > page[1].id);
    let older = store
        .audit(&AuditQuery {
            before_id: Some(page[1].id),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(older.iter().all(|e| e.id < page[1].id));

    let subject = format!("consumer:{}", c.id);
    let delta = |n| QuotaUsage {
        subject: subject.clone(),
        period: "d:2026-01-01".into(),
        used: n,
    };
    store.add_quota_usage(&[delta(3)]).await.unwrap();
    store.add_quota_usage(&[delta(4)]).await.unwrap();
    let usage = store.quota_usage(&["d:2026-01-01".into()]).await.unwrap();
    assert!(usage.contains(&delta(7)));
}
