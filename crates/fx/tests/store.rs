//! The store suite, written once and run on SQLite always and on PostgreSQL
//! when `GATEHOUSE_TEST_POSTGRES_URL` is set; plus engine behaviour over the
//! store (corrupt files, consensus, outages, quotes with an injectable clock).

use std::str::FromStr;
use std::sync::Arc;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use fx::engine::{Bootstrap, IngestError};
use fx::staleness::{FixingCalendar, StalenessLimits};
use fx::store::{AuditKind, Backend, ProviderBatch, RateStore, SqlStore};
use fx::{Batch, CurrencyCode, EngineConfig, Fixing, Format, FxEngine, FxError, RoundingMode};
use gateway_core::ManualClock;
use rust_decimal::Decimal;
use sqlx::Executor;

fn c(s: &str) -> CurrencyCode {
    CurrencyCode::parse(s).unwrap()
}
fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}
fn date(s: &str) -> NaiveDate {
    NaiveDate::from_str(s).unwrap()
}

fn small_batch(usd: &str) -> Batch {
    Batch {
        base: CurrencyCode::EUR,
        fixings: vec![
            Fixing {
                date: date("2026-10-29"),
                rates: vec![(c("JPY"), d("175.92")), (c("USD"), d("1.1130"))],
            },
            Fixing {
                date: date("2026-10-30"),
                rates: vec![(c("JPY"), d("175.68")), (c("USD"), d(usd))],
            },
        ],
    }
}

/// The suite every store must pass.
async fn store_suite(store: Arc<dyn RateStore>) {
    let at = Utc.with_ymd_and_hms(2026, 10, 30, 17, 0, 0).unwrap();
    assert_eq!(store.count_rows("ecb").await.unwrap(), 0);

    let r = store
        .ingest("ecb", Format::EcbCsv, &small_batch("1.1172"), at)
        .await
        .unwrap();
    assert_eq!((r.inserted, r.ignored), (4, 0));
    assert_eq!(r.first_date, date("2026-10-29"));

    // A re-publication with a different value never overwrites the raw row.
    let r = store
        .ingest("ecb", Format::EcbCsv, &small_batch("9.9999"), at)
        .await
        .unwrap();
    assert_eq!((r.inserted, r.ignored), (0, 4));
    let raw = store
        .raw_values(date("2026-10-30"), c("USD"))
        .await
        .unwrap();
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0].rate, d("1.1172"));
    // Exact decimal text survives the round trip (trailing zero included).
    let loaded = store.load_all().await.unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(
        loaded[0].batches[0].fixings[0].rates[1].1.to_string(),
        "1.1130"
    );

    // Another provider with another base is stored beside it.
    let oxr = Batch {
        base: CurrencyCode::USD,
        fixings: vec![Fixing {
            date: date("2026-10-30"),
            rates: vec![(c("EUR"), d("0.8951")), (c("JPY"), d("157.25"))],
        }],
    };
    store.ingest("oxr", Format::Oxr, &oxr, at).await.unwrap();
    let raw = store
        .raw_values(date("2026-10-30"), c("JPY"))
        .await
        .unwrap();
    assert_eq!(
        raw.iter().map(|v| v.provider.as_str()).collect::<Vec<_>>(),
        vec!["ecb", "oxr"]
    );
    assert_eq!(raw[1].base, CurrencyCode::USD);
    assert_eq!(store.load_all().await.unwrap().len(), 2);

    load_range_returns_exactly_the_rows_in_range(store.as_ref(), at).await;
    quarantine_and_corrections_keep_history(store.as_ref(), at).await;

    // Quotes and the append-only audit.
    let q = fx::store::QuoteRecord {
        id: "q_test".into(),
        from: c("USD"),
        to: c("JPY"),
        mid_rate: d("157.2"),
        customer_rate: d("156.4"),
        spread_bps: 50,
        tier: String::new(),
        fixing_date: date("2026-10-30"),
        providers: "ecb".into(),
        created_at: at,
        expires_at: at + Duration::minutes(10),
    };
    let ev = fx::store::AuditEvent {
        seq: 0,
        at,
        kind: AuditKind::QuoteCreated,
        quote_id: "q_test".into(),
        detail: "{}".into(),
    };
    store.insert_quote(&q, &ev).await.unwrap();
    assert_eq!(store.get_quote("q_test").await.unwrap(), Some(q.clone()));
    assert_eq!(store.get_quote("q_missing").await.unwrap(), None);
    let seq = store
        .append_audit(&fx::store::AuditEvent {
            kind: AuditKind::QuoteConverted,
            ..ev.clone()
        })
        .await
        .unwrap();
    let audit = store.audit_for_quote("q_test").await.unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[1].seq, seq);
    assert_eq!(audit[1].kind, AuditKind::QuoteConverted);
    // Re-inserting the same quote id fails and leaves no stray audit row.
    assert!(store.insert_quote(&q, &ev).await.is_err());
    assert_eq!(store.audit_for_quote("q_test").await.unwrap().len(), 2);
}

