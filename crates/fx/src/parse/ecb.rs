//! European Central Bank reference-rate formats.
//!
//! - CSV history (`Date,USD,JPY,...,` then one row per business day, `N/A`
//!   where a currency was not quoted), and the "latest day" CSV layout
//!   (`30 October 2026, 1.1172, ...` with spaces after commas);
//! - the zip the ECB serves the CSV in;
//! - XML (`gesmes:Envelope` / `Cube time=` / `Cube currency= rate=`), which
//!   is the same schema for the daily, 90-day and full-history files.
//!
//! All rates are units of the currency per 1 EUR.

use std::io::Read;

use chrono::NaiveDate;
use quick_xml::events::Event;

use super::{parse_rate, Batch, Fixing, Format, ParseError, MAX_INPUT_BYTES};
use crate::currency::CurrencyCode;

fn parse_date(text: &str) -> Option<NaiveDate> {
    let t = text.trim();
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(t, "%d %B %Y"))
        .ok()
}

/// Splits a CSV line; also says whether it ended with the ECB's trailing
/// comma, which is what reveals a row cut short inside its last number.
fn split_fields(line: &str) -> (Vec<&str>, bool) {
    let mut fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let trailing = fields.len() > 1 && fields.last().is_some_and(|f| f.is_empty());
    if trailing {
        fields.pop();
    }
    (fields, trailing)
}

/// Parses ECB CSV (history or latest-day layout).
pub fn parse_csv(bytes: &[u8]) -> Result<Batch, ParseError> {
    let f = Format::EcbCsv;
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ParseError::new(f, "file", format!("not UTF-8 text ({e})")))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split('\n').enumerate();
    let (_, header) = lines
        .find(|(_, l)| !l.trim().is_empty())
        .ok_or_else(|| ParseError::new(f, "file", "file is empty"))?;
    let (header, header_trailing) = split_fields(header.trim_end_matches('\r'));
    if !header[0].eq_ignore_ascii_case("date") {
        return Err(ParseError::new(
            f,
            "line 1, field 1",
            format!("expected a `Date` header, found `{}`", header[0]),
        ));
    }
    let mut currencies = Vec::with_capacity(header.len() - 1);
    for (i, name) in header[1..].iter().enumerate() {
        let code = CurrencyCode::parse(name)
            .map_err(|e| ParseError::new(f, format!("line 1, field {}", i + 2), e.to_string()))?;
        if code == CurrencyCode::EUR {
            return Err(ParseError::new(
                f,
                format!("line 1, field {}", i + 2),
                "EUR cannot be quoted against itself",
            ));
        }
        if currencies.contains(&code) {
            return Err(ParseError::new(
                f,
                format!("line 1, field {}", i + 2),
                format!("currency {code} appears twice in the header"),
            ));
        }
        currencies.push(code);
    }
    if currencies.is_empty() {
        return Err(ParseError::new(f, "line 1", "header names no currency"));
    }
    let mut fixings = Vec::with_capacity(8192);
    for (idx, raw) in lines {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let lineno = idx + 1;
        let (fields, trailing) = split_fields(line);
        if trailing != header_trailing {
            return Err(ParseError::new(
                f,
                format!("line {lineno}"),
                "row does not end with a comma like the header (truncated or inconsistent row)",
            ));
        }
        if fields.len() != currencies.len() + 1 {
            return Err(ParseError::new(
                f,
                format!("line {lineno}"),
                format!(
                    "expected {} fields as in the header, found {} (truncated or inconsistent row)",
                    currencies.len() + 1,
                    fields.len()
                ),
            ));
        }
        let date = parse_date(fields[0]).ok_or_else(|| {
            ParseError::new(
                f,
                format!("line {lineno}, field Date"),
                format!(
                    "`{}` is not a date",
                    fields[0].chars().take(32).collect::<String>()
                ),
            )
        })?;
        let mut rates = Vec::with_capacity(currencies.len());
        for (value, code) in fields[1..].iter().zip(&currencies) {
            if value.is_empty() || value.eq_ignore_ascii_case("N/A") {
                continue;
            }
            let rate = parse_rate(value)
                .map_err(|r| ParseError::new(f, format!("line {lineno}, field {code}"), r))?;
            rates.push((*code, rate));
        }
        fixings.push(Fixing { date, rates });
    }
    Batch {
        base: CurrencyCode::EUR,
        fixings,
    }
    .finish(f)
}

