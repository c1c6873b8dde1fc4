//! The checks on incoming rates against real data: the ECB's whole history
//! since 1999 passes them (no false alarm), and a fleet peer picks up a
//! correction made by another process.

use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use fx::review::{CorrectionMeta, ImportMode};
use fx::{CurrencyCode, EngineConfig, Format, FxEngine, RateStore, SqlStore};
use gateway_core::ManualClock;

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap(),
    ))
}

async fn empty_engine(store: Arc<dyn RateStore>) -> FxEngine {
    let cfg = EngineConfig {
        import_bundled: false,
        ..EngineConfig::default()
    };
    FxEngine::open(store, cfg, clock()).await.unwrap()
}

#[tokio::test]
async fn the_real_ecb_history_passes_every_check() {
    let store: Arc<dyn RateStore> =
        Arc::new(SqlStore::connect("sqlite::memory:", None).await.unwrap());
    let e = empty_engine(store).await;
    let r = e
        .ingest_bytes("ecb", None, fx::bundled::ECB_HISTORY_ZIP)
        .await
        .unwrap();
    assert!(
        r.is_clean(),
        "{:?}",
        &r.quarantined[..r.quarantined.len().min(5)]
    );
    assert_eq!(r.inserted, 221_702);
    assert_eq!(r.first_date, NaiveDate::from_ymd_opt(1999, 1, 4).unwrap());
    // Importing it again is idempotent.
    let again = e
        .ingest_bytes("ecb", None, fx::bundled::ECB_HISTORY_ZIP)
        .await
        .unwrap();
    assert!(again.is_clean());
    assert_eq!((again.inserted, again.ignored), (0, 221_702));
}

#[tokio::test]
async fn a_peer_reload_serves_a_correction_made_elsewhere() {
    let store: Arc<dyn RateStore> =
        Arc::new(SqlStore::connect("sqlite::memory:", None).await.unwrap());
    let a = empty_engine(store.clone()).await;
    a.ingest_bytes("ecb", None, b"Date,USD,\n2026-10-30,1.3,\n")
        .await
        .unwrap();
    let b = empty_engine(store).await;
    let day = NaiveDate::from_ymd_opt(2026, 10, 30).unwrap();
    let r = a
        .import_bytes(
            "ecb",
            None,
            b"Date,USD,\n2026-10-30,1.1172,\n",
            &ImportMode::Correct(CorrectionMeta {
                actor: "ops".into(),
                reason: "typo".into(),
                via: "cli".into(),
            }),
        )
        .await
        .unwrap();
    assert_eq!(r.corrected.len(), 1);
    assert_eq!(r.corrected[0].row.line, Some(2));
    let usd = |e: &FxEngine| e.table().latest().unwrap().mid(CurrencyCode::USD).unwrap();
    assert_eq!(usd(&a).to_string(), "1.1172", "republished at once");
    assert_eq!(usd(&b).to_string(), "1.3", "b has not looked yet");
    let reload = b.reload_range("ecb", day, day).await.unwrap();
    assert_eq!(reload.days_changed, 1);
    assert_eq!(usd(&b).to_string(), "1.1172");
    // A bounded format check: the correction file went through the same
    // date checks as an import.
    let err = a
        .import_bytes(
            "ecb",
            Some(Format::EcbCsv),
            b"Date,USD,\n2099-01-01,1.1,\n",
            &ImportMode::Correct(CorrectionMeta {
                actor: "ops".into(),
                reason: "x".into(),
                via: "cli".into(),
            }),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("line 2: 2099-01-01"), "{err}");
}