/// `load_all` restricted to `provider` and `first..=last`, for comparison.
fn expected_range(
    all: &[ProviderBatch],
    provider: &str,
    first: NaiveDate,
    last: NaiveDate,
) -> Vec<ProviderBatch> {
    all.iter()
        .filter(|pb| pb.provider == provider)
        .map(|pb| ProviderBatch {
            provider: pb.provider.clone(),
            batches: pb
                .batches
                .iter()
                .map(|b| Batch {
                    base: b.base,
                    fixings: b
                        .fixings
                        .iter()
                        .filter(|f| (first..=last).contains(&f.date))
                        .cloned()
                        .collect(),
                })
                .filter(|b| !b.fixings.is_empty())
                .collect(),
        })
        .filter(|pb| !pb.batches.is_empty())
        .collect()
}

/// Part of the suite: with ecb on 2026-10-29/30 and oxr on 2026-10-30
/// stored, adds ecb fixings around them and reads ranges back.
async fn load_range_returns_exactly_the_rows_in_range(
    store: &dyn RateStore,
    at: chrono::DateTime<Utc>,
) {
    let around = Batch {
        base: CurrencyCode::EUR,
        fixings: ["2026-10-27", "2026-10-28", "2026-11-02", "2026-11-03"]
            .into_iter()
            .map(|day| Fixing {
                date: date(day),
                rates: vec![(c("GBP"), d("0.8712")), (c("USD"), d("1.1101"))],
            })
            .collect(),
    };
    let r = store
        .ingest("ecb", Format::EcbCsv, &around, at)
        .await
        .unwrap();
    assert_eq!(r.inserted, 8);
    let all = store.load_all().await.unwrap();
    let cases = [
        ("ecb", "2026-10-28", "2026-11-02"), // bounds are inclusive
        ("ecb", "2026-10-30", "2026-10-30"), // one day
        ("ecb", "2026-10-29", "2026-10-29"),
        ("ecb", "1999-01-01", "2099-12-31"), // everything
        ("ecb", "2026-10-31", "2026-11-01"), // a weekend: nothing
        ("ecb", "2026-11-04", "2026-12-31"), // after the last fixing
        ("oxr", "2026-10-01", "2026-11-30"), // the other provider only
        ("nobody", "2026-10-01", "2026-11-30"),
    ];
    for (provider, first, last) in cases {
        let got = store
            .load_range(provider, date(first), date(last))
            .await
            .unwrap();
        let want = expected_range(&all, provider, date(first), date(last));
        assert_eq!(got, want, "{provider} {first}..={last}");
    }
    // Spot checks that the comparison is not vacuous.
    let got = store
        .load_range("ecb", date("2026-10-28"), date("2026-11-02"))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].provider, "ecb");
    let dates: Vec<String> = got[0].batches[0]
        .fixings
        .iter()
        .map(|f| f.date.to_string())
        .collect();
    assert_eq!(
        dates,
        ["2026-10-28", "2026-10-29", "2026-10-30", "2026-11-02"]
    );
    let rows: usize = got[0].batches.iter().map(Batch::len).sum();
    assert_eq!(rows, 8);
    // Exact decimal text survives the range read too.
    assert_eq!(
        got[0].batches[0].fixings[1].rates[1].1.to_string(),
        "1.1130"
    );
    assert!(store
        .load_range("ecb", date("2026-10-31"), date("2026-11-01"))
        .await
        .unwrap()
        .is_empty());
    let oxr = store
        .load_range("oxr", date("2026-10-01"), date("2026-11-30"))
        .await
        .unwrap();
    assert_eq!(oxr.len(), 1);
    assert_eq!(oxr[0].batches[0].base, CurrencyCode::USD);
}

