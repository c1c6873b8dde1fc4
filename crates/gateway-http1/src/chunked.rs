//! The chunked transfer coding (RFC 9112 section 7.1), decoded
//! incrementally from a buffer that fills as bytes arrive.
//!
//! Strict where parsers disagree: a chunk size is 1 to 16 hex digits
//! (no sign, no `0x`, no overflow), every line ends in CRLF (a bare LF or
//! a missing CRLF after the data is an error), extensions are read and
//! dropped but bounded, and the trailer section is bounded and parsed as
//! header fields.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

/// Longest chunk-size line (size, extensions, CRLF).
pub const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Largest trailer section.
pub const MAX_TRAILERS: usize = 16 * 1024;

/// One piece of a decoded body.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Body bytes.
    Data(Bytes),
    /// The last chunk's trailer fields (only when there are any).
    Trailers(HeaderMap),
    /// The body is complete.
    End,
}

/// Why a chunked body is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid chunked body: {}", self.0)
    }
}

impl std::error::Error for ChunkError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
    /// Done.
    Done,
}

/// Decodes a chunked body; feed it the connection's read buffer.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self { state: State::Size }
    }

    /// Whether the last chunk and trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Takes what it can from the front of `buf`: `Ok(None)` when more
    /// bytes are needed. Body bytes come out as they arrive, at most
    /// `max_data` at a time; nothing after the body's end is consumed.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        max_data: usize,
    ) -> Result<Option<Chunk>, ChunkError> {
        loop {
            match self.state {
                State::Size => {
                    let Some(line_end) = find_line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(None);
                    };
                    let size = chunk_size(&buf[..line_end])?;
                    buf.advance(line_end + 2);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(buf.len())
                        .min(max_data.max(1));
                    let data = buf.split_to(n).freeze();
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Some(Chunk::Data(data)));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|b| *b != b'\r') {
                            return Err(ChunkError("chunk data not followed by CRLF"));
                        }
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkError("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => {
                    // The common case: no trailers, just the final CRLF.
                    if buf.len() >= 2 && &buf[..2] == b"\r\n" {
                        buf.advance(2);
                        self.state = State::Done;
                        return Ok(Some(Chunk::End));
                    }
                    let Some(end) = find_section_end(buf)? else {
                        return Ok(None);
                    };
                    let section = buf.split_to(end).freeze();
                    self.state = State::Done;
                    let trailers = parse_trailers(&section)?;
                    return Ok(Some(Chunk::Trailers(trailers)));
                }
                State::Done => return Ok(Some(Chunk::End)),
            }
        }
    }
}

/// The position of the CR of the first line's CRLF, if the line is
/// complete; a bare LF or a line over `max` is an error.
fn find_line(buf: &[u8], max: usize) -> Result<Option<usize>, ChunkError> {
    let window = &buf[..buf.len().min(max)];
    match memchr::memchr(b'\n', window) {
        Some(0) => Err(ChunkError("bare LF")),
        Some(i) if buf[i - 1] != b'\r' => Err(ChunkError("bare LF")),
        Some(i) => Ok(Some(i - 1)),
        None if window.len() >= max => Err(ChunkError("chunk-size line too long")),
        None => Ok(None),
    }
}

/// `chunk-size [ chunk-ext ]`: hex digits, then optional whitespace and
/// `;`-led extensions, which are dropped.
fn chunk_size(line: &[u8]) -> Result<u64, ChunkError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(ChunkError("chunk size is not hexadecimal"));
    }
    if digits > 16 {
        return Err(ChunkError("chunk size overflows"));
    }
    let mut size: u64 = 0;
    for b in &line[..digits] {
        let d = (*b as char).to_digit(16).unwrap_or(0);
        size = (size << 4) | u64::from(d);
    }
    let rest = &line[digits..];
    let rest = &rest[rest
        .iter()
        .take_while(|b| **b == b' ' || **b == b'\t')
        .count()..];
    match rest.first() {
        None => Ok(size),
        Some(b';') => {
            // Extensions: visible characters, whitespace, quoted strings;
            // no control characters.
            if rest
                .iter()
                .any(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f)
            {
                return Err(ChunkError("invalid character in a chunk extension"));
            }
            Ok(size)
        }
        Some(_) => Err(ChunkError("chunk size is not hexadecimal")),
    }
}

