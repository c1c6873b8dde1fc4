//! Field names as they arrive, as `HeaderName`s: the spellings nearly
//! every message uses are matched as they are, anything else goes through
//! `HeaderName::from_bytes`.
//!
//! `from_bytes` lower-cases each name into a scratch buffer and then looks
//! it up among the standard names, about 150 instructions a field: after
//! `httparse` itself, the largest cost of reading a head. Fields are
//! almost always spelled as clients and servers write them
//! (`Content-Type`) or in lower case (`content-type`); matched by length,
//! then against the few names of that length, those cost a jump and a
//! word compare or two.

use http::header::{self as h, HeaderName, InvalidHeaderName};

/// The `HeaderName` of a raw field name (already checked as a token by
/// `httparse`).
pub(crate) fn field_name(raw: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
    match common(raw) {
        Some(name) => Ok(name),
        None => HeaderName::from_bytes(raw),
    }
}

/// A common name in its usual or lower-case spelling.
fn common(raw: &[u8]) -> Option<HeaderName> {
    let name = match raw.len() {
        2 => match raw {
            b"TE" | b"te" => h::TE,
            _ => return None,
        },
        3 => match raw {
            b"Age" | b"age" => h::AGE,
            _ => return None,
        },
        4 => match raw {
            b"Host" | b"host" => h::HOST,
            b"Date" | b"date" => h::DATE,
            b"ETag" | b"etag" => h::ETAG,
            b"Vary" | b"vary" => h::VARY,
            _ => return None,
        },
        6 => match raw {
            b"Accept" | b"accept" => h::ACCEPT,
            b"Cookie" | b"cookie" => h::COOKIE,
            b"Expect" | b"expect" => h::EXPECT,
            b"Origin" | b"origin" => h::ORIGIN,
            b"Server" | b"server" => h::SERVER,
            _ => return None,
        },
        7 => match raw {
            b"Expires" | b"expires" => h::EXPIRES,
            b"Referer" | b"referer" => h::REFERER,
            b"Upgrade" | b"upgrade" => h::UPGRADE,
            _ => return None,
        },
        8 => match raw {
            b"Location" | b"location" => h::LOCATION,
            _ => return None,
        },
        10 => match raw {
            b"Connection" | b"connection" => h::CONNECTION,
            b"Set-Cookie" | b"set-cookie" => h::SET_COOKIE,
            b"User-Agent" | b"user-agent" => h::USER_AGENT,
            _ => return None,
        },
        12 => match raw {
            b"Content-Type" | b"content-type" => h::CONTENT_TYPE,
            _ => return None,
        },
        13 => match raw {
            b"Accept-Ranges" | b"accept-ranges" => h::ACCEPT_RANGES,
            b"Authorization" | b"authorization" => h::AUTHORIZATION,
            b"Cache-Control" | b"cache-control" => h::CACHE_CONTROL,
            b"If-None-Match" | b"if-none-match" => h::IF_NONE_MATCH,
            b"Last-Modified" | b"last-modified" => h::LAST_MODIFIED,
            _ => return None,
        },
        14 => match raw {
            b"Content-Length" | b"content-length" => h::CONTENT_LENGTH,
            _ => return None,
        },
        15 => match raw {
            b"Accept-Encoding" | b"accept-encoding" => h::ACCEPT_ENCODING,
            b"Accept-Language" | b"accept-language" => h::ACCEPT_LANGUAGE,
            _ => return None,
        },
        16 => match raw {
            b"Content-Encoding" | b"content-encoding" => h::CONTENT_ENCODING,
            _ => return None,
        },
        17 => match raw {
            b"If-Modified-Since" | b"if-modified-since" => h::IF_MODIFIED_SINCE,
            b"Transfer-Encoding" | b"transfer-encoding" => h::TRANSFER_ENCODING,
            _ => return None,
        },
        _ => return None,
    };
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every spelling the table knows, and what `from_bytes` makes of it.
    const SPELLINGS: &[&str] = &[
        "TE",
        "Age",
        "Host",
        "Date",
        "ETag",
        "Vary",
        "Accept",
        "Cookie",
        "Expect",
        "Origin",
        "Server",
        "Expires",
        "Referer",
        "Upgrade",
        "Location",
        "Connection",
        "Set-Cookie",
        "User-Agent",
        "Content-Type",
        "Accept-Ranges",
        "Authorization",
        "Cache-Control",
        "If-None-Match",
        "Last-Modified",
        "Content-Length",
        "Accept-Encoding",
        "Accept-Language",
        "Content-Encoding",
        "If-Modified-Since",
        "Transfer-Encoding",
    ];

    #[test]
    fn the_table_agrees_with_from_bytes_for_every_spelling_it_knows() {
        for usual in SPELLINGS {
            let lower = usual.to_ascii_lowercase();
            for raw in [usual.as_bytes(), lower.as_bytes()] {
                let fast = common(raw).unwrap_or_else(|| panic!("{usual}: not in the table"));
                assert_eq!(fast, HeaderName::from_bytes(raw).unwrap(), "{usual}");
            }
        }
    }

    #[test]
    fn other_spellings_and_names_fall_back_to_from_bytes() {
        for raw in [
            "CONTENT-LENGTH",
            "Content-length",
            "hOST",
            "X-Request-Id",
            "traceparent",
            "Hostx",
            "Hos",
            "x",
        ] {
            assert!(common(raw.as_bytes()).is_none(), "{raw}");
            assert_eq!(
                field_name(raw.as_bytes()).unwrap(),
                HeaderName::from_bytes(raw.as_bytes()).unwrap(),
                "{raw}"
            );
        }
        assert!(field_name(b"bad name").is_err());
    }
}
