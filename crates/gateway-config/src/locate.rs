//! Maps key paths (`routes[2].cluster`) back to lines in the source text, so
//! validation errors point where the operator must look.

use gateway_core::ConfigIssue;
use toml_edit::{ImDocument, Item};

use crate::error::Issue;

/// 1-based line and column of byte `offset` in `source`.
pub(crate) fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

pub(crate) fn locate_all(source: &str, raw: Vec<ConfigIssue>) -> Vec<Issue> {
    let doc = ImDocument::parse(source).ok();
    let mut issues: Vec<Issue> = raw
        .into_iter()
        .map(|ConfigIssue { path, message }| {
            let (line, column) = doc
                .as_ref()
                .and_then(|d| span_of(d, &path))
                .map(|offset| line_col(source, offset))
                .unwrap_or((0, 0));
            Issue {
                line,
                column,
                path,
                message,
            }
        })
        .collect();
    issues.sort_by_key(|i| (i.line, i.column));
    issues
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while let Some(close) = rest.find(']') {
            if let Ok(n) = rest[1..close].parse() {
                out.push(Segment::Index(n));
            }
            rest = &rest[close + 1..];
        }
    }
    out
}

/// Byte offset of the deepest part of `path` that exists in the document.
fn span_of(doc: &ImDocument<&str>, path: &str) -> Option<usize> {
    let mut item: &Item = doc.as_item();
    let mut best = None;
    for seg in segments(path) {
        match seg {
            Segment::Key(k) => {
                let key_span = item
                    .as_table_like()
                    .and_then(|t| t.get_key_value(k))
                    .and_then(|(key, _)| key.span());
                let Some(next) = item.get(k) else { break };
                best = key_span.or_else(|| next.span()).map(|s| s.start).or(best);
                item = next;
            }
            Segment::Index(n) => {
                let Some(next) = item.get(n) else { break };
                best = next
                    .span()
                    .or_else(|| next.as_table().and_then(|t| t.span()))
                    .map(|s| s.start)
                    .or(best);
                item = next;
            }
        }
    }
    best
}
