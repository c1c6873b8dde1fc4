//! One authority per request.
//!
//! A request names its target host up to three ways: the absolute-form
//! request target (`GET http://a.example/ HTTP/1.1`), HTTP/2's `:authority`,
//! and the `Host` header. If routing, the cache key and the upstream could
//! each read a different one, a client could store a response under another
//! host's cache key or reach a host-only route's upstream with a `Host` of its
//! choosing. So the gateway settles on one value before anything reads it
//! (RFC 9112 §3.2.2, RFC 9113 §8.3.1), writes it back as the only `Host`,
//! and reduces the request target to origin-form: from here on the request
//! carries exactly one authority, and the connection's scheme is the scheme.

use gateway_core::{errors, Problem};
use http::header::{self, HeaderValue};
use http::uri::{Authority, Uri};
use http::{request, Version};

/// The authority every later stage uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestAuthority {
    /// Host without port, lower-cased, for routing (routes match hosts,
    /// not ports).
    pub host: String,
    /// Host and port as the client gave them, lower-cased: the authority of
    /// the target URI, which the cache keys on (a default port is dropped
    /// there), so a purge of the URL the client asked for reaches it.
    pub authority: String,
}

/// Settles the request's authority and makes the request agree with it:
/// one `Host` header, an origin-form URI.
///
/// Refused with 400 `bad_host`: several `Host` headers; an HTTP/1.1 request
/// without one (and without an absolute-form target); an HTTP/2 request
/// whose `host` differs from its `:authority`; a value that is not a valid
/// authority (userinfo included). An HTTP/1.0 request may omit `Host`, as
/// the RFC allows; it then matches host-less routes only.
pub(crate) fn settle(parts: &mut request::Parts) -> Result<RequestAuthority, Problem> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host_header = hosts.next().cloned();
    if hosts.next().is_some() {
        return Err(bad_host("the request has more than one `Host` header"));
    }
    // The usual request: origin-form with one plain `Host`. It already is
    // what the request must carry, so it is only read.
    if parts.uri.authority().is_none() {
        if let Some(settled) = host_header.as_ref().and_then(|h| plain(h.as_bytes())) {
            return Ok(settled);
        }
    }
    let from_target = parts.uri.authority().cloned();
    let authority = match (from_target, host_header) {
        (Some(target), host) => {
            if parts.version == Version::HTTP_2 {
                // RFC 9113 §8.3.1: a `host` that names another entity than
                // `:authority` makes the request malformed.
                if let Some(host) = host {
                    if !host
                        .as_bytes()
                        .eq_ignore_ascii_case(target.as_str().as_bytes())
                    {
                        return Err(bad_host(format!(
                            "the `host` header `{}` differs from `:authority` `{target}`",
                            String::from_utf8_lossy(host.as_bytes())
                        )));
                    }
                }
            }
            // HTTP/1.1 absolute-form: the target's authority replaces `Host`.
            target
        }
        (None, Some(host)) => parse_host(&host)?,
        (None, None) if parts.version == Version::HTTP_10 || parts.version == Version::HTTP_09 => {
            return Ok(RequestAuthority {
                host: String::new(),
                authority: String::new(),
            });
        }
        (None, None) => return Err(bad_host("the request has no `Host` header")),
    };
    if authority.as_str().contains('@') {
        return Err(bad_host(format!(
            "the authority `{authority}` carries user information"
        )));
    }
    if authority.host().is_empty() {
        return Err(bad_host("the request's `Host` is empty"));
    }
    // `http::uri::Authority` checks characters, not the port's syntax.
    let port = &authority.as_str()[authority.host().len()..];
    if !port.is_empty() && authority.port_u16().is_none() {
        return Err(bad_host(format!(
            "the port of `{authority}` is not a number from 0 to 65535"
        )));
    }
    let value = HeaderValue::from_str(authority.as_str())
        .map_err(|_| bad_host(format!("`{authority}` is not a valid `Host` value")))?;
    parts.headers.insert(header::HOST, value);
    if parts.uri.authority().is_some() {
        // Origin-form from here on: nothing downstream may read the
        // client's scheme or authority out of the target.
        let pq = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        parts.uri = Uri::from(pq);
    }
    Ok(RequestAuthority {
        host: authority.host().to_ascii_lowercase(),
        authority: authority.as_str().to_ascii_lowercase(),
    })
}

/// `host[:port]` with a host of letters, digits, dots and hyphens and a
/// port from 0 to 65535, as the settled authority; `None` for anything
/// else (IP literals, percent-escapes, errors), which the full parse
/// decides.
fn plain(value: &[u8]) -> Option<RequestAuthority> {
    let host_len = value
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
        .unwrap_or(value.len());
    if host_len == 0 {
        return None;
    }
    if let Some(port) = value[host_len..].strip_prefix(b":") {
        let valid = (1..=5).contains(&port.len())
            && port.iter().all(u8::is_ascii_digit)
            && port.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')) <= 65535;
        if !valid {
            return None;
        }
    } else if host_len != value.len() {
        return None;
    }
    // Only ASCII was accepted above.
    let authority = String::from_utf8(value.to_ascii_lowercase()).ok()?;
    Some(RequestAuthority {
        host: authority[..host_len].to_string(),
        authority,
    })
}

