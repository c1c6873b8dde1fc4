//! Byte ranges (RFC 9110 §14): what a request's `Range` asks for, whether
//! its `If-Range` lets a range be sent, and which bytes of a representation
//! of a known length answer it.
//!
//! Pure functions over header values, so the cache answers ranges from any
//! complete response it has (stored, or being fetched whole) the same way.

use chrono::{DateTime, Utc};
use http::{header, HeaderMap, HeaderValue};

use crate::directives::{header_date, parse_http_date};

/// What a request's `Range` header asks of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No `Range`, or one the cache ignores as RFC 9110 §14.2 allows (an
    /// unknown unit or an invalid specifier): the whole representation.
    Whole,
    /// One byte range: answered from the whole representation.
    Single(ByteRange),
    /// Several ranges (a `multipart/byteranges` answer): passed through to
    /// the origin.
    Multiple,
}

/// One range of a `bytes` specifier, before the length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `first-last`, `last` included.
    Bounded { first: u64, last: u64 },
    /// `first-`: to the end.
    From { first: u64 },
    /// `-length`: the last `length` bytes.
    Suffix { length: u64 },
}

/// A range resolved against a representation's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// Bytes `first..=last` of `complete`.
    Part {
        first: u64,
        last: u64,
        complete: u64,
    },
    /// No byte of the representation is in the range (416).
    Unsatisfiable { complete: u64 },
}

impl RangeRequest {
    /// Reads the `Range` header of a request.
    pub fn of(headers: &HeaderMap) -> Self {
        let mut lines = headers.get_all(header::RANGE).iter();
        let (Some(line), None) = (lines.next(), lines.next()) else {
            // Absent, or several lines: the latter is not a valid singleton.
            return RangeRequest::Whole;
        };
        let Some(value) = line.to_str().ok() else {
            return RangeRequest::Whole;
        };
        let Some((unit, set)) = value.split_once('=') else {
            return RangeRequest::Whole;
        };
        if !unit.trim().eq_ignore_ascii_case("bytes") {
            return RangeRequest::Whole;
        }
        let mut ranges = Vec::new();
        for spec in set.split(',') {
            let spec = spec.trim();
            if spec.is_empty() {
                // Empty list elements are allowed and ignored (RFC 9110 §5.6.1).
                continue;
            }
            match ByteRange::parse(spec) {
                Some(r) => ranges.push(r),
                None => return RangeRequest::Whole,
            }
        }
        match ranges.as_slice() {
            [] => RangeRequest::Whole,
            [one] => RangeRequest::Single(*one),
            _ => RangeRequest::Multiple,
        }
    }
}

impl ByteRange {
    fn parse(spec: &str) -> Option<Self> {
        let (first, last) = spec.split_once('-')?;
        let number = |s: &str| -> Option<u64> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Longer than any representation: saturate rather than refuse.
            Some(s.parse().unwrap_or(u64::MAX))
        };
        match (first.is_empty(), last.is_empty()) {
            (true, false) => Some(ByteRange::Suffix {
                length: number(last)?,
            }),
            (false, true) => Some(ByteRange::From {
                first: number(first)?,
            }),
            (false, false) => {
                let (first, last) = (number(first)?, number(last)?);
                (first <= last).then_some(ByteRange::Bounded { first, last })
            }
            (true, true) => None,
        }
    }

    /// The bytes of a representation of `complete` bytes this range selects
    /// (RFC 9110 §14.1.2).
    pub fn resolve(self, complete: u64) -> Resolved {
        let unsatisfiable = Resolved::Unsatisfiable { complete };
        let part = |first: u64, last: u64| Resolved::Part {
            first,
            last,
            complete,
        };
        match self {
            ByteRange::Bounded { first, last } if first < complete => {
                part(first, last.min(complete - 1))
            }
            ByteRange::From { first } if first < complete => part(first, complete - 1),
            ByteRange::Suffix { length } if length > 0 && complete > 0 => {
                part(complete.saturating_sub(length), complete - 1)
            }
            _ => unsatisfiable,
        }
    }
}

/// Whether the request's `If-Range` condition (if any) lets a range of
/// the response with these header fields be sent (RFC 9110 §13.1.5): only
/// a strong validator that matches. `false` means the whole representation
/// is sent.
pub fn if_range_allows(condition: Option<&HeaderValue>, response: &HeaderMap) -> bool {
    let Some(condition) = condition else {
        return true;
    };
    let Ok(condition) = condition.to_str() else {
        return false;
    };
    let condition = condition.trim();
    if condition.starts_with('"') {
        // Strong comparison: neither may be weak, and they must be equal.
        return response
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|etag| etag.trim() == condition);
    }
    if condition.starts_with("W/") {
        return false;
    }
    let Some(since) = parse_http_date(condition) else {
        return false;
    };
    // A Last-Modified date is a strong validator only when it is at least
    // a second before the response's Date (RFC 9110 §8.8.2.2).
    let last_modified = header_date(response, &header::LAST_MODIFIED);
    let date = header_date(response, &header::DATE);
    match (last_modified, date) {
        (Some(lm), Some(date)) => lm == since && strong_date(lm, date),
        _ => false,
    }
}

