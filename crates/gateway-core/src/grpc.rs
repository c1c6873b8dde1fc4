//! gRPC's view of the error table: what a gRPC client gets when the gateway
//! answers a gRPC request itself.
//!
//! A gRPC client does not read problem+json: it reads `grpc-status` and
//! `grpc-message`, and treats an HTTP status other than 200 as a transport
//! failure. So an HTTP/2 request whose `Content-Type` is
//! `application/grpc*` that the gateway refuses is answered as a
//! trailers-only gRPC response (HTTP 200, `grpc-status`, `grpc-message`, no
//! body), its status taken from [`code_for`]: the one mapping from the
//! [error table](crate::errors) to gRPC codes. A test checks that it covers every entry, and another that
//! `docs/grpc.md` lists the same mapping.

use std::time::Duration;

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::errors::ErrorCode;
use crate::Problem;

/// `Content-Type` of a gRPC response.
pub const CONTENT_TYPE: &str = "application/grpc";
/// The status trailer (or header, in a trailers-only response).
pub const GRPC_STATUS: &str = "grpc-status";
/// The message trailer: percent-encoded text.
pub const GRPC_MESSAGE: &str = "grpc-message";
/// The call's deadline, sent by the client.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";
/// The gateway's error code (an entry of the table) beside the gRPC status,
/// so a client can tell apart refusals that share a status.
pub const GATEHOUSE_ERROR: &str = "gatehouse-error";

/// A gRPC status code (`google.rpc.Code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl Code {
    /// Every code, in numeric order.
    pub const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The number sent in `grpc-status`.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The canonical name, e.g. `UNAVAILABLE`.
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

/// The gRPC status of an entry of the error table; `None` only for an
/// entry added to the table and not here, which the tests refuse.
pub fn code_for(entry: &ErrorCode) -> Option<Code> {
    use Code::*;
    Some(match entry.code {
        // gateway
        "route_not_found" => Unimplemented,
        "address_forbidden" | "cors_refused" | "client_cert_required" => PermissionDenied,
        "bad_host" | "bad_path" | "bad_grpc_timeout" | "malformed_request" => InvalidArgument,
        "body_too_large" | "request_line_too_long" | "headers_too_large" => ResourceExhausted,
        "overloaded"
        | "upstream_connect_failed"
        | "upstream_tls_failed"
        | "upstream_reset"
        | "no_healthy_upstream"
        | "circuit_open" => Unavailable,
        "unknown_upstream" | "upstream_protocol_error" => Internal,
        "upstream_connect_timeout" | "upstream_timeout" => DeadlineExceeded,
        "request_body_failed" => Cancelled,
        "unsupported_transfer_coding" | "version_not_supported" => Unimplemented,
        // keys
        "missing_credentials"
        | "malformed_api_key"
        | "unknown_api_key"
        | "expired_api_key"
        | "revoked_api_key"
        | "invalid_token"
        | "unknown_client_cert" => Unauthenticated,
        "key_scope_denied" | "token_scope_denied" => PermissionDenied,
        "auth_misconfigured" | "internal" => Internal,
        "signing_keys_unavailable" | "key_store_unavailable" => Unavailable,
        "rate_limited" | "quota_exhausted" | "ip_rate_limited" | "too_many_failed_attempts" => {
            ResourceExhausted
        }
        "invalid_request"
        | "invalid_scope"
        | "unknown_scope"
        | "unknown_plan"
        | "grace_too_long"
        | "grace_exceeds_expiry" => InvalidArgument,
        "key_not_found" | "consumer_not_found" => NotFound,
        "key_state_conflict" => FailedPrecondition,
        "consumer_exists" => AlreadyExists,
        // cache
        "cache_only_if_cached_miss" => Unavailable,
        "cache_purge_invalid" => InvalidArgument,
        // dark launch
        "shadow_not_found" => NotFound,
        "shadow_exists" => AlreadyExists,
        "shadow_invalid" | "shadow_bad_request" => InvalidArgument,
        "shadow_state_conflict" => FailedPrecondition,
        "shadow_store_unavailable" => Unavailable,
        // fx
        "method_not_allowed" => Unimplemented,
        "malformed_query"
        | "malformed_path"
        | "malformed_body"
        | "unknown_parameter"
        | "duplicate_parameter"
        | "missing_parameter"
        | "too_many_symbols"
        | "malformed_flag"
        | "malformed_date"
        | "malformed_quote_id"
        | "unknown_rounding"
        | "unknown_interval"
        | "unknown_tier"
        | "malformed_currency"
        | "malformed_amount"
        | "too_many_decimals"
        | "amount_not_positive"
        | "invalid_rate"
        | "missing_field"
        | "invalid_parameter" => InvalidArgument,
        "unknown_currency" | "quote_not_found" | "fixing_not_found" => NotFound,
        "currency_not_quoted" | "fixings_refused" => FailedPrecondition,
        "date_before_first_fixing"
        | "date_in_future"
        | "start_after_end"
        | "range_too_long"
        | "amount_too_large" => OutOfRange,
        "quote_expired" => FailedPrecondition,
        "rates_too_stale" | "no_rates_loaded" => Unavailable,
        "storage_error" => Internal,
        "admin_disabled" => PermissionDenied,
        // admin
        "admin_not_found" | "history_not_found" => NotFound,
        "admin_unauthorized" | "console_sign_in_failed" => Unauthenticated,
        "admin_read_only" | "admin_csrf_rejected" => PermissionDenied,
        "config_rejected" => InvalidArgument,
        _ => return None,
    })
}

