//! The answers' types: what each endpoint returns, with its OpenAPI
//! schema. The handlers serialize these, except the three hottest or
//! largest bodies (`/v1/convert`, `/v1/rates/...`, the series), which
//! `body.rs` writes by hand to the same shape; the document's test and
//! `.ci/contract.sh` check those against their schema.
//!
//! Every amount and rate is a string holding an exact decimal.

use std::collections::BTreeMap;

use fx::review::{CorrectionRecord, QuarantineRecord};
use fx::CurrencyCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::health::ProviderHealth;

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
pub(super) struct Health {
    /// Always `ok` while the process serves.
    #[schema(example = "ok")]
    pub status: &'static str,
    /// The newest fixing date held, if any.
    #[schema(value_type = Option<String>, format = Date, required = true)]
    pub latest_fixing: Option<String>,
    /// How many fixing days are held.
    pub days: usize,
}

/// One currency of `GET /v1/currencies`.
#[derive(Serialize, ToSchema)]
pub(super) struct Currency {
    pub code: CurrencyCode,
    pub name: &'static str,
    /// Decimal places of the currency's minor unit.
    pub minor_units: u32,
    #[schema(value_type = String, format = Date)]
    pub first_date: String,
    #[schema(value_type = String, format = Date)]
    pub last_date: String,
    /// Whether the latest fixing quotes it.
    pub quoted: bool,
}

/// `GET /v1/currencies`.
#[derive(Serialize, ToSchema)]
pub(super) struct Currencies {
    #[schema(value_type = String, format = Date)]
    pub latest_fixing: String,
    pub currencies: Vec<Currency>,
}

/// How the providers' values are reconciled.
#[derive(Serialize, ToSchema)]
pub(super) struct Consensus {
    #[schema(example = "median")]
    pub method: &'static str,
    /// Values further than this from the consensus are outliers.
    pub tolerance_bps: u32,
}

/// One provider's value of a currency, per euro.
#[derive(Serialize, ToSchema)]
pub(super) struct SourceValue {
    pub provider: String,
    #[schema(value_type = String, example = "1.0842")]
    pub per_eur: String,
    pub outlier: bool,
}

/// How a currency's consensus was reached (`sources=true`).
#[derive(Serialize, ToSchema)]
pub(super) struct CurrencySources {
    #[schema(value_type = String)]
    pub consensus_per_eur: String,
    pub disputed: bool,
    pub values: Vec<SourceValue>,
}

/// `GET /v1/rates/latest` and `GET /v1/rates/{date}` (written by
/// `body.rs` without `sources`).
#[derive(Serialize, ToSchema)]
pub(super) struct Rates {
    pub base: CurrencyCode,
    /// The fixing used.
    #[schema(value_type = String, format = Date)]
    pub date: String,
    /// The date asked for (a weekend falls back to the fixing before).
    #[schema(value_type = String, format = Date)]
    pub requested_date: String,
    /// Units of each currency per one `base`.
    #[schema(value_type = BTreeMap<String, String>)]
    pub rates: BTreeMap<String, String>,
    pub providers: Vec<String>,
    pub stale: bool,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub next_fixing_expected: Option<String>,
    /// With `sources=true`: each currency's values by provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<BTreeMap<String, CurrencySources>>,
    /// With `sources=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consensus: Option<Consensus>,
}

/// A period's value of a currency in a weekly or monthly series.
#[derive(Serialize, ToSchema)]
pub(super) struct PeriodValue {
    #[schema(value_type = String)]
    pub last: String,
    #[schema(value_type = String)]
    pub mean: String,
}

/// A currency's value in a series: a rate (daily) or a period's last and
/// mean (weekly, monthly).
// Only described: `body.rs` writes series by hand.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(super) enum SeriesValue {
    #[schema(value_type = String)]
    Day(String),
    Period(PeriodValue),
}

/// `GET /v1/rates?start=&end=` (written by `body.rs`).
#[derive(Serialize, ToSchema)]
pub(super) struct Series {
    pub base: CurrencyCode,
    #[schema(value_type = String, format = Date)]
    pub start: String,
    #[schema(value_type = String, format = Date)]
    pub end: String,
    #[schema(example = "day")]
    pub interval: String,
    /// Points by the date that starts their period; each maps currency
    /// codes to values, and weekly and monthly points also carry
    /// `_last_fixing`, the date of the period's last fixing.
    pub rates: BTreeMap<String, BTreeMap<String, SeriesValue>>,
}

