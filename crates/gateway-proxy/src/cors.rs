//! A route's CORS policy, prepared by the build step: preflight answers
//! and the headers of actual responses, as the Fetch standard's CORS
//! protocol has browsers check them.
//!
//! The CORS headers are added when the response leaves the gateway, after
//! the cache: a cached response never carries another origin's
//! `Access-Control-Allow-Origin`, and `Vary: Origin` tells caches past
//! the gateway the same.

use gateway_config::{OriginPattern, RouteCorsConfig};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method};

/// Whether a request is a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`. Its requested method, if so.
pub fn preflight_method(method: &Method, headers: &HeaderMap) -> Option<Method> {
    if method != Method::OPTIONS || !headers.contains_key(header::ORIGIN) {
        return None;
    }
    let requested = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
    Method::from_bytes(requested.as_bytes()).ok()
}

/// Which request headers a cross-origin request may send.
#[derive(Debug)]
enum AllowHeaders {
    /// Whatever the preflight asks for (no `allow_headers`, or `["*"]`).
    Requested,
    /// These, lower-case.
    Listed(Vec<HeaderName>),
}

/// A route's CORS policy.
#[derive(Debug)]
pub struct Cors {
    origins: Vec<OriginPattern>,
    /// `"*"` is in `allow_origins` (never with credentials).
    any_origin: bool,
    methods: Vec<Method>,
    methods_value: HeaderValue,
    headers: AllowHeaders,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: HeaderValue,
}

/// Why a preflight was refused, for the problem's detail.
#[derive(Debug, PartialEq, Eq)]
pub struct PreflightRefused(pub String);

impl Cors {
    /// Prepares a validated `cors` table.
    pub fn build(cfg: &RouteCorsConfig) -> Self {
        let methods: Vec<Method> = cfg
            .allow_methods
            .iter()
            .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
            .collect();
        let join = |items: &[String]| HeaderValue::from_str(&items.join(", ")).ok();
        let headers = match &cfg.allow_headers {
            Some(list) if !list.iter().any(|h| h == "*") => AllowHeaders::Listed(
                list.iter()
                    .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                    .collect(),
            ),
            _ => AllowHeaders::Requested,
        };
        Self {
            origins: cfg
                .allow_origins
                .iter()
                .filter_map(|o| OriginPattern::parse(o).ok())
                .collect(),
            any_origin: cfg.allow_origins.iter().any(|o| o == "*"),
            methods_value: join(&cfg.allow_methods).unwrap_or(HeaderValue::from_static("GET")),
            methods,
            headers,
            expose: (!cfg.expose_headers.is_empty())
                .then(|| join(&cfg.expose_headers))
                .flatten(),
            credentials: cfg.allow_credentials,
            max_age: HeaderValue::from(cfg.max_age.as_secs()),
        }
    }

    /// Whether `origin` may read responses.
    pub fn allows(&self, origin: &HeaderValue) -> bool {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        self.any_origin || self.origins.iter().any(|p| p.matches(origin))
    }

    /// The value of `Access-Control-Allow-Origin` for an allowed origin.
    fn allow_origin(&self, origin: &HeaderValue) -> HeaderValue {
        if self.any_origin {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    /// The answer to a preflight from `origin` asking for `method` and the
    /// headers in `Access-Control-Request-Headers`: its headers, or why not.
    pub fn preflight(
        &self,
        origin: &HeaderValue,
        method: &Method,
        request: &HeaderMap,
    ) -> Result<HeaderMap, PreflightRefused> {
        let shown = origin.to_str().unwrap_or("(not text)");
        if !self.allows(origin) {
            return Err(PreflightRefused(format!(
                "origin `{shown}` is not allowed on this route"
            )));
        }
        if !self.methods.contains(method) {
            return Err(PreflightRefused(format!(
                "method {method} is not allowed for cross-origin requests on this route (allowed: {})",
                self.methods_value.to_str().unwrap_or_default()
            )));
        }
        let mut requested = Vec::new();
        for value in request.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            let Ok(text) = value.to_str() else {
                return Err(PreflightRefused(
                    "Access-Control-Request-Headers is not text".into(),
                ));
            };
            for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                match HeaderName::from_bytes(name.as_bytes()) {
                    Ok(name) => requested.push(name),
                    Err(_) => {
                        return Err(PreflightRefused(format!(
                            "`{name}` in Access-Control-Request-Headers is not a header name"
                        )))
                    }
                }
            }
        }
        if let AllowHeaders::Listed(allowed) = &self.headers {
            if let Some(refused) = requested.iter().find(|h| !allowed.contains(h)) {
                return Err(PreflightRefused(format!(
                    "request header `{refused}` is not allowed for cross-origin requests on this route"
                )));
            }
        }
        let mut out = HeaderMap::new();
        out.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin(origin),
        );
        if self.credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.methods_value.clone(),
        );
        if !requested.is_empty() {
            let names: Vec<&str> = requested.iter().map(HeaderName::as_str).collect();
            if let Ok(v) = HeaderValue::from_str(&names.join(", ")) {
                out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
            }
        }
        out.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        Ok(out)
    }

    /// Sets the CORS headers of an actual response (or a refusal) to a
    /// request that sent `origin`. The upstream's own CORS headers go: on
    /// a route with `cors` the gateway alone answers for it.
    pub fn decorate(&self, headers: &mut HeaderMap, origin: Option<&HeaderValue>) {
        for name in [
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            header::ACCESS_CONTROL_ALLOW_METHODS,
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            header::ACCESS_CONTROL_MAX_AGE,
        ] {
            headers.remove(name);
        }
        add_vary(headers, "origin");
        let Some(origin) = origin.filter(|o| self.allows(o)) else {
            return;
        };
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin(origin),
        );
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(expose) = &self.expose {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
    }
}

