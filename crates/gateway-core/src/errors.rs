//! The error-code table: every `code` a client can receive in a
//! problem+json body, with its HTTP status, its title and the system that
//! owns it.
//!
//! [`Problem::new`](crate::Problem::new) takes an entry of this table, so a
//! code that is not here cannot be sent; error types name their entry
//! through [`ToProblem::code`](crate::ToProblem::code). `docs/errors.md`
//! lists the same codes with the same statuses, and a test checks both
//! ways.
//!
//! A code is stable once published: rename nothing here. A code may have
//! two entries only when it is sent with two statuses (`invalid_rate`);
//! each entry is one (code, status) pair.

use std::fmt;

use http::StatusCode;

/// The system that owns a code: where it is sent from and documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum System {
    /// The request pipeline: routing, limits of the gateway itself,
    /// forwarding to upstream clusters.
    Gateway,
    /// API keys, JWTs, rate limits and quotas, the keys admin API.
    Keys,
    /// The response cache and its purge API.
    Cache,
    /// Dark launches (mirrored traffic) and their admin API.
    DarkLaunch,
    /// The currency service, its API and its admin endpoints.
    Fx,
    /// The gateway's admin API.
    Admin,
}

impl System {
    /// Every system, in the order `docs/errors.md` lists them.
    pub const ALL: [System; 6] = [
        System::Gateway,
        System::Keys,
        System::Cache,
        System::DarkLaunch,
        System::Fx,
        System::Admin,
    ];

    /// The name used in `docs/errors.md` headings.
    pub fn as_str(self) -> &'static str {
        match self {
            System::Gateway => "gateway",
            System::Keys => "keys",
            System::Cache => "cache",
            System::DarkLaunch => "dark launch",
            System::Fx => "fx",
            System::Admin => "admin",
        }
    }
}

/// One entry of the table.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ErrorCode {
    /// The stable machine-readable code, e.g. `route_not_found`.
    pub code: &'static str,
    /// The HTTP status it is sent with.
    pub status: StatusCode,
    /// A short summary, the same for every occurrence (problem `title`).
    pub title: &'static str,
    /// The system that sends and documents it.
    pub system: System,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

/// Compares the code, so tests can check what clients see:
/// `assert_eq!(err.code(), "key_not_found")`.
impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.code == other
    }
}

/// Looks a code up (the first entry when a code has two statuses).
pub fn lookup(code: &str) -> Option<&'static ErrorCode> {
    ALL.iter().copied().find(|e| e.code == code)
}

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $name:ident = ($code:literal, $status:ident, $title:literal, $system:ident); )+) => {
        $(
            $(#[$doc])*
            pub static $name: ErrorCode = ErrorCode {
                code: $code,
                status: StatusCode::$status,
                title: $title,
                system: System::$system,
            };
        )+
        /// Every entry, in table order.
        pub static ALL: &[&ErrorCode] = &[$(&$name),+];
    };
}

