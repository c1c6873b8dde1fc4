//! Targeted cache control (RFC 9213): `CDN-Cache-Control` and a field of
//! this cache's own (by default `Gatehouse-Cache-Control`) carry directives
//! meant for this cache only and take precedence over `Cache-Control`.
//!
//! The cache has a target list, its own field first. The first field on
//! the list that is present, parses as a Structured Fields Dictionary
//! (RFC 8941 §4.2.2) and is not empty decides the caching policy, and then
//! `Cache-Control` and `Expires` are ignored (RFC 9213 §2.1). A field that
//! does not parse is ignored as if it were absent (§2.2), so the next one,
//! or `Cache-Control`, applies.
//!
//! The parser is strict on purpose: a targeted field is either exactly
//! right or not used at all, where `Cache-Control` is read tolerantly.

use http::{HeaderMap, HeaderName};

use crate::directives::{ResponseDirectives, Seconds};

/// `CDN-Cache-Control` (RFC 9213 §3), on every target list after the
/// cache's own field.
pub static CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");

/// The directives that decide how a response is cached: those of the first
/// valid, non-empty targeted field in `targets`, or else `Cache-Control`'s.
pub fn response_directives(headers: &HeaderMap, targets: &[HeaderName]) -> ResponseDirectives {
    targets
        .iter()
        .find_map(|name| targeted_directives(headers, name))
        .unwrap_or_else(|| ResponseDirectives::from_headers(headers))
}

/// The directives of field `name`, when it is present, valid and not empty.
fn targeted_directives(headers: &HeaderMap, name: &HeaderName) -> Option<ResponseDirectives> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    // Several field lines are one comma-separated value (RFC 9110 §5.3).
    let mut value = String::new();
    for line in lines {
        if !value.is_empty() {
            value.push(',');
        }
        value.push_str(line.to_str().ok()?);
    }
    let members = parse_dictionary(&value)?;
    if members.is_empty() {
        return None;
    }
    let mut d = ResponseDirectives {
        targeted: true,
        ..ResponseDirectives::default()
    };
    for (key, member) in &members {
        match key.as_str() {
            "max-age" => set_seconds(&mut d.max_age, member),
            "s-maxage" => set_seconds(&mut d.s_maxage, member),
            "stale-while-revalidate" => set_seconds(&mut d.stale_while_revalidate, member),
            "stale-if-error" => set_seconds(&mut d.stale_if_error, member),
            // A qualified form (`private="set-cookie"`) is taken as the
            // unqualified one, the stricter reading, as in Cache-Control.
            "private" => d.private = member.is_set(true),
            "no-cache" => d.no_cache = member.is_set(true),
            "no-store" => d.no_store = member.is_set(false),
            "public" => d.public = member.is_set(false),
            "must-revalidate" => d.must_revalidate = member.is_set(false),
            "proxy-revalidate" => d.proxy_revalidate = member.is_set(false),
            _ => {}
        }
    }
    Some(d)
}

/// A delta-seconds directive: an Integer; negative is invalid (stale), a
/// value of another type is ignored.
fn set_seconds(slot: &mut Option<Seconds>, member: &Member) {
    if let Member::Item(Bare::Integer(n)) = member {
        *slot = Some(if *n < 0 {
            Seconds::Invalid
        } else {
            Seconds::Valid((*n as u64).min(1 << 31))
        });
    }
}

/// A dictionary member's value, as far as the cache needs it.
#[derive(Debug, Clone, PartialEq)]
enum Member {
    Item(Bare),
    InnerList,
}

#[derive(Debug, Clone, PartialEq)]
enum Bare {
    Integer(i64),
    Decimal,
    String,
    Token,
    Bytes,
    Boolean(bool),
}

impl Member {
    /// Whether a flag directive is on: `true` (a bare key) is, `?0` is
    /// not; other values count only where `qualified` forms exist.
    fn is_set(&self, qualified: bool) -> bool {
        match self {
            Member::Item(Bare::Boolean(b)) => *b,
            Member::Item(Bare::String | Bare::Token) | Member::InnerList => qualified,
            Member::Item(_) => false,
        }
    }
}

