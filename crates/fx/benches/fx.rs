//! Benchmarks: one conversion, a 25-year daily series for ~30 currencies,
//! parsing the bundled history and importing it into SQLite.

use std::hint::black_box;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use fx::consensus::ConsensusConfig;
use fx::query::{self, ConvertRequest, Interval};
use fx::store::RateStore;
use fx::table::RateBook;
use fx::{CurrencyCode, Format, RoundingMode, SqlStore};
use rust_decimal::Decimal;

fn benches(c: &mut Criterion) {
    let batch = fx::bundled::ecb_history().unwrap();
    let mut book = RateBook::new(ConsensusConfig::default());
    let table = book.apply("ecb", &batch, Utc::now()).0;
    let day = table.latest().unwrap().clone();
    let req = ConvertRequest {
        from: CurrencyCode::USD,
        to: CurrencyCode::parse("JPY").unwrap(),
        amount: Decimal::from_str("1234.56").unwrap(),
        date: None,
        rounding: RoundingMode::HalfEven,
        spread_bps: 50,
    };
    c.bench_function("convert_usd_jpy", |b| {
        b.iter(|| query::convert_on(black_box(&table), black_box(&day), black_box(&req)).unwrap())
    });
    let start = NaiveDate::from_ymd_opt(2001, 1, 1).unwrap();
    let end = NaiveDate::from_ymd_opt(2025, 12, 31).unwrap();
    c.bench_function("series_25y_all_currencies_usd_base", |b| {
        b.iter(|| query::series(&table, CurrencyCode::USD, &[], start, end, Interval::Day).unwrap())
    });
    c.bench_function("series_25y_all_currencies_eur_base", |b| {
        b.iter(|| query::series(&table, CurrencyCode::EUR, &[], start, end, Interval::Day).unwrap())
    });
    // One new fixing on top of the full history: cost should follow the
    // day, not the ~7,000 days before it. Each iteration adds the next day.
    let mut growing = RateBook::new(ConsensusConfig::default());
    growing.apply("ecb", &batch, Utc::now());
    let mut next = table.latest().unwrap().date;
    c.bench_function("publish_one_day_on_full_history", |b| {
        b.iter(|| {
            next = next.succ_opt().unwrap();
            let day = fx::Batch {
                base: CurrencyCode::EUR,
                fixings: vec![fx::Fixing {
                    date: next,
                    rates: vec![(CurrencyCode::USD, Decimal::new(11502, 4))],
                }],
            };
            growing.apply("ecb", black_box(&day), Utc::now())
        })
    });
    c.bench_function("parse_bundled_history_zip", |b| {
        b.iter(|| fx::bundled::ecb_history().unwrap())
    });
    let mut g = c.benchmark_group("import");
    g.sample_size(10);
    let rt = tokio::runtime::Runtime::new().unwrap();
    g.bench_function("import_full_history_sqlite_memory", |b| {
        b.iter(|| {
            rt.block_on(async {
                let store = Arc::new(SqlStore::connect("sqlite::memory:", None).await.unwrap());
                store
                    .ingest("ecb", Format::EcbZip, &batch, Utc::now())
                    .await
                    .unwrap();
            })
        })
    });
    g.finish();
}

criterion_group!(fx_benches, benches);
criterion_main!(fx_benches);
