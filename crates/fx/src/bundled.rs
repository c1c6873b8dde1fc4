//! The ECB's full reference-rate history, bundled into the binary.
//!
//! A fresh install therefore serves every rate since 1999 with no files and
//! no network: on first start the store imports this zip (see
//! [`crate::store`]). Source: the ECB's `eurofxref-hist.zip`, as published.

use crate::parse::{ecb, Batch, ParseError};

/// Provider name under which the bundled history is stored.
pub const PROVIDER: &str = "ecb";

/// The zip, byte for byte as the ECB serves it.
pub static ECB_HISTORY_ZIP: &[u8] = include_bytes!("../data/eurofxref-hist.zip");

/// Parses the bundled history.
pub fn ecb_history() -> Result<Batch, ParseError> {
    ecb::parse_zip(ECB_HISTORY_ZIP)
}