/// Parses a Dictionary (RFC 8941 §4.2.2); `None` when it is not one.
/// Later duplicates of a key replace earlier ones, as the RFC says.
fn parse_dictionary(input: &str) -> Option<Vec<(String, Member)>> {
    let mut p = Parser {
        s: input.as_bytes(),
        i: 0,
    };
    p.skip_sp();
    let mut members: Vec<(String, Member)> = Vec::new();
    while !p.done() {
        let key = p.key()?;
        let member = if p.eat(b'=') {
            p.item_or_inner_list()?
        } else {
            p.parameters()?;
            Member::Item(Bare::Boolean(true))
        };
        members.retain(|(k, _)| *k != key);
        members.push((key, member));
        p.skip_ows();
        if p.done() {
            break;
        }
        if !p.eat(b',') {
            return None;
        }
        p.skip_ows();
        if p.done() {
            // A trailing comma.
            return None;
        }
    }
    Some(members)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn key(&mut self) -> Option<String> {
        let start = self.i;
        match self.peek()? {
            b'a'..=b'z' | b'*' => self.i += 1,
            _ => return None,
        }
        while matches!(
            self.peek(),
            Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*')
        ) {
            self.i += 1;
        }
        Some(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn item_or_inner_list(&mut self) -> Option<Member> {
        if self.eat(b'(') {
            loop {
                self.skip_sp();
                if self.eat(b')') {
                    self.parameters()?;
                    return Some(Member::InnerList);
                }
                self.bare_item()?;
                self.parameters()?;
                if !matches!(self.peek()?, b' ' | b')') {
                    return None;
                }
            }
        }
        let bare = self.bare_item()?;
        self.parameters()?;
        Some(Member::Item(bare))
    }

    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.skip_sp();
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    fn bare_item(&mut self) -> Option<Bare> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string(),
            b'*' | b'A'..=b'Z' | b'a'..=b'z' => self.token(),
            b':' => self.byte_sequence(),
            b'?' => {
                self.i += 1;
                let b = match self.peek()? {
                    b'0' => false,
                    b'1' => true,
                    _ => return None,
                };
                self.i += 1;
                Some(Bare::Boolean(b))
            }
            _ => None,
        }
    }

    /// Integer (at most 15 digits) or Decimal (at most 12 digits, a dot,
    /// then 1 to 3 digits), RFC 8941 §4.2.4.
    fn number(&mut self) -> Option<Bare> {
        let negative = self.eat(b'-');
        let start = self.i;
        let mut dot = None;
        while let Some(b) = self.peek() {
            match b {
                b'0'..=b'9' => self.i += 1,
                b'.' if dot.is_none() => {
                    if self.i - start > 12 {
                        return None;
                    }
                    dot = Some(self.i);
                    self.i += 1;
                }
                _ => break,
            }
            let len = self.i - start;
            if (dot.is_none() && len > 15) || len > 16 {
                return None;
            }
        }
        let digits = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        if digits.is_empty() || !digits.as_bytes()[0].is_ascii_digit() {
            return None;
        }
        match dot {
            None => {
                let n: i64 = digits.parse().ok()?;
                Some(Bare::Integer(if negative { -n } else { n }))
            }
            Some(at) => {
                let fraction = self.i - at - 1;
                (1..=3).contains(&fraction).then_some(Bare::Decimal)
            }
        }
    }

    fn string(&mut self) -> Option<Bare> {
        self.i += 1;
        loop {
            match self.peek()? {
                b'\\' => {
                    self.i += 1;
                    if !matches!(self.peek()?, b'"' | b'\\') {
                        return None;
                    }
                    self.i += 1;
                }
                b'"' => {
                    self.i += 1;
                    return Some(Bare::String);
                }
                0x20..=0x7e => self.i += 1,
                _ => return None,
            }
        }
    }

    fn token(&mut self) -> Option<Bare> {
        self.i += 1;
        while let Some(b) = self.peek() {
            let tchar = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b);
            if !tchar {
                break;
            }
            self.i += 1;
        }
        Some(Bare::Token)
    }

    fn byte_sequence(&mut self) -> Option<Bare> {
        self.i += 1;
        loop {
            match self.peek()? {
                b':' => {
                    self.i += 1;
                    return Some(Bare::Bytes);
                }
                b if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=') => {
                    self.i += 1;
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn own() -> HeaderName {
        HeaderName::from_static("gatehouse-cache-control")
    }

    fn directives(fields: &[(&'static str, &str)]) -> ResponseDirectives {
        let mut h = HeaderMap::new();
        for (k, v) in fields {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        response_directives(&h, &[own(), CDN_CACHE_CONTROL.clone()])
    }

    #[test]
    fn dictionaries_parse_strictly() {
        for valid in [
            "max-age=60",
            "max-age=60, no-store",
            "private;x=1, no-cache=?0",
            "a=(1 2 \"x\");p, b=:aGk=:, c=1.5, d=tok/en, e=-3",
            "  a=1,\tb",
        ] {
            assert!(parse_dictionary(valid).is_some(), "{valid}");
        }
        for invalid in [
            "max-age=60,",
            "Max-Age=60",
            "max-age=6x",
            "max-age=\"60",
            "max-age=1234567890123456",
            "a=1.",
            "a=1.2345",
            "a=?2",
            "a=(1 2",
            "a=,b",
            "=1",
            "a=1 b=2",
        ] {
            assert!(parse_dictionary(invalid).is_none(), "{invalid}");
        }
        assert_eq!(
            parse_dictionary("a=1, a=2").unwrap(),
            vec![("a".to_string(), Member::Item(Bare::Integer(2)))]
        );
    }

    #[test]
    fn first_valid_targeted_field_wins_over_cache_control() {
        let d = directives(&[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=600"),
        ]);
        assert!(d.targeted && !d.no_store);
        assert_eq!(d.max_age, Some(Seconds::Valid(600)));

        // The cache's own field comes before CDN-Cache-Control.
        let d = directives(&[
            ("cdn-cache-control", "max-age=600"),
            ("gatehouse-cache-control", "max-age=5, stale-if-error=30"),
        ]);
        assert_eq!(d.max_age, Some(Seconds::Valid(5)));
        assert_eq!(d.stale_if_error, Some(Seconds::Valid(30)));

        // Invalid or empty: skipped, the next applies.
        let d = directives(&[
            ("gatehouse-cache-control", "max-age=5,"),
            ("cdn-cache-control", "no-store"),
        ]);
        assert!(d.no_store);
        let d = directives(&[
            ("cdn-cache-control", "max-age=\"600\""),
            ("cdn-cache-control", "private"),
        ]);
        assert!(d.private, "field lines are one value");
        let d = directives(&[("cdn-cache-control", ""), ("cache-control", "max-age=7")]);
        assert!(!d.targeted);
        assert_eq!(d.max_age, Some(Seconds::Valid(7)));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_field_values_never_panic(values in proptest::collection::vec(".{0,40}", 0..4)) {
            let mut h = HeaderMap::new();
            for v in &values {
                if let Ok(v) = HeaderValue::from_str(v) {
                    h.append(&CDN_CACHE_CONTROL, v);
                }
            }
            let _ = response_directives(&h, &[own(), CDN_CACHE_CONTROL.clone()]);
        }
    }

    #[test]
    fn directive_values_are_typed() {
        let d = directives(&[(
            "cdn-cache-control",
            "max-age=-1, s-maxage=\"9\", no-store=?0, private=\"set-cookie\", public",
        )]);
        assert_eq!(d.max_age, Some(Seconds::Invalid), "negative: stale");
        assert_eq!(d.s_maxage, None, "a String is not delta-seconds");
        assert!(!d.no_store);
        assert!(d.private && d.public);
    }
}