fn parse_host(value: &HeaderValue) -> Result<Authority, Problem> {
    Authority::try_from(value.as_bytes()).map_err(|_| {
        bad_host(format!(
            "`{}` is not a valid `Host` value",
            String::from_utf8_lossy(value.as_bytes())
        ))
    })
}

fn bad_host(detail: impl Into<String>) -> Problem {
    Problem::new(&errors::BAD_HOST, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(version: Version, target: &str, hosts: &[&str]) -> request::Parts {
        let mut b = Request::builder().version(version).uri(target);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn check(version: Version, target: &str, hosts: &[&str]) -> Result<(String, String), String> {
        let mut p = parts(version, target, hosts);
        match settle(&mut p) {
            Ok(a) => {
                let all: Vec<_> = p.headers.get_all(header::HOST).iter().collect();
                assert!(all.len() <= 1, "one Host at most, got {all:?}");
                assert!(p.uri.authority().is_none(), "origin-form: {}", p.uri);
                let host = all
                    .first()
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                Ok((a.host, host))
            }
            Err(p) => {
                assert_eq!(p.code(), "bad_host");
                assert_eq!(p.status(), 400);
                Err(p.detail)
            }
        }
    }

    #[test]
    fn the_plain_host_shortcut_agrees_with_the_full_parse() {
        let values = [
            "a.example",
            "API.Example.COM",
            "a.example:8080",
            "a.example:0",
            "a.example:65535",
            "a.example:00080",
            "x-1.y",
            "a.example:65536",
            "a.example:123456",
            "a.example:",
            "a.example:80x",
            ":80",
            "a_b.example",
            "[::1]:8080",
            "a%41.example",
            "a.example:80:90",
        ];
        for value in values {
            // Absolute-form never takes the shortcut.
            let full = Request::builder()
                .uri(format!("http://{value}/"))
                .body(())
                .ok()
                .and_then(|r| settle(&mut r.into_parts().0).ok());
            if let Some(fast) = plain(value.as_bytes()) {
                assert_eq!(Some(fast), full, "{value}");
            }
            let mut p = parts(Version::HTTP_11, "/", &[value]);
            assert_eq!(settle(&mut p).ok(), full, "{value}");
        }
        assert!(
            plain(b"a.example:8080").is_some(),
            "the usual case is short"
        );
    }

    fn ok(host: &str, header: &str) -> Result<(String, String), String> {
        Ok((host.to_string(), header.to_string()))
    }

    #[test]
    fn absolute_form_authority_replaces_host() {
        assert_eq!(
            check(
                Version::HTTP_11,
                "http://Victim.example/cached/x",
                &["attacker.example"]
            ),
            ok("victim.example", "Victim.example")
        );
        assert_eq!(
            check(Version::HTTP_11, "http://a.example:8080/x?q=1", &[]),
            ok("a.example", "a.example:8080")
        );
    }

    #[test]
    fn origin_form_uses_the_single_host() {
        assert_eq!(
            check(Version::HTTP_11, "/x", &["API.example.com:8080"]),
            ok("api.example.com", "API.example.com:8080")
        );
        assert_eq!(
            check(Version::HTTP_11, "/x", &["[::1]:8080"]),
            ok("[::1]", "[::1]:8080")
        );
    }

    #[test]
    fn missing_or_repeated_host_is_refused() {
        let e = check(Version::HTTP_11, "/x", &[]).unwrap_err();
        assert!(e.contains("no `Host`"), "{e}");
        let e = check(Version::HTTP_11, "/x", &["a.example", "b.example"]).unwrap_err();
        assert!(e.contains("more than one"), "{e}");
        // Even when the absolute form would decide: the message is malformed.
        assert!(check(Version::HTTP_11, "http://a.example/", &["a", "b"]).is_err());
        // HTTP/1.0 clients may omit `Host`.
        assert_eq!(check(Version::HTTP_10, "/x", &[]), ok("", ""));
    }

    #[test]
    fn invalid_hosts_are_refused() {
        for bad in [
            "",
            "a b",
            "user@a.example",
            "a.example/x",
            "a.example:port",
            "a.example:99999",
        ] {
            assert!(
                check(Version::HTTP_11, "/x", &[bad]).is_err(),
                "`{bad}` accepted"
            );
        }
        assert!(check(Version::HTTP_11, "http://user@a.example/", &[]).is_err());
    }

    #[test]
    fn http2_host_must_match_authority() {
        assert_eq!(
            check(Version::HTTP_2, "https://victim.example/x", &[]),
            ok("victim.example", "victim.example")
        );
        assert_eq!(
            check(
                Version::HTTP_2,
                "https://victim.example/x",
                &["VICTIM.example"]
            ),
            ok("victim.example", "victim.example")
        );
        let e = check(
            Version::HTTP_2,
            "https://victim.example/x",
            &["attacker.example"],
        )
        .unwrap_err();
        assert!(e.contains("differs"), "{e}");
        // Without `:authority`, HTTP/2 falls back to `host`.
        assert_eq!(
            check(Version::HTTP_2, "/x", &["b.example"]),
            ok("b.example", "b.example")
        );
    }
}