/// Whether a request's headers say gRPC: its `Content-Type` is
/// `application/grpc`, or `application/grpc+proto` and the like. (gRPC
/// runs over HTTP/2; the caller checks the version.)
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.as_bytes();
            ct.len() >= CONTENT_TYPE.len()
                && ct[..CONTENT_TYPE.len()].eq_ignore_ascii_case(CONTENT_TYPE.as_bytes())
                && matches!(ct.get(CONTENT_TYPE.len()), None | Some(b'+' | b';'))
        })
}

/// Parses a `grpc-timeout` value: at most 8 digits and a unit, `H`, `M`,
/// `S`, `m` (milliseconds), `u` (microseconds) or `n` (nanoseconds).
pub fn parse_timeout(value: &HeaderValue) -> Result<Duration, String> {
    let text = value.to_str().unwrap_or_default();
    let bad = || {
        format!(
            "`{}` is not a gRPC timeout: 1 to 8 digits and a unit (H, M, S, m, u, n), e.g. `500m`",
            String::from_utf8_lossy(value.as_bytes())
        )
    };
    let Some((unit, digits)) = text.as_bytes().split_last() else {
        return Err(bad());
    };
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    // Eight digits fit in a u64 whatever the unit.
    let n: u64 = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or_else(bad)?;
    Ok(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(bad()),
    })
}

/// Bytes that `grpc-message` must percent-encode: anything outside
/// printable ASCII, and `%` itself.
const MESSAGE_ESCAPES: &AsciiSet = &CONTROLS.add(b'%');