/// Adds `name` to `Vary` unless it is there already or `Vary` is `*`.
pub fn add_vary(headers: &mut HeaderMap, name: &str) {
    let present = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.eq_ignore_ascii_case(name))
        })
    });
    if !present {
        if let Ok(v) = HeaderValue::from_str(name) {
            headers.append(header::VARY, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(src: serde_json::Value) -> Cors {
        let cfg: RouteCorsConfig = serde_json::from_value(src).unwrap();
        cfg.validate().unwrap();
        Cors::build(&cfg)
    }

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn preflights_check_origin_method_and_headers() {
        let c = cors(serde_json::json!({
            "allow_origins": ["https://app.example.com", "https://*.shop.test"],
            "allow_methods": ["GET", "PUT"],
            "allow_headers": ["content-type", "x-api-key"],
            "allow_credentials": true,
            "max_age": "1h",
        }));
        let mut req = HeaderMap::new();
        req.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            hv("Content-Type, x-api-key"),
        );
        let ok = c
            .preflight(&hv("https://eu.shop.test"), &Method::PUT, &req)
            .unwrap();
        assert_eq!(
            ok[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://eu.shop.test"
        );
        assert_eq!(ok[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(ok[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, PUT");
        assert_eq!(
            ok[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "content-type, x-api-key"
        );
        assert_eq!(ok[header::ACCESS_CONTROL_MAX_AGE], "3600");

        let refused = |origin: &str, method: Method, headers: &HeaderMap| {
            c.preflight(&hv(origin), &method, headers).unwrap_err().0
        };
        assert!(
            refused("https://evil.test", Method::PUT, &req).contains("origin `https://evil.test`")
        );
        assert!(refused("https://app.example.com", Method::DELETE, &req).contains("method DELETE"));
        req.insert(header::ACCESS_CONTROL_REQUEST_HEADERS, hv("x-other"));
        assert!(refused("https://app.example.com", Method::GET, &req).contains("`x-other`"));
    }

    #[test]
    fn actual_responses_get_headers_only_for_allowed_origins() {
        let c = cors(serde_json::json!({"allow_origins": ["*"], "expose_headers": ["x-total"]}));
        let mut res = HeaderMap::new();
        res.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            hv("https://upstream.test"),
        );
        res.insert(header::VARY, hv("Accept-Encoding"));
        c.decorate(&mut res, Some(&hv("https://any.test")));
        assert_eq!(res[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(res[header::ACCESS_CONTROL_EXPOSE_HEADERS], "x-total");
        let vary: Vec<_> = res.get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["Accept-Encoding", "origin"]);

        let c = cors(serde_json::json!({"allow_origins": ["https://app.example.com"]}));
        let mut res = HeaderMap::new();
        res.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, hv("*"));
        c.decorate(&mut res, Some(&hv("https://evil.test")));
        assert!(!res.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        assert_eq!(res[header::VARY], "origin");
        let mut res = HeaderMap::new();
        res.insert(header::VARY, hv("*"));
        c.decorate(&mut res, None);
        assert_eq!(res.get_all(header::VARY).iter().count(), 1);
    }
}
