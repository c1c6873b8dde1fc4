//! Currency conversion domain library for Gatehouse.
//!
//! Currencies, exact-decimal money, rounding, provider file parsers,
//! multi-provider consensus, the in-memory rate table, conversions, spreads,
//! staleness, storage and quotes. No HTTP here: `fx-service` is the adapter.
//!
//! Architecture invariant: no floating point anywhere on a money path.
//! Rates and amounts are `rust_decimal::Decimal` from the provider's text to
//! the client's JSON string.

pub mod admission;
pub mod bundled;
pub mod consensus;
pub mod currency;
pub mod engine;
pub mod error;
pub mod exact;
pub mod money;
pub mod parse;
pub mod plausibility;
pub mod query;
pub mod review;
pub mod spread;
pub mod staleness;
pub mod store;
pub mod table;
pub mod validity;

pub use currency::CurrencyCode;
pub use engine::{EngineConfig, FxEngine};
pub use error::FxError;
pub use money::{AmountLimits, RoundingMode};
pub use parse::{Batch, Fixing, Format, ParseError};
pub use store::{RateStore, SqlStore};
pub use table::RateTable;
