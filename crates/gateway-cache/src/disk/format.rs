//! The entry file format: one file per stored variant.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "GHCE"
//!      4     1  version (1)
//!      5     1  flags: bit 0 = marked stale by a soft purge (outside the checksums)
//!      6     2  reserved, zero
//!      8     4  meta_len   (u32, little endian)
//!     12     8  body_len   (u64, little endian)
//!     20     4  meta_crc   (CRC-32 of the meta section)
//!     24     4  body_crc   (CRC-32 of the body)
//!     28     …  meta: key, Vary names, route, status, header fields, tags, freshness
//!      …     …  body
//! ```
//!
//! A file is valid only when its length is exactly `28 + meta_len +
//! body_len` and both checksums match, so a torn write (a crash between
//! write and rename leaves a `.tmp`, a crash after it may leave a short
//! file) or flipped bits are caught before anything is served. The flag
//! byte is outside the checksums so a soft purge can set it in place with
//! a one-byte write; any value other than 0 or 1 counts as corrupt.
//!
//! The meta section is a plain length-prefixed encoding (strings and byte
//! strings as a `u32` length then the bytes) rather than a serde format:
//! header values may be any bytes, and the decoder must refuse short or
//! oversized input without allocating what a corrupt length claims.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::key::VariantKey;
use crate::policy::Freshness;
use crate::storage::CachedResponse;

/// Bytes of the fixed header before the meta section.
pub(crate) const HEADER_LEN: usize = 28;
/// Offset of the flag byte, rewritten in place by a soft purge.
pub(crate) const FLAGS_OFFSET: u64 = 5;
/// Flag bit: marked stale by a soft purge.
pub(crate) const FLAG_STALE: u8 = 1;

const MAGIC: &[u8; 4] = b"GHCE";
const VERSION: u8 = 1;

/// Why an entry file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Shorter than its fixed header or its sections say.
    #[error("truncated entry ({0} bytes)")]
    Truncated(u64),
    /// Longer than its sections say.
    #[error("trailing bytes after the body")]
    Trailing,
    /// Not an entry file of this format.
    #[error("bad magic or version")]
    NotAnEntry,
    /// The flag byte holds an unknown value.
    #[error("unknown flags {0:#04x}")]
    Flags(u8),
    /// The meta section does not match its checksum.
    #[error("meta checksum mismatch")]
    MetaChecksum,
    /// The body does not match its checksum.
    #[error("body checksum mismatch")]
    BodyChecksum,
    /// The meta section matched its checksum but does not decode.
    #[error("invalid meta section: {0}")]
    Meta(&'static str),
}

/// The fixed header of an entry file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) stale: bool,
    pub(crate) meta_len: u32,
    pub(crate) body_len: u64,
    meta_crc: u32,
    body_crc: u32,
}

impl Head {
    /// The length the whole file must have.
    pub(crate) fn file_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.meta_len) + self.body_len
    }

    /// Parses the fixed header.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let Some(head) = bytes.get(..HEADER_LEN) else {
            return Err(FormatError::Truncated(bytes.len() as u64));
        };
        if &head[..4] != MAGIC || head[4] != VERSION || head[6..8] != [0, 0] {
            return Err(FormatError::NotAnEntry);
        }
        let stale = match head[5] {
            0 => false,
            FLAG_STALE => true,
            other => return Err(FormatError::Flags(other)),
        };
        let u32_at =
            |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let mut body_len = [0u8; 8];
        body_len.copy_from_slice(&head[12..20]);
        Ok(Self {
            stale,
            meta_len: u32_at(8),
            body_len: u64::from_le_bytes(body_len),
            meta_crc: u32_at(20),
            body_crc: u32_at(24),
        })
    }

    /// The fixed header for `meta` and `body`.
    pub(crate) fn encode(meta: &[u8], body: &[u8]) -> [u8; HEADER_LEN] {
        let mut head = [0u8; HEADER_LEN];
        head[..4].copy_from_slice(MAGIC);
        head[4] = VERSION;
        let meta_len = u32::try_from(meta.len()).unwrap_or(u32::MAX);
        head[8..12].copy_from_slice(&meta_len.to_le_bytes());
        head[12..20].copy_from_slice(&(body.len() as u64).to_le_bytes());
        head[20..24].copy_from_slice(&crc32fast::hash(meta).to_le_bytes());
        head[24..28].copy_from_slice(&crc32fast::hash(body).to_le_bytes());
        head
    }

    /// Checks the meta section against its checksum and decodes it.
    pub(crate) fn meta(&self, meta: &[u8]) -> Result<EntryMeta, FormatError> {
        if meta.len() as u64 != u64::from(self.meta_len) {
            return Err(FormatError::Truncated(meta.len() as u64));
        }
        if crc32fast::hash(meta) != self.meta_crc {
            return Err(FormatError::MetaChecksum);
        }
        EntryMeta::decode(meta)
    }
}

