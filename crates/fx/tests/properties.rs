//! Property tests: round trips and cross-rate consistency on real data.

use std::sync::{Arc, OnceLock};

use chrono::Utc;
use fx::consensus::ConsensusConfig;
use fx::query::{apply_rate, cross};
use fx::table::{RateBook, RateTable};
use fx::{CurrencyCode, RoundingMode};
use proptest::prelude::*;
use rust_decimal::Decimal;

fn table() -> Arc<RateTable> {
    static T: OnceLock<Arc<RateTable>> = OnceLock::new();
    T.get_or_init(|| {
        let batch = fx::bundled::ecb_history().unwrap();
        let mut book = RateBook::new(ConsensusConfig::default());
        book.apply("ecb", &batch, Utc::now()).0
    })
    .clone()
}

const CODES: &[&str] = &[
    "EUR", "USD", "JPY", "GBP", "CHF", "CZK", "HUF", "ISK", "KRW", "IDR", "ZAR", "MXN", "SEK",
    "PLN", "CNY",
];

fn unit(c: CurrencyCode) -> Decimal {
    Decimal::new(1, c.minor_units())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// A→B→A returns within one minor unit of A, or within the value of one
    /// minor unit of B when B's unit is worth more (the second rounding
    /// cannot be finer than B's own unit).
    #[test]
    fn round_trip_is_within_one_minor_unit(
        a in 0..CODES.len(), b in 0..CODES.len(),
        day in 5000usize..6900,
        cents in 1i64..1_000_000_000_000,
    ) {
        let t = table();
        let day = &t.days()[day];
        let (ca, cb) = (CurrencyCode::parse(CODES[a]).unwrap(), CurrencyCode::parse(CODES[b]).unwrap());
        let amount = Decimal::new(cents, 2).round_dp(ca.minor_units());
        prop_assume!(amount > Decimal::ZERO);
        let ab = cross(&t, day, ca, cb).unwrap();
        let ba = cross(&t, day, cb, ca).unwrap();
        let there = apply_rate(amount, ab, cb, RoundingMode::HalfEven).unwrap();
        let back = apply_rate(there, ba, ca, RoundingMode::HalfEven).unwrap();
        let b_unit_in_a = unit(cb) * ba;
        let tolerance = unit(ca).max(b_unit_in_a);
        prop_assert!((back - amount).abs() <= tolerance,
            "{amount} {ca} -> {there} {cb} -> {back} {ca} (tolerance {tolerance})");
    }

    /// A→B→C agrees with A→C to 1e-13 relative: the documented precision.
    #[test]
    fn cross_rates_are_consistent(
        a in 0..CODES.len(), b in 0..CODES.len(), c in 0..CODES.len(),
        day in 0usize..7000,
    ) {
        let t = table();
        let day = &t.days()[day];
        let codes = [a, b, c].map(|i| CurrencyCode::parse(CODES[i]).unwrap());
        prop_assume!(codes.iter().all(|x| day.mid(*x).is_some()));
        let ab = cross(&t, day, codes[0], codes[1]).unwrap();
        let bc = cross(&t, day, codes[1], codes[2]).unwrap();
        let ac = cross(&t, day, codes[0], codes[2]).unwrap();
        let rel = ((ab * bc - ac) / ac).abs();
        prop_assert!(rel <= Decimal::new(1, 13), "rel error {rel}");
    }

    /// Parsing never panics and accepts exactly what it prints.
    #[test]
    fn amount_parsing_round_trips(cents in 1i64..100_000_000_000_000) {
        let usd = CurrencyCode::USD;
        let v = Decimal::new(cents, 2);
        let parsed = fx::money::parse_amount(&v.to_string(), usd, &fx::AmountLimits::default()).unwrap();
        prop_assert_eq!(parsed, v);
    }

    #[test]
    fn amount_parsing_never_panics(s in "\\PC{0,60}") {
        let _ = fx::money::parse_amount(&s, CurrencyCode::USD, &fx::AmountLimits::default());
    }

    #[test]
    fn xml_and_json_parsing_never_panic(s in "[ -~\n]{0,300}") {
        for f in fx::Format::ALL {
            let _ = f.parse(s.as_bytes());
        }
        let _ = fx::Format::EcbXml.parse(format!("<Envelope><Cube><Cube time='2020-01-01'>{s}</Cube></Cube></Envelope>").as_bytes());
        let _ = fx::Format::Oxr.parse(format!("{{\"timestamp\":1,\"base\":\"USD\",\"rates\":{{{s}}}}}").as_bytes());
    }

    #[test]
    fn csv_parsing_never_panics(s in "[0-9A-Z,./\\n -]{0,200}") {
        let _ = fx::Format::EcbCsv.parse(format!("Date,USD,JPY,\n{s}").as_bytes());
    }
}