/// Parses the ECB zip: exactly one CSV inside.
pub fn parse_zip(bytes: &[u8]) -> Result<Batch, ParseError> {
    let f = Format::EcbZip;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| ParseError::new(f, "archive", format!("not a readable zip ({e})")))?;
    let mut csv_index = None;
    for i in 0..archive.len() {
        let entry = archive
            .by_index(i)
            .map_err(|e| ParseError::new(f, format!("entry {i}"), e.to_string()))?;
        if entry.name().to_ascii_lowercase().ends_with(".csv") {
            if csv_index.is_some() {
                return Err(ParseError::new(f, "archive", "more than one CSV inside"));
            }
            csv_index = Some(i);
        }
    }
    let i = csv_index.ok_or_else(|| ParseError::new(f, "archive", "no CSV inside"))?;
    let entry = archive
        .by_index(i)
        .map_err(|e| ParseError::new(f, format!("entry {i}"), e.to_string()))?;
    let name = entry.name().to_string();
    let mut data = Vec::with_capacity(entry.size().min(MAX_INPUT_BYTES as u64) as usize);
    // Reading one byte past the limit distinguishes "at the limit" from "over".
    entry
        .take(MAX_INPUT_BYTES as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| ParseError::new(f, name.clone(), format!("corrupt entry ({e})")))?;
    if data.len() > MAX_INPUT_BYTES {
        return Err(ParseError::new(f, name, "uncompressed CSV is too large"));
    }
    parse_csv(&data).map_err(|mut e| {
        e.format = f;
        e.location = format!("{name}: {}", e.location);
        e
    })
}

fn line_of(bytes: &[u8], pos: u64) -> usize {
    let end = (pos as usize).min(bytes.len());
    bytes[..end].iter().filter(|b| **b == b'\n').count() + 1
}