/// Part of the suite: with ecb's USD of 2026-10-30 stored as 1.1172,
/// quarantines a value, corrects a published one twice and releases the
/// quarantined one; every old value stays readable.
async fn quarantine_and_corrections_keep_history(store: &dyn RateStore, at: chrono::DateTime<Utc>) {
    use fx::review::{CorrectionRecord, QuarantineRecord, StoredState};
    let day = date("2026-10-30");
    let held = QuarantineRecord {
        provider: "ecb".into(),
        base: CurrencyCode::EUR,
        currency: c("CHF"),
        date: day,
        rate: d("93.5"),
        reason: "moves too far".into(),
        at,
    };
    let empty = Batch {
        base: CurrencyCode::EUR,
        fixings: vec![],
    };
    let r = store
        .ingest_reviewed(
            "ecb",
            "ecb-csv",
            &empty,
            fx::store::Reviewed {
                held: std::slice::from_ref(&held),
                corrections: &[],
                span: (day, day),
            },
            at,
        )
        .await
        .unwrap();
    assert_eq!((r.inserted, r.ignored), (0, 0));
    assert_eq!(store.open_quarantine().await.unwrap(), vec![held.clone()]);
    let stored = store.stored_values("ecb", day, day).await.unwrap();
    let chf = stored.iter().find(|v| v.currency == c("CHF")).unwrap();
    assert_eq!((chf.rate, chf.state), (d("93.5"), StoredState::Quarantined));
    // Quarantined values are never published.
    let published = store.load_range("ecb", day, day).await.unwrap();
    assert!(published[0].batches[0].fixings[0]
        .rates
        .iter()
        .all(|r| r.0 != c("CHF")));

    let fix = |currency: &str, old: &str, state, new: &str, reason: &str| CorrectionRecord {
        seq: 0,
        at,
        provider: "ecb".into(),
        base: CurrencyCode::EUR,
        currency: c(currency),
        date: day,
        old_rate: d(old),
        old_state: state,
        new_rate: d(new),
        actor: "ops".into(),
        reason: reason.into(),
        via: "cli".into(),
    };
    let corrections = [
        fix("USD", "1.1172", StoredState::Published, "1.2", "typo"),
        fix("USD", "1.2", StoredState::Published, "1.1175", "typo again"),
        fix(
            "CHF",
            "93.5",
            StoredState::Quarantined,
            "0.935",
            "decimal point",
        ),
    ];
    store
        .ingest_reviewed(
            "ecb",
            "correction",
            &empty,
            fx::store::Reviewed {
                held: &[],
                corrections: &corrections,
                span: (day, day),
            },
            at,
        )
        .await
        .unwrap();
    // The newest correction is published, the released value included...
    let published = store.load_range("ecb", day, day).await.unwrap();
    let rates = &published[0].batches[0].fixings[0].rates;
    assert!(rates.contains(&(c("USD"), d("1.1175"))), "{rates:?}");
    assert!(rates.contains(&(c("CHF"), d("0.935"))), "{rates:?}");
    assert!(rates.windows(2).all(|w| w[0].0 < w[1].0), "{rates:?}");
    let all = store.load_all().await.unwrap();
    let ecb = all.iter().find(|p| p.provider == "ecb").unwrap();
    let f = ecb.batches[0]
        .fixings
        .iter()
        .find(|f| f.date == day)
        .unwrap();
    assert_eq!(&f.rates, rates);
    assert!(store.open_quarantine().await.unwrap().is_empty());
    let raw = store.raw_values(day, c("USD")).await.unwrap();
    assert_eq!(raw[0].rate, d("1.1175"));
    // ...and the history keeps every earlier value, in order, with who and why.
    let history = store
        .corrections(Some("ecb"), Some(day), Some(day))
        .await
        .unwrap();
    assert_eq!(history.len(), 3);
    assert!(history.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        history
            .iter()
            .map(|h| (h.old_rate, h.new_rate, h.reason.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (d("1.1172"), d("1.2"), "typo"),
            (d("1.2"), d("1.1175"), "typo again"),
            (d("93.5"), d("0.935"), "decimal point"),
        ]
    );
    assert_eq!(history[2].old_state, StoredState::Quarantined);
    assert_eq!(history[0].actor, "ops");
    assert!(store
        .corrections(Some("oxr"), None, None)
        .await
        .unwrap()
        .is_empty());
}

/// Review tables are append-only, enforced by the database, and a
/// corrected raw row keeps its first published value.
async fn review_tables_are_append_only(s: &SqlStore) {
    let raw_row: String = sqlx::query_scalar::<_, String>(
        "SELECT rate FROM fx_raw_rates WHERE provider = 'ecb' AND currency = 'USD' AND fixing_date = '2026-10-30'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(raw_row, "1.1172");
    for sql in [
        "UPDATE fx_quarantine SET rate = '1'",
        "DELETE FROM fx_quarantine",
        "UPDATE fx_rate_corrections SET new_rate = '1'",
        "DELETE FROM fx_rate_corrections",
    ] {
        assert!(s.pool().execute(sql).await.is_err(), "{sql}");
    }
}

async fn sqlite_memory() -> SqlStore {
    SqlStore::connect("sqlite::memory:", None).await.unwrap()
}

#[tokio::test]
async fn sqlite_store_passes_the_suite() {
    let s = sqlite_memory().await;
    assert_eq!(s.backend(), Backend::Sqlite);
    store_suite(Arc::new(s.clone())).await;
    // Append-only is enforced by the database itself.
    assert!(s
        .pool()
        .execute("UPDATE fx_audit SET detail = 'x'")
        .await
        .is_err());
    assert!(s.pool().execute("DELETE FROM fx_audit").await.is_err());
    assert!(s
        .pool()
        .execute("UPDATE fx_raw_rates SET rate = '1'")
        .await
        .is_err());
    review_tables_are_append_only(&s).await;
}

#[tokio::test]
async fn sqlite_file_store_reopens_with_its_data() {
    let dir = std::env::temp_dir().join(format!("fx-store-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("fx.db").display());
    {
        let s = SqlStore::connect(&url, None).await.unwrap();
        s.ingest("ecb", Format::EcbCsv, &small_batch("1.1172"), Utc::now())
            .await
            .unwrap();
        s.pool().close().await;
    }
    let s = SqlStore::connect(&url, None).await.unwrap();
    assert_eq!(s.count_rows("ecb").await.unwrap(), 4);
    s.pool().close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn postgres_store_passes_the_suite() {
    let Ok(url) = std::env::var("GATEHOUSE_TEST_POSTGRES_URL") else {
        eprintln!(
            "skipping postgres_store_passes_the_suite: GATEHOUSE_TEST_POSTGRES_URL is not set"
        );
        return;
    };
    let schema = format!("gh_fx_{}", uuid::Uuid::new_v4().simple());
    let admin = SqlStore::connect(&url, None).await.unwrap();
    admin
        .pool()
        .execute(format!("CREATE SCHEMA {schema}").as_str())
        .await
        .unwrap();
    let s = SqlStore::connect(&url, Some(&schema)).await.unwrap();
    assert_eq!(s.backend(), Backend::Postgres);
    store_suite(Arc::new(s.clone())).await;
    assert!(s
        .pool()
        .execute("UPDATE fx_audit SET detail = 'x'")
        .await
        .is_err());
    assert!(s.pool().execute("DELETE FROM fx_audit").await.is_err());
    review_tables_are_append_only(&s).await;
    // The bundled history imports into a fresh PostgreSQL schema too.
    let schema2 = format!("{schema}_boot");
    admin
        .pool()
        .execute(format!("CREATE SCHEMA {schema2}").as_str())
        .await
        .unwrap();
    let s2 = SqlStore::connect(&url, Some(&schema2)).await.unwrap();
    let e = FxEngine::open(Arc::new(s2.clone()), EngineConfig::default(), clock())
        .await
        .unwrap();
    assert!(matches!(e.bootstrap(), Bootstrap::ImportedBundled { rows, .. } if *rows > 150_000));
    assert_eq!(e.table().first_date(), Some(date("1999-01-04")));
    drop(e);
    s2.pool().close().await;
    admin
        .pool()
        .execute(format!("DROP SCHEMA {schema2} CASCADE").as_str())
        .await
        .unwrap();
    s.pool().close().await;
    admin
        .pool()
        .execute(format!("DROP SCHEMA {schema} CASCADE").as_str())
        .await
        .unwrap();
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 10, 30, 17, 0, 0).unwrap(),
    ))
}

async fn small_engine(clock: Arc<ManualClock>) -> FxEngine {
    let store: Arc<dyn RateStore> = Arc::new(sqlite_memory().await);
    let cfg = EngineConfig {
        import_bundled: false,
        ..Default::default()
    };
    let e = FxEngine::open(store, cfg, clock).await.unwrap();
    e.ingest("ecb", Format::EcbCsv, &small_batch("1.1172"))
        .await
        .unwrap();
    e
}

#[tokio::test]
async fn first_start_imports_the_bundled_history_then_reloads_it() {
    let dir = std::env::temp_dir().join(format!("fx-boot-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("fx.db").display());
    let store: Arc<dyn RateStore> = Arc::new(SqlStore::connect(&url, None).await.unwrap());
    let e = FxEngine::open(store.clone(), EngineConfig::default(), clock())
        .await
        .unwrap();
    match e.bootstrap() {
        Bootstrap::ImportedBundled { rows, millis } => {
            eprintln!("bundled ECB history: {rows} rows imported in {millis} ms");
            assert!(*rows > 150_000, "{rows}");
        }
        other => panic!("expected an import, got {other:?}"),
    }
    let first = e.table();
    drop(e);
    let e = FxEngine::open(store, EngineConfig::default(), clock())
        .await
        .unwrap();
    match e.bootstrap() {
        Bootstrap::Loaded { rows, millis } => eprintln!("reloaded {rows} rows in {millis} ms"),
        other => panic!("expected a reload, got {other:?}"),
    }
    let again = e.table();
    assert_eq!(first.days().len(), again.days().len());
    assert_eq!(first.latest().unwrap(), again.latest().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_corrupt_file_leaves_the_store_and_table_untouched() {
    let e = small_engine(clock()).await;
    let before = e.table();
    let rows = e.store().count_rows("ecb").await.unwrap();
    // Truncated mid-row: the good first rows must not be stored either.
    let truncated = b"Date,USD,JPY,\n2026-10-28,1.1133,175.86,\n2026-10-27,1.115,17";
    let err = e.ingest_bytes("ecb", None, truncated).await.unwrap_err();
    match err {
        IngestError::Parse(p) => assert_eq!(p.location, "line 3"),
        other => panic!("{other:?}"),
    }
    let zip = fx::bundled::ECB_HISTORY_ZIP;
    assert!(matches!(
        e.ingest_bytes("ecb", None, &zip[..zip.len() - 100]).await,
        Err(IngestError::Parse(_))
    ));
    assert!(matches!(
        e.ingest_bytes("ecb", None, b"hello").await,
        Err(IngestError::UnknownFormat)
    ));
    assert_eq!(e.store().count_rows("ecb").await.unwrap(), rows);
    assert_eq!(e.table().version, before.version);
}

#[tokio::test]
async fn consensus_leaves_out_an_outlier_but_keeps_its_value() {
    let e = small_engine(clock()).await;
    // OXR (USD base) agrees with the ECB; a third provider is 10% off on
    // JPY: beyond the consensus tolerance, within the plausibility bound.
    let oxr = br#"{"timestamp":1793379600,"base":"USD","rates":{"EUR":0.895095,"JPY":157.25}}"#;
    e.ingest_bytes("oxr", Some(Format::Oxr), oxr).await.unwrap();
    let bad =
        br#"{"amount":1.0,"base":"EUR","date":"2026-10-30","rates":{"USD":1.1170,"JPY":193.25}}"#;
    let r = e.ingest_bytes("frankfurter", None, bad).await.unwrap();
    assert!(r.is_clean(), "{r:?}");
    // A fourth provider off by 10x is not even stored as a source: it is
    // quarantined, beyond the bound against the others' median.
    let absurd = br#"{"amount":1.0,"base":"EUR","date":"2026-10-30","rates":{"JPY":1756.8}}"#;
    let r = e.ingest_bytes("fixer", None, absurd).await.unwrap();
    assert_eq!(r.quarantined.len(), 1, "{r:?}");
    assert_eq!(r.quarantined[0].row.currency, c("JPY"));
    assert_eq!(r.quarantined[0].row.line, Some(1));
    assert!(r.quarantined[0].reason.contains("other providers"), "{r:?}");
    assert_eq!(r.inserted, 0);
    let t = e.table();
    let day = t.latest().unwrap();
    let jpy = day.get(c("JPY")).unwrap();
    assert_eq!(jpy.sources.len(), 3);
    let flagged: Vec<_> = jpy
        .sources
        .iter()
        .filter(|s| s.outlier)
        .map(|s| &*s.provider)
        .collect();
    assert_eq!(flagged, vec!["frankfurter"]);
    // Median of ECB 175.68 and OXR 157.25/0.895095 = 175.679...; the outlier is out.
    assert!((jpy.mid - d("175.68")).abs() < d("0.01"), "{}", jpy.mid);
    assert_eq!(day.providers_of(c("JPY")).len(), 2);
    // USD: three close values (1.1170, 1/0.895095, 1.1172); the median wins.
    let usd = day.get(c("USD")).unwrap();
    assert!(usd.sources.iter().all(|s| !s.outlier));
    assert_eq!(usd.mid, fx::table::round_rate(d("1") / d("0.895095")));
    // Every raw value is still in the store.
    assert_eq!(
        e.store()
            .raw_values(date("2026-10-30"), c("JPY"))
            .await
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn quotes_lock_the_rate_until_they_expire() {
    let clock = clock();
    let e = small_engine(clock.clone()).await;
    let cal = FixingCalendar::default();
    let limits = StalenessLimits::default();
    let q = e
        .create_quote(
            c("USD"),
            c("JPY"),
            100,
            Some("gold"),
            Duration::minutes(10),
            &cal,
            &limits,
        )
        .await
        .unwrap();
    assert_eq!(q.fixing_date, date("2026-10-30"));
    assert!(q.customer_rate < q.mid_rate);
    // New rates arrive; the quote keeps its locked rate.
    e.ingest_bytes("ecb", None, b"Date,USD,JPY,\n2026-10-30,1.2,180,\n")
        .await
        .unwrap();
    clock.advance(Duration::minutes(9));
    let conv = e
        .convert_quote(&q.id, d("100.00"), RoundingMode::HalfEven)
        .await
        .unwrap();
    assert_eq!(
        conv.mid_amount,
        RoundingMode::HalfEven.round(d("100") * q.mid_rate, 0)
    );
    assert_eq!(
        conv.customer_amount.to_string(),
        RoundingMode::HalfEven
            .round(d("100") * q.customer_rate, 0)
            .to_string()
    );
    clock.advance(Duration::minutes(1));
    match e
        .convert_quote(&q.id, d("100.00"), RoundingMode::HalfEven)
        .await
    {
        Err(FxError::QuoteExpired { id, .. }) => assert_eq!(id, q.id),
        other => panic!("expected expiry, got {other:?}"),
    }
    assert!(matches!(
        e.convert_quote("q_nope", d("1"), RoundingMode::HalfEven)
            .await,
        Err(FxError::QuoteNotFound(_))
    ));
    let audit = e.store().audit_for_quote(&q.id).await.unwrap();
    let kinds: Vec<_> = audit.iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        vec![
            AuditKind::QuoteCreated,
            AuditKind::QuoteConverted,
            AuditKind::QuoteRefused
        ]
    );
    assert!(audit[1].detail.contains(&conv.customer_amount.to_string()));
}

#[tokio::test]
async fn a_failing_provider_does_not_stop_the_others() {
    let e = small_engine(clock()).await;
    let v = e.table().version;
    // OXR sends garbage: rejected, the ECB data keeps serving.
    assert!(e
        .ingest_bytes("oxr", Some(Format::Oxr), b"{\"timestamp\":")
        .await
        .is_err());
    assert_eq!(e.table().version, v);
    let oxr = br#"{"timestamp":1793466000,"base":"USD","rates":{"EUR":0.9,"JPY":158}}"#;
    e.ingest_bytes("oxr", None, oxr).await.unwrap();
    // OXR published 2026-10-31 (a Saturday); that day has only OXR values.
    let t = e.table();
    let latest = t.latest().unwrap();
    assert_eq!(latest.date, date("2026-10-31"));
    assert_eq!(latest.providers_of(c("JPY")), vec![Arc::<str>::from("oxr")]);
}
