//! JSON path patterns for `compare.ignore_paths`: `$.a.b`, `$.items[*].id`,
//! `$.*.ts`, `$..trace_id`, `$['odd key']`, and the literal fields `status`,
//! `body` and `header:<name>`.
//!
//! Its own module because both the comparator (matching) and the launch
//! config (validation) need it, and neither should import the other for it.

/// A segment of a parsed JSON path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    AnyKey,
    AnyIndex,
    /// `..`: zero or more segments.
    Descend,
}

/// An ignore pattern over field keys: `$.a.b`, `$.items[*].id`, `$.*.ts`,
/// `$..trace_id`, `$['odd key']`. Indices in patterns (`[3]`) match any index
/// because statistics are kept per folded field. A pattern also matches
/// everything below what it names. The special fields `status`, `body` and
/// `header:<name>` are matched literally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    literal: Option<String>,
    segs: Vec<Seg>,
}

impl PathPattern {
    /// Parses a pattern; the error says what is wrong and where.
    pub fn parse(p: &str) -> Result<Self, String> {
        if p == "status" || p == "body" || p.starts_with("header:") {
            return Ok(Self {
                literal: Some(p.to_ascii_lowercase()),
                segs: Vec::new(),
            });
        }
        let Some(rest) = p.strip_prefix('$') else {
            return Err(format!("{p:?} must start with '$' (e.g. $.meta.ts)"));
        };
        Ok(Self {
            literal: None,
            segs: parse_segments(rest).map_err(|e| format!("{p:?}: {e}"))?,
        })
    }

    /// Whether `field` (a folded field key) is matched.
    pub fn matches(&self, field: &str) -> bool {
        if let Some(l) = &self.literal {
            return field.eq_ignore_ascii_case(l);
        }
        let Some(rest) = field.strip_prefix('$') else {
            return false;
        };
        let Ok(segs) = parse_segments(rest) else {
            return false;
        };
        match_segs(&self.segs, &segs)
    }
}

fn match_segs(pat: &[Seg], field: &[Seg]) -> bool {
    match pat.first() {
        // Pattern exhausted: it names an ancestor of (or) the field.
        None => true,
        Some(Seg::Descend) => (0..=field.len()).any(|i| match_segs(&pat[1..], &field[i..])),
        Some(p) => match field.first() {
            None => false,
            Some(f) => {
                let ok = match (p, f) {
                    (Seg::Key(a), Seg::Key(b)) => a == b,
                    (Seg::AnyKey, Seg::Key(_)) => true,
                    (Seg::AnyIndex, Seg::AnyIndex) => true,
                    _ => false,
                };
                ok && match_segs(&pat[1..], &field[1..])
            }
        },
    }
}

fn parse_segments(mut s: &str) -> Result<Vec<Seg>, String> {
    let mut segs = Vec::new();
    while !s.is_empty() {
        if let Some(r) = s.strip_prefix("..") {
            segs.push(Seg::Descend);
            s = r;
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                if r.starts_with('[') {
                    continue;
                }
                return Err("'..' must be followed by a key".into());
            }
            segs.push(key_seg(&r[..end]));
            s = &r[end..];
        } else if let Some(r) = s.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return Err("empty key after '.'".into());
            }
            segs.push(key_seg(&r[..end]));
            s = &r[end..];
        } else if let Some(r) = s.strip_prefix("['") {
            let mut key = String::new();
            let mut chars = r.char_indices();
            let mut close = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            key.push(n);
                        }
                    }
                    '\'' => {
                        close = Some(i);
                        break;
                    }
                    c => key.push(c),
                }
            }
            let Some(i) = close else {
                return Err("unterminated ['...'] key".into());
            };
            let r = &r[i + 1..];
            let Some(r) = r.strip_prefix(']') else {
                return Err("expected ']' after quoted key".into());
            };
            segs.push(Seg::Key(key));
            s = r;
        } else if let Some(r) = s.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return Err("unterminated '['".into());
            };
            let inner = &r[..end];
            if inner != "*" && inner.parse::<usize>().is_err() {
                return Err(format!("[{inner}] is neither [*] nor an index"));
            }
            segs.push(Seg::AnyIndex);
            s = &r[end + 1..];
        } else {
            return Err(format!("unexpected {:?}; expected '.', '..' or '['", s));
        }
    }
    Ok(segs)
}

fn key_seg(k: &str) -> Seg {
    if k == "*" {
        Seg::AnyKey
    } else {
        Seg::Key(k.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns_parse_and_match() {
        let m = |p: &str, f: &str| PathPattern::parse(p).unwrap().matches(f);
        assert!(m("$.a.b", "$.a.b"));
        assert!(m("$.a", "$.a.b[*].c"));
        assert!(!m("$.a.b", "$.a"));
        assert!(m("$.items[0].id", "$.items[*].id"));
        assert!(m("$.*.ts", "$.x.ts"));
        assert!(m("$..ts", "$.a[*].b.ts"));
        assert!(m("$..ts", "$.ts"));
        assert!(m("$['a b'].c", "$['a b'].c"));
        assert!(m("header:Date", "header:date"));
        assert!(PathPattern::parse("rates")
            .unwrap_err()
            .contains("must start with '$'"));
        assert!(PathPattern::parse("$.a[x]").unwrap_err().contains("[x]"));
        assert!(PathPattern::parse("$.a['b").is_err());
        assert!(PathPattern::parse("$.").is_err());
    }
}