/// Everything in an entry but its body.
#[derive(Debug)]
pub(crate) struct EntryMeta {
    pub(crate) key: VariantKey,
    pub(crate) vary: Vec<HeaderName>,
    pub(crate) route: String,
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) tags: Vec<String>,
    pub(crate) freshness: Freshness,
}

/// The meta section of `object` stored under `key`.
pub(crate) fn encode_meta(
    key: &VariantKey,
    vary: &[HeaderName],
    object: &CachedResponse,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + object.headers.len() * 48);
    for part in [&key.url, &key.extra, &key.secondary] {
        put_bytes(&mut out, part.as_bytes());
    }
    put_u32(&mut out, vary.len());
    for name in vary {
        put_bytes(&mut out, name.as_str().as_bytes());
    }
    put_bytes(&mut out, object.route.as_bytes());
    out.extend_from_slice(&object.status.as_u16().to_le_bytes());
    put_u32(&mut out, object.headers.len());
    for (name, value) in &object.headers {
        put_bytes(&mut out, name.as_str().as_bytes());
        put_bytes(&mut out, value.as_bytes());
    }
    put_u32(&mut out, object.tags.len());
    for tag in &object.tags {
        put_bytes(&mut out, tag.as_bytes());
    }
    let f = &object.freshness;
    out.extend_from_slice(&f.request_time.timestamp_micros().to_le_bytes());
    out.extend_from_slice(&f.response_time.timestamp_micros().to_le_bytes());
    match f.date {
        Some(date) => {
            out.push(1);
            out.extend_from_slice(&date.timestamp_micros().to_le_bytes());
        }
        None => out.push(0),
    }
    for n in [
        f.age_value,
        f.lifetime,
        f.stale_while_revalidate,
        f.stale_if_error,
    ] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.push(u8::from(f.forbids_stale));
    out.push(u8::from(f.no_cache));
    out
}

/// A whole entry file checked and split: meta, body, stale flag.
pub(crate) fn decode(file: Bytes) -> Result<(EntryMeta, Bytes, bool), FormatError> {
    let head = Head::parse(&file)?;
    let len = file.len() as u64;
    if len < head.file_len() {
        return Err(FormatError::Truncated(len));
    }
    if len > head.file_len() {
        return Err(FormatError::Trailing);
    }
    let meta_end = HEADER_LEN + head.meta_len as usize;
    let meta = head.meta(&file[HEADER_LEN..meta_end])?;
    let body = file.slice(meta_end..);
    if crc32fast::hash(&body) != head.body_crc {
        return Err(FormatError::BodyChecksum);
    }
    Ok((meta, body, head.stale))
}

// === encoding helpers ===

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len());
    out.extend_from_slice(bytes);
}

// === impl EntryMeta (decoding) ===

/// Reads the meta section front to back; every read is bounds-checked.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if self.rest.len() < n {
            return Err(FormatError::Meta("section ends early"));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn count(&mut self) -> Result<usize, FormatError> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }

    fn bytes(&mut self) -> Result<&'a [u8], FormatError> {
        let n = self.count()?;
        self.take(n)
    }

    fn string(&mut self) -> Result<&'a str, FormatError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| FormatError::Meta("string is not UTF-8"))
    }

    fn header_name(&mut self) -> Result<HeaderName, FormatError> {
        HeaderName::from_bytes(self.bytes()?).map_err(|_| FormatError::Meta("invalid header name"))
    }

    fn time(&mut self) -> Result<DateTime<Utc>, FormatError> {
        DateTime::from_timestamp_micros(i64::from_le_bytes(self.array()?))
            .ok_or(FormatError::Meta("time out of range"))
    }

    fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn flag(&mut self) -> Result<bool, FormatError> {
        match self.array::<1>()?[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(FormatError::Meta("invalid boolean")),
        }
    }
}

