//! Reading a request: query parameters (unknown and repeated ones
//! refused), path segments, currencies, dates, the client tier and JSON
//! bodies, each failure a problem naming the parameter at fault.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use bytes::Bytes;
use chrono::NaiveDate;
use fx::{CurrencyCode, FxError, RoundingMode};
use gateway_core::{errors, Problem};
use http::HeaderMap;
use serde::Deserialize;

use crate::error;

use super::state::AppState;

/// Header a gateway may set with the client's tier (from its API key).
pub const TIER_HEADER: &str = "x-gatehouse-tier";

pub(super) struct Params(Vec<(String, String)>);

pub(super) type RawQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;

pub(super) type PathParam = Result<Path<String>, PathRejection>;

pub(super) fn path_param(p: PathParam, name: &str) -> Result<String, Problem> {
    p.map(|Path(v)| v).map_err(|e| {
        error::param(
            &errors::MALFORMED_PATH,
            name,
            format!("the `{name}` path segment cannot be decoded: {e}"),
        )
    })
}

impl Params {
    pub(super) fn new(q: RawQuery, allowed: &[&str]) -> Result<Params, Problem> {
        let Query(pairs) = q.map_err(|e| {
            Problem::new(
                &errors::MALFORMED_QUERY,
                format!("the query string cannot be decoded: {e}"),
            )
        })?;
        for (i, (k, _)) in pairs.iter().enumerate() {
            if !allowed.contains(&k.as_str()) {
                return Err(error::param(
                    &errors::UNKNOWN_PARAMETER,
                    k,
                    format!(
                        "unknown parameter `{}`; accepted: {}",
                        k.chars().take(40).collect::<String>(),
                        allowed.join(", ")
                    ),
                ));
            }
            if pairs[..i].iter().any(|(k2, _)| k2 == k) {
                return Err(error::param(
                    &errors::DUPLICATE_PARAMETER,
                    k,
                    format!("parameter `{k}` is given more than once"),
                ));
            }
        }
        Ok(Params(pairs))
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn required(&self, name: &str) -> Result<&str, Problem> {
        match self.get(name) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(error::param(
                &errors::MISSING_PARAMETER,
                name,
                format!("parameter `{name}` is required"),
            )),
        }
    }

    pub(super) fn currency(&self, name: &str) -> Result<Option<CurrencyCode>, Problem> {
        self.get(name).map(|v| currency(v, name)).transpose()
    }

    pub(super) fn symbols(&self) -> Result<Vec<CurrencyCode>, Problem> {
        let Some(v) = self.get("symbols") else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            out.push(currency(s, "symbols")?);
            if out.len() > 200 {
                return Err(error::param(
                    &errors::TOO_MANY_SYMBOLS,
                    "symbols",
                    "at most 200 symbols",
                ));
            }
        }
        Ok(out)
    }

    pub(super) fn date(&self, name: &str) -> Result<Option<NaiveDate>, Problem> {
        self.get(name).map(|v| date(v, name)).transpose()
    }

    pub(super) fn flag(&self, name: &str) -> Result<bool, Problem> {
        match self.get(name) {
            None => Ok(false),
            Some("true" | "1" | "") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(_) => Err(error::param(
                &errors::MALFORMED_FLAG,
                name,
                format!("`{name}` must be true or false"),
            )),
        }
    }

    pub(super) fn rounding(&self) -> Result<RoundingMode, Problem> {
        match self.get("rounding") {
            None => Ok(RoundingMode::default()),
            Some(v) => v
                .parse()
                .map_err(|e: String| error::param(&errors::UNKNOWN_ROUNDING, "rounding", e)),
        }
    }
}

pub(super) fn currency(v: &str, name: &str) -> Result<CurrencyCode, Problem> {
    CurrencyCode::parse(v).map_err(|e| error::fx(e.into(), Some(name)))
}

/// `YYYY-MM-DD` read directly; chrono's `parse_from_str` re-parses its
/// format string on every call. Anything else (other digit counts, signs,
/// invalid dates) goes to chrono, which decides as before.
pub(super) fn iso_date(v: &str) -> Option<NaiveDate> {
    let b = v.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
}

pub(super) fn date(v: &str, name: &str) -> Result<NaiveDate, Problem> {
    if let Some(d) = iso_date(v.trim()) {
        return Ok(d);
    }
    NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d").map_err(|_| {
        error::param(
            &errors::MALFORMED_DATE,
            name,
            format!(
                "`{}` is not a date; use YYYY-MM-DD",
                v.chars().take(32).collect::<String>()
            ),
        )
    })
}

pub(super) fn tier(
    state: &AppState,
    headers: &HeaderMap,
    given: Option<&str>,
) -> Result<Option<String>, Problem> {
    let from_header = headers.get(TIER_HEADER).and_then(|v| v.to_str().ok());
    let (t, name) = match (given, from_header) {
        (Some(t), _) => (t, "tier"),
        (None, Some(t)) => (t, TIER_HEADER),
        (None, None) => return Ok(None),
    };
    if !state.inner.cfg.spread.has_tier(t) {
        return Err(error::param(
            &errors::UNKNOWN_TIER,
            name,
            format!(
                "tier `{}` is not configured",
                t.chars().take(40).collect::<String>()
            ),
        ));
    }
    Ok(Some(t.to_string()))
}

/// Which parameter a not-quoted currency came from.
pub(super) fn param_for(
    e: &FxError,
    pairs: &[(CurrencyCode, &'static str)],
    default: &'static str,
) -> &'static str {
    if let FxError::NotQuoted { currency, .. } = e {
        if let Some((_, p)) = pairs.iter().find(|(c, _)| c == currency) {
            return p;
        }
    }
    default
}

/// A rates query's error, naming `base` or `symbols` as the parameter at
/// fault.
pub(super) fn rates_error(e: FxError, base: CurrencyCode, symbols: &[CurrencyCode]) -> Problem {
    let pairs: Vec<_> = std::iter::once((base, "base"))
        .chain(symbols.iter().map(|c| (*c, "symbols")))
        .collect();
    let param = param_for(&e, &pairs, "symbols");
    error::fx(e, Some(param))
}

pub(crate) fn parse_json<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Problem> {
    gateway_core::json::from_slice(body).map_err(|e| {
        Problem::new(
            &errors::MALFORMED_BODY,
            format!("request body is not valid: {e}"),
        )
        .with("parameter", "body")
    })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    #[test]
    fn iso_date_matches_chrono() {
        let mut t = Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 58).unwrap();
        for _ in 0..5_000 {
            let d = t.date_naive();
            let text = d.format("%Y-%m-%d").to_string();
            assert_eq!(iso_date(&text), Some(d));
            t += chrono::Duration::seconds(86_400 * 3 + 3_601);
        }
        for s in [
            "2020-02-30",
            "2021-02-29",
            "2020-13-01",
            "2020-00-10",
            "2020-1-2x",
            "+2020-01-01",
            "2020-01-1",
            "20200-01-01",
            "２020-01-01",
            "2020/01/01",
            "0000-01-01",
        ] {
            assert_eq!(
                iso_date(s).or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()),
                NaiveDate::parse_from_str(s, "%Y-%m-%d").ok(),
                "{s}"
            );
        }
    }
}