error_codes! {
    // === gateway ===
    /// No route matches host, path, method and headers (also the fx
    /// service's answer to an unknown endpoint).
    ROUTE_NOT_FOUND = ("route_not_found", NOT_FOUND, "Route not found", Gateway);
    /// The client address is denied, or not in an allow list (`ip_rules`).
    ADDRESS_FORBIDDEN = ("address_forbidden", FORBIDDEN, "Client address not allowed", Gateway);
    /// A CORS preflight asked for an origin, method or header the route's
    /// `cors` does not allow.
    CORS_REFUSED = ("cors_refused", FORBIDDEN, "Cross-origin request refused", Gateway);
    /// The route requires a verified TLS client certificate (`client_cert`)
    /// and the connection presented none, or not an accepted one.
    CLIENT_CERT_REQUIRED = ("client_cert_required", FORBIDDEN, "Client certificate required", Gateway);
    /// The request's authority is ambiguous or invalid.
    BAD_HOST = ("bad_host", BAD_REQUEST, "Ambiguous or invalid host", Gateway);
    /// The path climbs above the root, or a rewrite made an invalid URI.
    BAD_PATH = ("bad_path", BAD_REQUEST, "Invalid path", Gateway);
    /// A gRPC call's `grpc-timeout` is not 1 to 8 digits and a unit.
    BAD_GRPC_TIMEOUT = ("bad_grpc_timeout", BAD_REQUEST, "Invalid gRPC timeout", Gateway);
    /// The request body exceeds the route's `max_body`.
    BODY_TOO_LARGE = ("body_too_large", PAYLOAD_TOO_LARGE, "Request body too large", Gateway);
    /// The gateway is at `max_in_flight`, or a cluster's queue is full.
    OVERLOADED = ("overloaded", SERVICE_UNAVAILABLE, "Overloaded", Gateway);
    /// The route names a cluster that is not configured.
    UNKNOWN_UPSTREAM = ("unknown_upstream", BAD_GATEWAY, "Unknown upstream", Gateway);
    /// The upstream refused or could not be reached.
    UPSTREAM_CONNECT_FAILED = ("upstream_connect_failed", BAD_GATEWAY, "Upstream connection failed", Gateway);
    /// Connecting to the upstream took longer than `connect_timeout`.
    UPSTREAM_CONNECT_TIMEOUT = ("upstream_connect_timeout", GATEWAY_TIMEOUT, "Upstream connection timed out", Gateway);
    /// The TLS handshake with the upstream failed.
    UPSTREAM_TLS_FAILED = ("upstream_tls_failed", BAD_GATEWAY, "Upstream TLS handshake failed", Gateway);
    /// No response headers within the route's timeout.
    UPSTREAM_TIMEOUT = ("upstream_timeout", GATEWAY_TIMEOUT, "Upstream timed out", Gateway);
    /// The upstream closed the connection before a complete response.
    UPSTREAM_RESET = ("upstream_reset", BAD_GATEWAY, "Upstream connection reset", Gateway);
    /// The upstream sent something that is not valid HTTP.
    UPSTREAM_PROTOCOL_ERROR = ("upstream_protocol_error", BAD_GATEWAY, "Upstream protocol error", Gateway);
    /// Every target of the cluster is unhealthy or ejected.
    NO_HEALTHY_UPSTREAM = ("no_healthy_upstream", SERVICE_UNAVAILABLE, "No healthy upstream", Gateway);
    /// The cluster's circuit breaker is open.
    CIRCUIT_OPEN = ("circuit_open", SERVICE_UNAVAILABLE, "Circuit open", Gateway);
    /// Reading the client's request body failed while forwarding it.
    REQUEST_BODY_FAILED = ("request_body_failed", BAD_REQUEST, "Request body failed", Gateway);
    /// The HTTP/1.1 request is malformed or its framing is ambiguous
    /// (answered by the HTTP/1.1 engine, which then closes the connection).
    MALFORMED_REQUEST = ("malformed_request", BAD_REQUEST, "Malformed request", Gateway);
    /// The request line is longer than `max_request_line`.
    REQUEST_LINE_TOO_LONG = ("request_line_too_long", URI_TOO_LONG, "Request line too long", Gateway);
    /// The request head is larger than `max_request_head`, or has more
    /// than `max_request_headers` fields.
    HEADERS_TOO_LARGE = ("headers_too_large", REQUEST_HEADER_FIELDS_TOO_LARGE, "Request headers too large", Gateway);
    /// A `Transfer-Encoding` other than `chunked`.
    UNSUPPORTED_TRANSFER_CODING = ("unsupported_transfer_coding", NOT_IMPLEMENTED, "Unsupported transfer coding", Gateway);
    /// An HTTP version other than 1.0 and 1.1 on an HTTP/1 connection.
    VERSION_NOT_SUPPORTED = ("version_not_supported", HTTP_VERSION_NOT_SUPPORTED, "HTTP version not supported", Gateway);

    // === keys ===
    /// No credential on a route that needs one.
    MISSING_CREDENTIALS = ("missing_credentials", UNAUTHORIZED, "Credentials missing", Keys);
    /// The API key is not well formed (prefix, length, checksum).
    MALFORMED_API_KEY = ("malformed_api_key", UNAUTHORIZED, "Malformed API key", Keys);
    /// The API key is well formed but unknown.
    UNKNOWN_API_KEY = ("unknown_api_key", UNAUTHORIZED, "Unknown API key", Keys);
    /// The API key has expired (or its grace period ended).
    EXPIRED_API_KEY = ("expired_api_key", UNAUTHORIZED, "API key expired", Keys);
    /// The API key has been revoked.
    REVOKED_API_KEY = ("revoked_api_key", UNAUTHORIZED, "API key revoked", Keys);
    /// The verified client certificate names no consumer.
    UNKNOWN_CLIENT_CERT = ("unknown_client_cert", UNAUTHORIZED, "Client certificate names no consumer", Keys);
    /// The JWT was refused, or the route accepts only JWTs.
    INVALID_TOKEN = ("invalid_token", UNAUTHORIZED, "Invalid token", Keys);
    /// The key does not hold the scopes the route needs.
    KEY_SCOPE_DENIED = ("key_scope_denied", FORBIDDEN, "Outside the key's scopes", Keys);
    /// The token does not hold the scopes the route needs.
    TOKEN_SCOPE_DENIED = ("token_scope_denied", FORBIDDEN, "Outside the token's scopes", Keys);
    /// The route's authentication cannot work (e.g. unreadable JWT key).
    AUTH_MISCONFIGURED = ("auth_misconfigured", INTERNAL_SERVER_ERROR, "Authentication misconfigured", Keys);
    /// The route's identity provider (`jwks_url`, `oidc_issuer`) has never
    /// answered with its signing keys.
    SIGNING_KEYS_UNAVAILABLE = ("signing_keys_unavailable", SERVICE_UNAVAILABLE, "Signing keys unavailable", Keys);
    /// The consumer's rate limit is exceeded.
    RATE_LIMITED = ("rate_limited", TOO_MANY_REQUESTS, "Rate limit exceeded", Keys);
    /// The consumer's quota is used up.
    QUOTA_EXHAUSTED = ("quota_exhausted", TOO_MANY_REQUESTS, "Quota exhausted", Keys);
    /// Too many requests without credentials from one address.
    IP_RATE_LIMITED = ("ip_rate_limited", TOO_MANY_REQUESTS, "Too many anonymous requests", Keys);
    /// Too many failed authentications from one address.
    TOO_MANY_FAILED_ATTEMPTS = ("too_many_failed_attempts", TOO_MANY_REQUESTS, "Too many failed attempts", Keys);
    /// A keys admin request is malformed (body, query or a field).
    INVALID_REQUEST = ("invalid_request", BAD_REQUEST, "Invalid request", Keys);
    /// A scope is not well formed.
    INVALID_SCOPE = ("invalid_scope", BAD_REQUEST, "Invalid scope", Keys);
    /// A scope names no route, tag or declared custom scope.
    UNKNOWN_SCOPE = ("unknown_scope", BAD_REQUEST, "Unknown scope", Keys);
    /// A plan name is not configured.
    UNKNOWN_PLAN = ("unknown_plan", BAD_REQUEST, "Unknown plan", Keys);
    /// The requested grace is longer than `max_grace`.
    GRACE_TOO_LONG = ("grace_too_long", BAD_REQUEST, "Grace too long", Keys);
    /// The grace would outlive the key's own expiry.
    GRACE_EXCEEDS_EXPIRY = ("grace_exceeds_expiry", BAD_REQUEST, "Grace exceeds expiry", Keys);
    /// No such key.
    KEY_NOT_FOUND = ("key_not_found", NOT_FOUND, "Key not found", Keys);
    /// No such consumer.
    CONSUMER_NOT_FOUND = ("consumer_not_found", NOT_FOUND, "Consumer not found", Keys);
    /// The key's state does not allow the operation.
    KEY_STATE_CONFLICT = ("key_state_conflict", CONFLICT, "Key state conflict", Keys);
    /// A consumer with that name exists.
    CONSUMER_EXISTS = ("consumer_exists", CONFLICT, "Consumer exists", Keys);
    /// The key store is unavailable.
    KEY_STORE_UNAVAILABLE = ("key_store_unavailable", SERVICE_UNAVAILABLE, "Key store unavailable", Keys);
    /// A keys admin answer could not be produced.
    INTERNAL = ("internal", INTERNAL_SERVER_ERROR, "Internal error", Keys);

    // === cache ===
    /// `only-if-cached` and nothing usable is stored.
    CACHE_ONLY_IF_CACHED_MISS = ("cache_only_if_cached_miss", GATEWAY_TIMEOUT, "Not in cache", Cache);
    /// A purge request is malformed.
    CACHE_PURGE_INVALID = ("cache_purge_invalid", BAD_REQUEST, "Invalid purge", Cache);

    // === dark launch ===
    /// No such dark launch.
    SHADOW_NOT_FOUND = ("shadow_not_found", NOT_FOUND, "Dark launch not found", DarkLaunch);
    /// A dark launch of that name exists.
    SHADOW_EXISTS = ("shadow_exists", CONFLICT, "Dark launch exists", DarkLaunch);
    /// The launch definition is invalid (`issues` lists why).
    SHADOW_INVALID = ("shadow_invalid", UNPROCESSABLE_ENTITY, "Invalid dark launch", DarkLaunch);
    /// The transition is not allowed from the launch's state.
    SHADOW_STATE_CONFLICT = ("shadow_state_conflict", CONFLICT, "Dark launch state conflict", DarkLaunch);
    /// The request body is not a launch definition.
    SHADOW_BAD_REQUEST = ("shadow_bad_request", BAD_REQUEST, "Malformed dark launch request", DarkLaunch);
    /// The dark-launch store is unavailable.
    SHADOW_STORE_UNAVAILABLE = ("shadow_store_unavailable", SERVICE_UNAVAILABLE, "Dark-launch store unavailable", DarkLaunch);

    // === fx ===
    /// The endpoint does not accept that method.
    METHOD_NOT_ALLOWED = ("method_not_allowed", METHOD_NOT_ALLOWED, "Method not allowed", Fx);
    /// The query string cannot be decoded.
    MALFORMED_QUERY = ("malformed_query", BAD_REQUEST, "Malformed query", Fx);
    /// A path segment cannot be decoded.
    MALFORMED_PATH = ("malformed_path", BAD_REQUEST, "Malformed path", Fx);
    /// The request body is not valid JSON of the expected shape.
    MALFORMED_BODY = ("malformed_body", BAD_REQUEST, "Malformed body", Fx);
    /// A parameter the endpoint does not accept.
    UNKNOWN_PARAMETER = ("unknown_parameter", BAD_REQUEST, "Unknown parameter", Fx);
    /// A parameter given more than once.
    DUPLICATE_PARAMETER = ("duplicate_parameter", BAD_REQUEST, "Duplicate parameter", Fx);
    /// A required parameter is missing.
    MISSING_PARAMETER = ("missing_parameter", BAD_REQUEST, "Missing parameter", Fx);
    /// More than 200 symbols.
    TOO_MANY_SYMBOLS = ("too_many_symbols", BAD_REQUEST, "Too many symbols", Fx);
    /// A flag is not `true` or `false`.
    MALFORMED_FLAG = ("malformed_flag", BAD_REQUEST, "Malformed flag", Fx);
    /// A date is not `YYYY-MM-DD`.
    MALFORMED_DATE = ("malformed_date", BAD_REQUEST, "Malformed date", Fx);
    /// A quote id is not letters, digits and `_`.
    MALFORMED_QUOTE_ID = ("malformed_quote_id", BAD_REQUEST, "Malformed quote id", Fx);
    /// Not a rounding mode.
    UNKNOWN_ROUNDING = ("unknown_rounding", BAD_REQUEST, "Unknown rounding mode", Fx);
    /// Not `day`, `week` or `month`.
    UNKNOWN_INTERVAL = ("unknown_interval", BAD_REQUEST, "Unknown interval", Fx);
    /// The tier is not configured.
    UNKNOWN_TIER = ("unknown_tier", UNPROCESSABLE_ENTITY, "Unknown tier", Fx);
    /// Not three letters.
    MALFORMED_CURRENCY = ("malformed_currency", BAD_REQUEST, "Malformed currency", Fx);
    /// Not an ISO 4217 code Gatehouse knows.
    UNKNOWN_CURRENCY = ("unknown_currency", NOT_FOUND, "Unknown currency", Fx);
    /// The currency is absent from the fixing used.
    CURRENCY_NOT_QUOTED = ("currency_not_quoted", UNPROCESSABLE_ENTITY, "Currency not quoted", Fx);
    /// The date precedes all data.
    DATE_BEFORE_FIRST_FIXING = ("date_before_first_fixing", UNPROCESSABLE_ENTITY, "Date before first fixing", Fx);
    /// The date is after today.
    DATE_IN_FUTURE = ("date_in_future", UNPROCESSABLE_ENTITY, "Date in the future", Fx);
    /// A series starts after it ends.
    START_AFTER_END = ("start_after_end", UNPROCESSABLE_ENTITY, "Start after end", Fx);
    /// A series longer than `max_range_days`.
    RANGE_TOO_LONG = ("range_too_long", UNPROCESSABLE_ENTITY, "Range too long", Fx);
    /// Not a plain decimal amount.
    MALFORMED_AMOUNT = ("malformed_amount", BAD_REQUEST, "Malformed amount", Fx);
    /// More decimals than the currency's minor units.
    TOO_MANY_DECIMALS = ("too_many_decimals", UNPROCESSABLE_ENTITY, "Too many decimals", Fx);
    /// More integer digits than allowed, or a result out of range.
    AMOUNT_TOO_LARGE = ("amount_too_large", UNPROCESSABLE_ENTITY, "Amount too large", Fx);
    /// Zero or negative.
    AMOUNT_NOT_POSITIVE = ("amount_not_positive", UNPROCESSABLE_ENTITY, "Amount not positive", Fx);
    /// No such quote.
    QUOTE_NOT_FOUND = ("quote_not_found", NOT_FOUND, "Quote not found", Fx);
    /// The quote has expired.
    QUOTE_EXPIRED = ("quote_expired", GONE, "Quote expired", Fx);
    /// The newest usable rate is beyond the hard staleness limit.
    RATES_TOO_STALE = ("rates_too_stale", SERVICE_UNAVAILABLE, "Rates too stale", Fx);
    /// No rates are loaded.
    NO_RATES_LOADED = ("no_rates_loaded", SERVICE_UNAVAILABLE, "No rates loaded", Fx);
    /// The fx store failed (details are logged, not sent).
    STORAGE_ERROR = ("storage_error", INTERNAL_SERVER_ERROR, "Storage error", Fx);
    /// The fx admin endpoints are disabled (no admin token).
    ADMIN_DISABLED = ("admin_disabled", FORBIDDEN, "Admin endpoints disabled", Fx);
    /// A correction's `rate` is not a decimal.
    INVALID_RATE_SYNTAX = ("invalid_rate", BAD_REQUEST, "Invalid rate", Fx);
    /// A value cannot be a rate (zero, negative, absurd magnitude).
    INVALID_RATE = ("invalid_rate", UNPROCESSABLE_ENTITY, "Invalid rate", Fx);
    /// Fixings dated in the future or before their provider or currency
    /// existed.
    FIXINGS_REFUSED = ("fixings_refused", UNPROCESSABLE_ENTITY, "Fixings refused", Fx);
    /// Nothing is stored for that provider, currency and date.
    FIXING_NOT_FOUND = ("fixing_not_found", NOT_FOUND, "Fixing not found", Fx);
    /// A correction is missing `provider`, `actor` or `reason`.
    MISSING_FIELD = ("missing_field", BAD_REQUEST, "Missing field", Fx);
    /// A bad `provider=` or `date=` on the corrections list.
    INVALID_PARAMETER = ("invalid_parameter", BAD_REQUEST, "Invalid parameter", Fx);

    // === admin ===
    /// No such admin endpoint.
    ADMIN_NOT_FOUND = ("admin_not_found", NOT_FOUND, "Admin endpoint not found", Admin);
    /// No or wrong admin bearer token (the gateway's and the fx service's
    /// admin endpoints).
    ADMIN_UNAUTHORIZED = ("admin_unauthorized", UNAUTHORIZED, "Admin token required", Admin);
    /// The viewer token (or a viewer's console session) asked to change
    /// something: viewers can read everything and change nothing.
    ADMIN_READ_ONLY = ("admin_read_only", FORBIDDEN, "Read-only access", Admin);
    /// A state-changing admin call from a console session without the
    /// session's CSRF token, or from another site (`Origin`,
    /// `Sec-Fetch-Site`).
    ADMIN_CSRF_REJECTED = ("admin_csrf_rejected", FORBIDDEN, "Cross-site request refused", Admin);
    /// `POST /v1/console/session` with a token that is neither the admin
    /// nor the viewer token.
    CONSOLE_SIGN_IN_FAILED = ("console_sign_in_failed", UNAUTHORIZED, "Sign-in failed", Admin);
    /// `GET /v1/history` for a series or window that does not exist.
    HISTORY_NOT_FOUND = ("history_not_found", NOT_FOUND, "No such history series", Admin);
    /// `POST /v1/config/reload` with a config that does not build.
    CONFIG_REJECTED = ("config_rejected", UNPROCESSABLE_ENTITY, "Config rejected", Admin);
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn each_code_and_status_pair_is_listed_once_and_well_formed() {
        let mut pairs = HashSet::new();
        for e in ALL {
            assert!(pairs.insert((e.code, e.status)), "{} listed twice", e.code);
            assert!(
                !e.code.is_empty()
                    && e.code
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                e.code
            );
            assert!(
                e.status.is_client_error() || e.status.is_server_error(),
                "{}",
                e.code
            );
            assert!(!e.title.is_empty() && !e.title.ends_with('.'), "{}", e.code);
        }
        // A code sent with two statuses keeps one title and one owner.
        for e in ALL {
            let first = lookup(e.code).unwrap();
            assert_eq!(
                (first.title, first.system),
                (e.title, e.system),
                "{}",
                e.code
            );
        }
        assert_eq!(lookup("route_not_found"), Some(&ROUTE_NOT_FOUND));
        assert_eq!(lookup("nope"), None);
        assert_eq!(&ROUTE_NOT_FOUND, "route_not_found");
    }
}