impl EntryMeta {
    fn decode(meta: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader { rest: meta };
        let key = VariantKey {
            url: r.string()?.into(),
            extra: r.string()?.into(),
            secondary: r.string()?.into(),
        };
        let mut vary = Vec::new();
        for _ in 0..r.count()? {
            vary.push(r.header_name()?);
        }
        let route = r.string()?.to_string();
        let status = StatusCode::from_u16(u16::from_le_bytes(r.array()?))
            .map_err(|_| FormatError::Meta("invalid status"))?;
        let mut headers = HeaderMap::new();
        for _ in 0..r.count()? {
            let name = r.header_name()?;
            let value = HeaderValue::from_bytes(r.bytes()?)
                .map_err(|_| FormatError::Meta("invalid header value"))?;
            headers.append(name, value);
        }
        let mut tags = Vec::new();
        for _ in 0..r.count()? {
            tags.push(r.string()?.to_string());
        }
        let request_time = r.time()?;
        let response_time = r.time()?;
        let date = if r.flag()? { Some(r.time()?) } else { None };
        let freshness = Freshness {
            request_time,
            response_time,
            date,
            age_value: r.u64()?,
            lifetime: r.u64()?,
            stale_while_revalidate: r.u64()?,
            stale_if_error: r.u64()?,
            forbids_stale: r.flag()?,
            no_cache: r.flag()?,
        };
        if !r.rest.is_empty() {
            return Err(FormatError::Meta("bytes after the last field"));
        }
        Ok(Self {
            key,
            vary,
            route,
            status,
            headers,
            tags,
            freshness,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn object() -> (VariantKey, Vec<HeaderName>, CachedResponse) {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers.append("x-raw", HeaderValue::from_bytes(b"\xff bytes").unwrap());
        headers.append("x-raw", HeaderValue::from_static("second"));
        let key = VariantKey {
            url: "https://h/a?b=1".into(),
            extra: "tenant".into(),
            secondary: "accept=json".into(),
        };
        let obj = CachedResponse::new(
            Arc::from("route"),
            StatusCode::NOT_FOUND,
            headers,
            Bytes::from_static(b"the body"),
            vec!["t1".into(), "t2".into()],
            Freshness {
                request_time: t,
                response_time: t,
                date: Some(t),
                age_value: 3,
                lifetime: 60,
                stale_while_revalidate: 5,
                stale_if_error: 7,
                forbids_stale: true,
                no_cache: false,
            },
        );
        (key, vec![HeaderName::from_static("accept")], obj)
    }

    fn file() -> Vec<u8> {
        let (key, vary, obj) = object();
        let meta = encode_meta(&key, &vary, &obj);
        let mut file = Head::encode(&meta, &obj.body).to_vec();
        file.extend_from_slice(&meta);
        file.extend_from_slice(&obj.body);
        file
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let (key, vary, obj) = object();
        let (meta, body, stale) = decode(Bytes::from(file())).unwrap();
        assert_eq!(meta.key, key);
        assert_eq!(meta.vary, vary);
        assert_eq!(meta.route, "route");
        assert_eq!(meta.status, StatusCode::NOT_FOUND);
        assert_eq!(meta.headers, obj.headers);
        assert_eq!(meta.tags, obj.tags);
        assert_eq!(meta.freshness, obj.freshness);
        assert_eq!(body, obj.body);
        assert!(!stale);
    }

    #[test]
    fn any_flipped_byte_or_short_file_is_refused() {
        let good = file();
        for i in 0..good.len() {
            if i == FLAGS_OFFSET as usize {
                continue;
            }
            let mut bad = good.clone();
            bad[i] ^= 0x20;
            assert!(decode(Bytes::from(bad)).is_err(), "flip at {i} accepted");
        }
        for len in 0..good.len() {
            assert!(decode(Bytes::from(good[..len].to_vec())).is_err(), "{len}");
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            decode(Bytes::from(long)).unwrap_err(),
            FormatError::Trailing
        );
    }

    #[test]
    fn the_stale_flag_is_read_and_other_flags_refused() {
        let mut marked = file();
        marked[FLAGS_OFFSET as usize] = FLAG_STALE;
        assert!(decode(Bytes::from(marked.clone())).unwrap().2);
        marked[FLAGS_OFFSET as usize] = 7;
        assert_eq!(
            decode(Bytes::from(marked)).unwrap_err(),
            FormatError::Flags(7)
        );
    }
}