/// The length of the trailer section up to and including its empty line.
fn find_section_end(buf: &[u8]) -> Result<Option<usize>, ChunkError> {
    let window = &buf[..buf.len().min(MAX_TRAILERS)];
    let mut line_start = 0;
    for i in memchr::memchr_iter(b'\n', window) {
        if i == 0 || window[i - 1] != b'\r' {
            return Err(ChunkError("bare LF"));
        }
        if i == line_start + 1 {
            return Ok(Some(i + 1));
        }
        line_start = i + 1;
    }
    if window.len() >= MAX_TRAILERS {
        return Err(ChunkError("trailer section too large"));
    }
    Ok(None)
}

fn parse_trailers(section: &Bytes) -> Result<HeaderMap, ChunkError> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let fields = match httparse::parse_headers(section, &mut slots) {
        Ok(httparse::Status::Complete((_, fields))) => fields,
        Ok(httparse::Status::Partial) => return Err(ChunkError("incomplete trailer section")),
        Err(_) => return Err(ChunkError("invalid trailer field")),
    };
    let mut map = HeaderMap::with_capacity(fields.len());
    for f in fields {
        let name = HeaderName::from_bytes(f.name.as_bytes())
            .map_err(|_| ChunkError("invalid trailer field name"))?;
        let value = HeaderValue::from_bytes(f.value)
            .map_err(|_| ChunkError("invalid trailer field value"))?;
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes all of `input` fed one byte at a time: the body, the
    /// trailers, and what is left after the end.
    fn decode_bytewise(input: &[u8]) -> Result<(Vec<u8>, HeaderMap, Vec<u8>), ChunkError> {
        let mut d = ChunkedDecoder::new();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut trailers = HeaderMap::new();
        let mut fed = 0;
        loop {
            match d.decode(&mut buf, 1 << 20)? {
                Some(Chunk::Data(b)) => body.extend_from_slice(&b),
                Some(Chunk::Trailers(t)) => trailers = t,
                Some(Chunk::End) => {
                    return Ok((body, trailers, [&buf[..], &input[fed..]].concat()))
                }
                None => {
                    if fed == input.len() {
                        return Err(ChunkError("truncated"));
                    }
                    buf.extend_from_slice(&input[fed..=fed]);
                    fed += 1;
                }
            }
        }
    }

    #[test]
    fn decodes_sizes_extensions_and_trailers() {
        let (body, t, rest) =
            decode_bytewise(b"5\r\nhello\r\nA;name=\"v\"\r\n0123456789\r\n0\r\n\r\nNEXT").unwrap();
        assert_eq!(body, b"hello0123456789");
        assert!(t.is_empty());
        assert_eq!(rest, b"NEXT");
        let (body, t, _) =
            decode_bytewise(b"a\r\n0123456789\r\n0\r\nX-Sum: 9\r\nX-B: 1\r\n\r\n").unwrap();
        assert_eq!(body, b"0123456789");
        assert_eq!(t["x-sum"], "9");
        assert_eq!(t["x-b"], "1");
        let (body, _, _) = decode_bytewise(b"00003 ; ext\r\nabc\r\n0\r\n\r\n").unwrap();
        assert_eq!(body, b"abc");
    }

    #[test]
    fn refuses_what_parsers_disagree_on() {
        for bad in [
            &b"g\r\n"[..],
            b"-1\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"0\r\nX: 1\n\r\n",
            b"5 5\r\nhello\r\n",
            b"\r\n",
            b"5;a\x00b\r\nhello\r\n",
        ] {
            assert!(
                decode_bytewise(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Sixteen hex digits fit in 64 bits.
        let mut d = ChunkedDecoder::new();
        let mut buf = BytesMut::from(&b"FFFFFFFFFFFFFFFF\r\nab"[..]);
        assert_eq!(
            d.decode(&mut buf, 1024).unwrap(),
            Some(Chunk::Data(Bytes::from_static(b"ab")))
        );
    }

    #[test]
    fn bounds_lines_and_trailers() {
        let mut long = b"5;".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_CHUNK_LINE));
        assert_eq!(
            decode_bytewise(&long).unwrap_err(),
            ChunkError("chunk-size line too long")
        );
        let mut trailers = b"0\r\n".to_vec();
        while trailers.len() < MAX_TRAILERS + 10 {
            trailers.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(
            decode_bytewise(&trailers).unwrap_err(),
            ChunkError("trailer section too large")
        );
    }
}
