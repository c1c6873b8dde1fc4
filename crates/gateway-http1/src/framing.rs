//! How a message's body is delimited (RFC 9112 section 6), decided from
//! the header fields before they are put in a `HeaderMap`.
//!
//! Anything a second parser could read another way is refused here:
//! `Content-Length` with `Transfer-Encoding`, differing lengths, a length
//! that is not plain digits, `chunked` applied twice or not last.

use http::header::{self, HeaderName};

use crate::error::HeadError;

/// How a request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// The chunked coding.
    Chunked,
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// The chunked coding.
    Chunked,
    /// Everything until the connection closes.
    CloseDelimited,
}

/// What the header fields say about framing and the connection.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Facts {
    /// The one `Content-Length` (repeats, if any, were identical).
    pub content_length: Option<u64>,
    /// How many `Content-Length` values there were (fields or list items).
    pub content_length_values: usize,
    /// `Transfer-Encoding` present.
    pub transfer_encoding: bool,
    /// `chunked` is the last (and only) coding.
    pub chunked: bool,
    /// Codings other than `chunked` before it.
    pub other_codings: bool,
    /// `Connection: close`.
    pub close: bool,
    /// `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Connection: upgrade`.
    pub connection_upgrade: bool,
    /// `Connection` names something other than `close` and `keep-alive`
    /// (`upgrade`, or fields that end at this hop).
    pub connection_names: bool,
    /// An `Upgrade` field.
    pub upgrade: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

/// Reads the facts from the header fields (names as classified once for
/// the whole head, values raw); errors on what is ambiguous.
pub(crate) fn facts<'a>(
    fields: impl Iterator<Item = (&'a HeaderName, &'a [u8])>,
) -> Result<Facts, HeadError> {
    let mut f = Facts::default();
    let mut te_last_chunked = false;
    let mut te_chunked_seen = false;
    let mut te_any = false;
    for (name, value) in fields {
        if name == header::CONTENT_LENGTH {
            for item in value.split(|b| *b == b',') {
                let n = parse_length(trim(item))?;
                if f.content_length.is_some_and(|seen| seen != n) {
                    return Err(HeadError::Malformed("differing Content-Length values"));
                }
                f.content_length = Some(n);
                f.content_length_values += 1;
            }
        } else if name == header::TRANSFER_ENCODING {
            f.transfer_encoding = true;
            for coding in value.split(|b| *b == b',').map(trim) {
                if coding.is_empty() {
                    continue;
                }
                te_any = true;
                if coding.eq_ignore_ascii_case(b"chunked") {
                    if te_chunked_seen {
                        return Err(HeadError::Malformed(
                            "Transfer-Encoding applies chunked more than once",
                        ));
                    }
                    te_chunked_seen = true;
                    te_last_chunked = true;
                } else {
                    if te_chunked_seen {
                        // Chunked must be the last coding; whatever
                        // follows it makes the length unknowable.
                        te_last_chunked = false;
                    } else {
                        f.other_codings = true;
                    }
                }
            }
        } else if name == header::CONNECTION {
            for token in value.split(|b| *b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    f.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    f.keep_alive = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    f.connection_upgrade = true;
                    f.connection_names = true;
                } else if !token.is_empty() {
                    f.connection_names = true;
                }
            }
        } else if name == header::UPGRADE {
            f.upgrade = true;
        } else if name == header::EXPECT {
            f.expect_continue |= trim(value).eq_ignore_ascii_case(b"100-continue");
        }
    }
    if f.transfer_encoding {
        if !te_any {
            return Err(HeadError::Malformed("empty Transfer-Encoding"));
        }
        if !te_last_chunked {
            return Err(HeadError::Malformed(
                "Transfer-Encoding whose last coding is not chunked",
            ));
        }
        f.chunked = true;
        if f.content_length_values > 0 {
            return Err(HeadError::Malformed(
                "both Content-Length and Transfer-Encoding",
            ));
        }
    }
    Ok(f)
}

/// A `Content-Length` value: one or more digits, nothing else, no overflow.
fn parse_length(v: &[u8]) -> Result<u64, HeadError> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(HeadError::Malformed("Content-Length is not a number"));
    }
    let mut n: u64 = 0;
    for d in v {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(HeadError::Malformed("Content-Length is too large"))?;
    }
    Ok(n)
}

/// Strips optional whitespace (SP, HTAB) on both sides.
pub(crate) fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| *b != b' ' && *b != b'\t');
    let Some(start) = start else { return &[] };
    let end = v
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(start);
    &v[start..=end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(fields: &[(&str, &str)]) -> Result<Facts, HeadError> {
        let names: Vec<HeaderName> = fields
            .iter()
            .map(|(n, _)| HeaderName::from_bytes(n.as_bytes()).unwrap())
            .collect();
        facts(names.iter().zip(fields.iter().map(|(_, v)| v.as_bytes())))
    }

    #[test]
    fn lengths_must_be_digits_and_agree() {
        assert_eq!(
            of(&[("Content-Length", "42")]).unwrap().content_length,
            Some(42)
        );
        assert_eq!(
            of(&[("content-length", "7"), ("Content-Length", "7, 7")])
                .unwrap()
                .content_length,
            Some(7)
        );
        for bad in ["", "+5", "-1", "5 5", "0x10", "18446744073709551616", "1,"] {
            assert!(of(&[("Content-Length", bad)]).is_err(), "{bad:?}");
        }
        assert_eq!(
            of(&[("Content-Length", "5"), ("Content-Length", "6")]),
            Err(HeadError::Malformed("differing Content-Length values"))
        );
    }

    #[test]
    fn chunked_must_be_last_and_once() {
        assert!(of(&[("Transfer-Encoding", "chunked")]).unwrap().chunked);
        assert!(of(&[("Transfer-Encoding", " Chunked ")]).unwrap().chunked);
        assert!(
            of(&[("Transfer-Encoding", "gzip, chunked")])
                .unwrap()
                .other_codings
        );
        for bad in [
            &[("Transfer-Encoding", "chunked, gzip")][..],
            &[
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "identity"),
            ],
            &[("Transfer-Encoding", "chunked, chunked")],
            &[("Transfer-Encoding", "xchunked")],
            &[("Transfer-Encoding", "chunked;q=1")],
            &[("Transfer-Encoding", "")],
            &[("Transfer-Encoding", "chunked"), ("Content-Length", "3")],
        ] {
            assert!(of(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn connection_tokens() {
        let f = of(&[
            ("Connection", "Keep-Alive, Upgrade"),
            ("Upgrade", "websocket"),
        ])
        .unwrap();
        assert!(f.keep_alive && f.connection_upgrade && f.upgrade && !f.close);
        assert!(f.connection_names);
        let closing = of(&[("Connection", "close, keep-alive,")]).unwrap();
        assert!(closing.close && !closing.connection_names);
        assert!(
            of(&[("Connection", "close, X-Hop")])
                .unwrap()
                .connection_names
        );
        assert!(of(&[("Expect", "100-Continue")]).unwrap().expect_continue);
    }
}
