//! Checks shared by the fuzz targets.

use fx::parse::{locate_date, MAX_RATE, MIN_RATE};
use fx::{Batch, Format};

/// What every parsed rate file must satisfy, whatever the bytes were: at
/// least one fixing, dates strictly increasing, each fixing non-empty with
/// currencies strictly increasing, never the base, and every rate within
/// the accepted bounds. Locating a fixing's line for a message must not
/// panic.
pub fn check_batch(format: Format, bytes: &[u8], batch: &Batch) {
    assert!(!batch.is_empty(), "{format}: an empty batch was accepted");
    for w in batch.fixings.windows(2) {
        assert!(w[0].date < w[1].date, "{format}: dates not increasing");
    }
    for f in &batch.fixings {
        assert!(!f.rates.is_empty(), "{format}: {} has no rates", f.date);
        for w in f.rates.windows(2) {
            assert!(
                w[0].0 < w[1].0,
                "{format}: {} currencies not increasing",
                f.date
            );
        }
        for (currency, rate) in &f.rates {
            assert_ne!(
                *currency, batch.base,
                "{format}: {} quotes the base",
                f.date
            );
            assert!(
                (MIN_RATE..=MAX_RATE).contains(rate),
                "{format}: {} {currency} = {rate} is out of bounds",
                f.date
            );
        }
        let _ = locate_date(format, bytes, f.date);
    }
}