/// `docs/errors.md` and the table agree, both ways: every documented row
/// is an entry with the same status, title and system, and every entry is
/// documented.
#[cfg(test)]
mod doc_tests {
    use std::collections::BTreeSet;

    use super::*;

    /// `(system heading, code, status, title)` of every row of the doc's
    /// code tables.
    fn documented() -> Vec<(String, String, u16, String)> {
        let md = include_str!("../../../docs/errors.md");
        let mut section = String::new();
        let mut rows = Vec::new();
        for line in md.lines() {
            if let Some(h) = line.strip_prefix("## ") {
                section = h.trim().to_string();
                continue;
            }
            let Some(row) = line.strip_prefix("| `") else {
                continue;
            };
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let code = cells[0].trim_end_matches('`');
            let status = cells[1]
                .parse()
                .unwrap_or_else(|_| panic!("{code}: status `{}` is not one number", cells[1]));
            rows.push((
                section.clone(),
                code.to_string(),
                status,
                cells[2].to_string(),
            ));
        }
        rows
    }

    #[test]
    fn every_documented_code_is_in_the_table_and_every_entry_is_documented() {
        let rows = documented();
        assert!(rows.len() > 50, "found only {} rows", rows.len());
        let mut seen = BTreeSet::new();
        for (section, code, status, title) in &rows {
            assert!(
                seen.insert((code.clone(), *status)),
                "{code} {status} is documented twice"
            );
            let entry = ALL
                .iter()
                .find(|e| e.code == code && e.status.as_u16() == *status)
                .unwrap_or_else(|| {
                    panic!("docs/errors.md lists {code} ({status}), which the table does not have")
                });
            assert_eq!(entry.title, title, "{code}: title");
            assert_eq!(
                entry.system.as_str(),
                section,
                "{code}: documented under another system"
            );
        }
        for e in ALL {
            assert!(
                seen.contains(&(e.code.to_string(), e.status.as_u16())),
                "{} ({}) is missing from docs/errors.md",
                e.code,
                e.status.as_u16()
            );
        }
        // The sections come in the order of `System::ALL`.
        let sections: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>();
        let mut order: Vec<&str> = sections.clone();
        order.dedup();
        let expected: Vec<&str> = System::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(order, expected);
    }
}