/// An amount at a rate.
#[derive(Serialize, ToSchema)]
pub(super) struct Priced {
    #[schema(value_type = String)]
    pub amount: String,
    #[schema(value_type = String)]
    pub rate: String,
}

/// The customer side of `GET /v1/convert`: the rate with the tier's spread.
#[derive(Serialize, ToSchema)]
pub(super) struct CustomerPriced {
    #[schema(value_type = String)]
    pub amount: String,
    #[schema(value_type = String)]
    pub rate: String,
    pub spread_bps: u32,
    #[schema(required = true)]
    pub tier: Option<String>,
}

/// Where a conversion's rates came from.
#[derive(Serialize, ToSchema)]
pub(super) struct Provenance {
    pub disputed: bool,
    #[schema(value_type = String, format = Date)]
    pub fixing_date: String,
    pub providers: Vec<String>,
}

/// `GET /v1/convert` (written by `body.rs`).
#[derive(Serialize, ToSchema)]
pub(super) struct Conversion {
    pub from: CurrencyCode,
    pub to: CurrencyCode,
    #[schema(value_type = String)]
    pub amount: String,
    pub mid: Priced,
    pub customer: CustomerPriced,
    #[schema(value_type = String, format = Date)]
    pub date: String,
    #[schema(value_type = String, format = Date)]
    pub requested_date: String,
    /// Currencies crossed, `from` first.
    pub path: Vec<CurrencyCode>,
    pub precision: String,
    pub provenance: Provenance,
    pub rounding: fx::RoundingMode,
    pub stale: bool,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub next_fixing_expected: Option<String>,
}

/// A quote: a rate held until it expires.
#[derive(Serialize, ToSchema)]
pub(super) struct Quote {
    pub id: String,
    pub from: CurrencyCode,
    pub to: CurrencyCode,
    #[schema(value_type = String)]
    pub mid_rate: String,
    #[schema(value_type = String)]
    pub customer_rate: String,
    pub spread_bps: u32,
    #[schema(required = true)]
    pub tier: Option<String>,
    #[schema(value_type = String, format = Date)]
    pub fixing_date: String,
    pub providers: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: String,
    pub expired: bool,
}

/// The customer side of a quote's conversion.
#[derive(Serialize, ToSchema)]
pub(super) struct QuoteCustomer {
    #[schema(value_type = String)]
    pub rate: String,
    #[schema(value_type = String)]
    pub amount: String,
    pub spread_bps: u32,
}

/// `POST /v1/quotes/{id}/convert`.
#[derive(Serialize, ToSchema)]
pub(super) struct QuoteConversion {
    pub quote_id: String,
    pub from: CurrencyCode,
    pub to: CurrencyCode,
    #[schema(value_type = String)]
    pub amount: String,
    pub mid: Priced,
    pub customer: QuoteCustomer,
    pub rounding: fx::RoundingMode,
    #[schema(value_type = String, format = Date)]
    pub fixing_date: String,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: String,
    /// The conversion's entry in the audit log.
    pub audit_seq: i64,
}

/// `GET /v1/providers`.
#[derive(Serialize, ToSchema)]
pub(super) struct Providers {
    pub providers: Vec<ProviderHealth>,
    /// Providers with a value in the latest fixing.
    pub latest_fixing_providers: Vec<String>,
    pub consensus: Consensus,
}

/// One provider's value as published.
#[derive(Serialize, ToSchema)]
pub(super) struct RawValue {
    pub provider: String,
    pub base: CurrencyCode,
    #[schema(value_type = String)]
    pub rate: String,
}

/// `GET /v1/raw-rates`.
#[derive(Serialize, ToSchema)]
pub(super) struct RawRates {
    #[schema(value_type = String, format = Date)]
    pub date: String,
    pub currency: CurrencyCode,
    pub values: Vec<RawValue>,
}

/// `GET /v1/admin/quarantine`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Quarantine {
    pub quarantined: Vec<QuarantineRecord>,
}

/// `GET /v1/admin/corrections`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Corrections {
    pub corrections: Vec<CorrectionRecord>,
}

/// `POST /v1/admin/corrections`: 201 with the correction, or 200 with
/// `changed: false` when the value was already published.
#[derive(Serialize, ToSchema)]
pub(crate) struct Corrected {
    pub changed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correction: Option<CorrectionRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'static str>,
}