/// Parses ECB XML (daily, 90-day or full history).
pub fn parse_xml(bytes: &[u8]) -> Result<Batch, ParseError> {
    let f = Format::EcbXml;
    let mut reader = quick_xml::Reader::from_reader(bytes);
    reader.config_mut().trim_text(true);
    let mut depth = 0usize;
    let mut saw_root = false;
    let mut current: Option<Fixing> = None;
    let mut fixings = Vec::new();
    loop {
        let pos = reader.buffer_position();
        let ev = reader.read_event().map_err(|e| {
            ParseError::new(
                f,
                format!("line {}", line_of(bytes, pos)),
                format!("malformed XML ({e})"),
            )
        })?;
        let at = || format!("line {}", line_of(bytes, pos));
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(ev, Event::Empty(_));
                if !is_empty {
                    depth += 1;
                }
                saw_root = true;
                if e.local_name().as_ref() != b"Cube" {
                    continue;
                }
                let mut time = None;
                let mut currency = None;
                let mut rate = None;
                for attr in e.attributes() {
                    let attr =
                        attr.map_err(|e| ParseError::new(f, at(), format!("bad attribute ({e})")))?;
                    let value = attr
                        .unescape_value()
                        .map_err(|e| ParseError::new(f, at(), format!("bad attribute ({e})")))?
                        .into_owned();
                    match attr.key.local_name().as_ref() {
                        b"time" => time = Some(value),
                        b"currency" => currency = Some(value),
                        b"rate" => rate = Some(value),
                        _ => {}
                    }
                }
                match (time, currency, rate) {
                    (Some(t), None, None) => {
                        let date = parse_date(&t).ok_or_else(|| {
                            ParseError::new(f, at(), format!("`{t}` is not a date"))
                        })?;
                        if let Some(done) = current.take() {
                            fixings.push(done);
                        }
                        current = Some(Fixing {
                            date,
                            rates: Vec::new(),
                        });
                    }
                    (None, Some(c), Some(r)) => {
                        let code = CurrencyCode::parse(&c).map_err(|e| {
                            ParseError::new(f, format!("{}, currency", at()), e.to_string())
                        })?;
                        let rate = parse_rate(&r).map_err(|e| {
                            ParseError::new(f, format!("{}, rate of {code}", at()), e)
                        })?;
                        let day = current.as_mut().ok_or_else(|| {
                            ParseError::new(f, at(), "a rate appears outside a dated Cube")
                        })?;
                        day.rates.push((code, rate));
                    }
                    (None, None, None) => {}
                    _ => {
                        return Err(ParseError::new(
                            f,
                            at(),
                            "a Cube must carry either `time` or both `currency` and `rate`",
                        ))
                    }
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root || depth != 0 {
        return Err(ParseError::new(
            f,
            "end of file",
            "document is truncated (elements left open)",
        ));
    }
    if let Some(done) = current.take() {
        fixings.push(done);
    }
    Batch {
        base: CurrencyCode::EUR,
        fixings,
    }
    .finish(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
  <gesmes:subject>Reference rates</gesmes:subject>
  <gesmes:Sender><gesmes:name>European Central Bank</gesmes:name></gesmes:Sender>
  <Cube>
    <Cube time="2026-10-30">
      <Cube currency="USD" rate="1.1172"/>
      <Cube currency="JPY" rate="175.68"/>
    </Cube>
    <Cube time="2026-10-29">
      <Cube currency="USD" rate="1.1130"/>
    </Cube>
  </Cube>
</gesmes:Envelope>"#;

    #[test]
    fn parses_xml_days() {
        let b = parse_xml(XML.as_bytes()).unwrap();
        assert_eq!(b.fixings.len(), 2);
        assert_eq!(b.fixings[0].date.to_string(), "2026-10-29");
        assert_eq!(b.fixings[1].rates.len(), 2);
        assert_eq!(b.fixings[1].rates[1].1.to_string(), "1.1172");
    }

    #[test]
    fn truncated_xml_is_rejected() {
        let cut = &XML[..XML.len() - 40];
        let e = parse_xml(cut.as_bytes()).unwrap_err();
        assert!(
            e.reason.contains("truncated") || e.reason.contains("malformed"),
            "{e}"
        );
    }

    #[test]
    fn xml_with_bad_rate_names_line_and_currency() {
        let bad = XML.replace("175.68", "17x5");
        let e = parse_xml(bad.as_bytes()).unwrap_err();
        assert!(e.location.contains("JPY"), "{e}");
        assert!(e.location.starts_with("line 7"), "{e}");
    }

    #[test]
    fn parses_latest_day_layout() {
        let b = parse_csv(include_bytes!("../../data/eurofxref.csv")).unwrap();
        assert_eq!(b.fixings.len(), 1);
        assert_eq!(b.fixings[0].date.to_string(), "2026-10-30");
        let jpy = CurrencyCode::parse("JPY").unwrap();
        let r = b.fixings[0].rates.iter().find(|r| r.0 == jpy).unwrap();
        assert_eq!(r.1.to_string(), "175.68");
    }

    #[test]
    fn csv_errors_name_line_and_field() {
        let e = parse_csv(b"Date,USD,JPY,\n2026-10-30,1.1,abc,\n").unwrap_err();
        assert_eq!(e.location, "line 2, field JPY");
        let e = parse_csv(b"Date,USD,JPY,\n2026-10-30,1.1,170,\n2026-10-29,1.1").unwrap_err();
        assert_eq!(e.location, "line 3");
        let e = parse_csv(b"Date,USD,XXX,\n").unwrap_err();
        assert_eq!(e.location, "line 1, field 3");
        let e = parse_csv(b"Date,USD,\n2026-10-30,1.1,\n2026-10-30,1.2,\n").unwrap_err();
        assert!(e.reason.contains("twice"), "{e}");
        let e = parse_csv(b"Date,USD,\n30/10/2026,1.1,\n").unwrap_err();
        assert_eq!(e.location, "line 2, field Date");
        assert!(parse_csv(b"").is_err());
    }

    #[test]
    fn corrupt_zip_is_rejected() {
        let zip = include_bytes!("../../data/eurofxref-hist.zip");
        let e = parse_zip(&zip[..zip.len() / 2]).unwrap_err();
        assert_eq!(e.format, Format::EcbZip);
    }
}