fn strong_date(last_modified: DateTime<Utc>, date: DateTime<Utc>) -> bool {
    (date - last_modified).num_seconds() >= 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn range(v: &str) -> RangeRequest {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        RangeRequest::of(&h)
    }

    #[test]
    fn parses_single_multiple_and_ignores_the_rest() {
        use ByteRange::*;
        assert_eq!(
            range("bytes=0-99"),
            RangeRequest::Single(Bounded { first: 0, last: 99 })
        );
        assert_eq!(range("Bytes = 5-"), RangeRequest::Single(From { first: 5 }));
        assert_eq!(
            range("bytes=-20"),
            RangeRequest::Single(Suffix { length: 20 })
        );
        assert_eq!(
            range("bytes=0-1,, "),
            RangeRequest::Single(Bounded { first: 0, last: 1 })
        );
        assert_eq!(range("bytes=0-1, 5-9"), RangeRequest::Multiple);
        for ignored in [
            "items=0-1",
            "bytes=5-1",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=",
            "bytes 0-1",
        ] {
            assert_eq!(range(ignored), RangeRequest::Whole, "{ignored}");
        }
        assert_eq!(RangeRequest::of(&HeaderMap::new()), RangeRequest::Whole);
    }

    proptest::proptest! {
        #[test]
        fn any_range_resolves_inside_the_representation(
            value in "(bytes|Bytes|items)=[0-9]{0,5}-[0-9]{0,5}(, ?[0-9]{0,3}-[0-9]{0,3})?|.{0,20}",
            complete in 0u64..1000,
        ) {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(header::RANGE, v);
            }
            if let RangeRequest::Single(range) = RangeRequest::of(&h) {
                if let Resolved::Part { first, last, complete: c } = range.resolve(complete) {
                    proptest::prop_assert!(first <= last && last < c && c == complete);
                }
            }
        }
    }

    #[test]
    fn resolves_against_the_length() {
        use ByteRange::*;
        let part = |first, last| Resolved::Part {
            first,
            last,
            complete: 10,
        };
        let none = Resolved::Unsatisfiable { complete: 10 };
        assert_eq!(Bounded { first: 2, last: 4 }.resolve(10), part(2, 4));
        assert_eq!(
            Bounded {
                first: 2,
                last: 400
            }
            .resolve(10),
            part(2, 9)
        );
        assert_eq!(
            Bounded {
                first: 10,
                last: 12
            }
            .resolve(10),
            none
        );
        assert_eq!(From { first: 9 }.resolve(10), part(9, 9));
        assert_eq!(From { first: 10 }.resolve(10), none);
        assert_eq!(Suffix { length: 3 }.resolve(10), part(7, 9));
        assert_eq!(Suffix { length: 30 }.resolve(10), part(0, 9));
        assert_eq!(Suffix { length: 0 }.resolve(10), none);
        assert_eq!(
            Suffix { length: 1 }.resolve(0),
            Resolved::Unsatisfiable { complete: 0 }
        );
    }

    #[test]
    fn if_range_needs_a_matching_strong_validator() {
        let lm = "Sun, 01 Mar 2026 10:00:00 GMT";
        let later = "Sun, 01 Mar 2026 12:00:00 GMT";
        let response = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        let allows = |condition: Option<&str>, res: &HeaderMap| {
            let condition = condition.map(|c| HeaderValue::from_str(c).unwrap());
            if_range_allows(condition.as_ref(), res)
        };
        let res = response(&[("etag", "\"v1\""), ("last-modified", lm), ("date", later)]);
        assert!(allows(None, &res));
        assert!(allows(Some("\"v1\""), &res));
        assert!(!allows(Some("\"v2\""), &res));
        assert!(!allows(Some("W/\"v1\""), &res));
        assert!(allows(Some(lm), &res));
        assert!(!allows(Some(later), &res));
        let weak = response(&[("etag", "W/\"v1\""), ("last-modified", lm), ("date", lm)]);
        assert!(!allows(Some("W/\"v1\""), &weak));
        assert!(
            !allows(Some(lm), &weak),
            "Last-Modified equal to Date is weak"
        );
    }
}