/// A problem as a trailers-only gRPC response: HTTP 200, the entry's gRPC
/// status and the problem's detail as `grpc-message`, no body.
pub fn trailers_only(problem: &Problem) -> Response<crate::Body> {
    // The tests hold every entry to a mapping; UNKNOWN is what gRPC itself
    // uses for a status it cannot name.
    let code = code_for(problem.error).unwrap_or(Code::Unknown);
    let message = utf8_percent_encode(&problem.detail, MESSAGE_ESCAPES).to_string();
    let mut res = Response::new(crate::body::empty());
    *res.status_mut() = StatusCode::OK;
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    headers.insert(GRPC_STATUS, HeaderValue::from(u16::from(code.as_u8())));
    if let Ok(message) = HeaderValue::try_from(message) {
        headers.insert(GRPC_MESSAGE, message);
    }
    headers.insert(
        GATEHOUSE_ERROR,
        HeaderValue::from_static(problem.error.code),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::{self, ALL};

    #[test]
    fn every_entry_of_the_error_table_has_a_grpc_status() {
        let missing: Vec<&str> = ALL
            .iter()
            .filter(|e| code_for(e).is_none())
            .map(|e| e.code)
            .collect();
        assert!(
            missing.is_empty(),
            "no gRPC status for {missing:?}: add them to grpc::code_for and docs/grpc.md"
        );
        assert!(ALL.iter().all(|e| code_for(e) != Some(Code::Ok)));
    }

    #[test]
    fn statuses_of_the_refusals_grpc_clients_meet_most() {
        for (entry, code) in [
            (&errors::NO_HEALTHY_UPSTREAM, Code::Unavailable),
            (&errors::UPSTREAM_CONNECT_FAILED, Code::Unavailable),
            (&errors::UPSTREAM_TIMEOUT, Code::DeadlineExceeded),
            (&errors::MISSING_CREDENTIALS, Code::Unauthenticated),
            (&errors::UNKNOWN_API_KEY, Code::Unauthenticated),
            (&errors::KEY_SCOPE_DENIED, Code::PermissionDenied),
            (&errors::RATE_LIMITED, Code::ResourceExhausted),
            (&errors::QUOTA_EXHAUSTED, Code::ResourceExhausted),
            (&errors::ROUTE_NOT_FOUND, Code::Unimplemented),
        ] {
            assert_eq!(code_for(entry), Some(code), "{}", entry.code);
        }
    }

    #[test]
    fn grpc_content_types() {
        let check = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            is_grpc(&h)
        };
        assert!(check("application/grpc"));
        assert!(check("application/grpc+proto"));
        assert!(check("Application/GRPC; charset=utf-8"));
        assert!(!check("application/grpc-web"));
        assert!(!check("application/grpcx"));
        assert!(!check("application/json"));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn grpc_timeouts() {
        let parse = |v: &str| parse_timeout(&HeaderValue::from_str(v).unwrap());
        assert_eq!(parse("1H"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("2M"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("3S"), Ok(Duration::from_secs(3)));
        assert_eq!(parse("250m"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("99999999u"), Ok(Duration::from_micros(99_999_999)));
        assert_eq!(parse("7n"), Ok(Duration::from_nanos(7)));
        for bad in ["", "S", "123456789S", "1s", "1.5S", "-1S", "10"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn a_refusal_is_a_trailers_only_response() {
        let problem = Problem::new(&errors::RATE_LIMITED, "100% of the rate, \"over\" ✓");
        let res = trailers_only(&problem);
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/grpc");
        assert_eq!(res.headers()[GRPC_STATUS], "8");
        assert_eq!(
            res.headers()[GRPC_MESSAGE],
            "100%25 of the rate, \"over\" %E2%9C%93"
        );
        assert_eq!(res.headers()[GATEHOUSE_ERROR], "rate_limited");
        assert!(http_body::Body::is_end_stream(res.body()));
    }
}

/// `docs/grpc.md` and [`code_for`] agree, both ways: every row of its
/// status table names an entry with the status `code_for` gives, and every
/// entry is listed.
#[cfg(test)]
mod doc_tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::errors::ALL;

    #[test]
    fn docs_list_the_grpc_status_of_every_error_code() {
        let md = include_str!("../../../docs/grpc.md");
        let mut documented = BTreeMap::new();
        let mut in_table = false;
        for line in md.lines() {
            if line.starts_with("## ") {
                in_table = line.trim() == "## Status mapping";
                continue;
            }
            if !in_table {
                continue;
            }
            // `| UNAVAILABLE (14) | `a`, `b` |`
            let Some(row) = line.strip_prefix("| ") else {
                continue;
            };
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let Some(code) = Code::ALL
                .iter()
                .find(|c| cells[0] == format!("{} ({})", c.name(), c.as_u8()))
            else {
                continue;
            };
            for name in cells[1].split(',') {
                let name = name.trim().trim_matches('`');
                assert!(
                    documented.insert(name.to_string(), *code).is_none(),
                    "docs/grpc.md lists {name} twice"
                );
            }
        }
        for e in ALL {
            assert_eq!(
                documented.get(e.code).copied(),
                code_for(e),
                "{}: docs/grpc.md and grpc::code_for disagree",
                e.code
            );
        }
        for name in documented.keys() {
            assert!(
                crate::errors::lookup(name).is_some(),
                "docs/grpc.md lists {name}, which the error table does not have"
            );
        }
    }
}
