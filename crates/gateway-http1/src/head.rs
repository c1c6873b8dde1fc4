//! Request and response heads from raw bytes.
//!
//! Parsing runs in two steps: `httparse` checks the syntax and finds each
//! piece (method, target, fields) as an offset into the buffer; then the
//! head's bytes are frozen into one shared `Bytes` and every header value
//! and the target become slices of it, so no field is copied or allocated
//! on its own. [`parse_request_head`] and [`parse_response_head`] take a
//! plain slice (they copy the head once) for tests and fuzzing; the
//! connection driver uses the zero-copy path.

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, CONNECTION, CONTENT_LENGTH};
use http::{HeaderMap, HeaderName, Method, StatusCode, Uri, Version};

use crate::error::HeadError;
use crate::field_name::field_name;
use crate::framing::{self, Facts, RequestBody, ResponseBody};

/// Size limits on a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Longest request line (or status line), CRLF excluded: 414 beyond.
    pub max_line: usize,
    /// Largest head, request line and fields included: 431 beyond.
    pub max_head: usize,
    /// Most header fields: 431 beyond. At most [`MAX_HEADERS`].
    pub max_headers: usize,
}

/// The largest `max_headers` the parser supports.
pub const MAX_HEADERS: usize = 256;

/// Default longest request line, as nginx's `large_client_header_buffers`.
pub const DEFAULT_MAX_LINE: usize = 8 * 1024;
/// Default largest head.
pub const DEFAULT_MAX_HEAD: usize = 64 * 1024;
/// Default most header fields.
pub const DEFAULT_MAX_HEADERS: usize = 100;

impl Default for HeadLimits {
    fn default() -> Self {
        Self {
            max_line: DEFAULT_MAX_LINE,
            max_head: DEFAULT_MAX_HEAD,
            max_headers: DEFAULT_MAX_HEADERS,
        }
    }
}

/// The outcome of parsing what has arrived so far.
#[derive(Debug)]
pub enum Parsed<T> {
    /// The head is not complete yet: read more.
    Partial,
    /// A whole head of `len` bytes.
    Complete {
        /// The head.
        head: T,
        /// Its length in the buffer; the body (or the next message) follows.
        len: usize,
    },
}

/// A request head, checked and with its body framing decided.
#[derive(Debug)]
pub struct RequestHead {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    /// The fields as received, except that repeated identical
    /// `Content-Length`s are one and a `Connection` that says only
    /// `close` or `keep-alive` is left out (see `keep_alive`).
    pub headers: HeaderMap,
    pub body: RequestBody,
    /// Whether the client keeps the connection open after this exchange
    /// (HTTP/1.1 unless `Connection: close`; HTTP/1.0 with `keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// An HTTP/1.1 upgrade request (`Connection: upgrade` and `Upgrade`).
    pub upgrade: bool,
}

/// A response head, checked.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    /// The fields as received, except as for [`RequestHead::headers`].
    pub headers: HeaderMap,
    /// The framing the fields declare; see [`ResponseHead::body_for`].
    pub declared: ResponseBody,
    /// Whether the server keeps the connection open after this exchange,
    /// as its version and `Connection` say (a close-delimited body ends
    /// the connection regardless).
    pub keep_alive: bool,
}

impl ResponseHead {
    /// The body framing for a response to `method` (RFC 9112 6.3): none
    /// for HEAD, 1xx, 204 and 304, else what the fields declare.
    pub fn body_for(&self, method: &Method) -> ResponseBody {
        if method == Method::HEAD
            || self.status.is_informational()
            || self.status == StatusCode::NO_CONTENT
            || self.status == StatusCode::NOT_MODIFIED
        {
            ResponseBody::None
        } else {
            self.declared
        }
    }
}

/// Parses a request head from the start of `buf`.
pub fn parse_request_head(
    buf: &[u8],
    limits: &HeadLimits,
) -> Result<Parsed<RequestHead>, HeadError> {
    match scan_request(buf, limits)? {
        None => Ok(Parsed::Partial),
        Some(scan) => {
            let len = scan.len;
            let head = build_request(scan, Bytes::copy_from_slice(&buf[..len]))?;
            Ok(Parsed::Complete { head, len })
        }
    }
}

/// Parses a request head from the start of `buf` and, when it is complete,
/// takes its bytes out of `buf` (the body or next request stays).
pub fn take_request_head(
    buf: &mut BytesMut,
    limits: &HeadLimits,
) -> Result<Option<RequestHead>, HeadError> {
    match scan_request(buf, limits)? {
        None => Ok(None),
        Some(scan) => {
            let bytes = buf.split_to(scan.len).freeze();
            build_request(scan, bytes).map(Some)
        }
    }
}

/// Parses a response head from the start of `buf`.
pub fn parse_response_head(
    buf: &[u8],
    limits: &HeadLimits,
) -> Result<Parsed<ResponseHead>, HeadError> {
    match scan_response(buf, limits)? {
        None => Ok(Parsed::Partial),
        Some(scan) => {
            let len = scan.len;
            let head = build_response(scan, Bytes::copy_from_slice(&buf[..len]))?;
            Ok(Parsed::Complete { head, len })
        }
    }
}

/// Parses a response head from the start of `buf` and, when it is
/// complete, takes its bytes out of `buf`.
pub fn take_response_head(
    buf: &mut BytesMut,
    limits: &HeadLimits,
) -> Result<Option<ResponseHead>, HeadError> {
    match scan_response(buf, limits)? {
        None => Ok(None),
        Some(scan) => {
            let bytes = buf.split_to(scan.len).freeze();
            build_response(scan, bytes).map(Some)
        }
    }
}

// === scanning ===

/// Each field's name and where its value is in the buffer.
type Fields = Vec<(HeaderName, Range<usize>)>;

/// Where the pieces of a head are, as offsets into the buffer.
struct Scan {
    len: usize,
    /// Method and target (requests), or the status code (responses).
    method: Range<usize>,
    target: Range<usize>,
    status: u16,
    version: Version,
    fields: Fields,
    facts: Facts,
}

fn offset(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

/// The fields `httparse` found, each name classified once (the framing
/// rules and the header map both work from it), and what they say about
/// framing.
fn fields(buf: &[u8], parsed: &[httparse::Header<'_>]) -> Result<(Fields, Facts), HeadError> {
    let mut fields = Vec::with_capacity(parsed.len());
    for h in parsed {
        let name = field_name(h.name.as_bytes())
            .map_err(|_| HeadError::Malformed("invalid header field name"))?;
        fields.push((name, offset(buf, h.value)));
    }
    let facts = framing::facts(
        fields
            .iter()
            .map(|(name, value)| (name, &buf[value.clone()])),
    )?;
    Ok((fields, facts))
}

/// Checks the first line's length before `httparse` reads it.
fn check_line(buf: &[u8], limits: &HeadLimits) -> Result<(), HeadError> {
    let window = &buf[..buf.len().min(limits.max_line + 2)];
    match memchr::memchr(b'\n', window) {
        // Line plus CR.
        Some(i) if i > limits.max_line + 1 => Err(HeadError::RequestLineTooLong(limits.max_line)),
        Some(_) => Ok(()),
        None if window.len() > limits.max_line + 1 => {
            Err(HeadError::RequestLineTooLong(limits.max_line))
        }
        None => Ok(()),
    }
}

/// Every line of the head must end in CRLF: a bare LF is read as a line
/// end by some parsers and not by others.
fn check_line_ends(head: &[u8]) -> Result<(), HeadError> {
    // One pass without a branch per byte, which the compiler vectorises: a
    // head has a dozen lines or so, and finding each LF on its own (with
    // `memchr`) cost more than looking at every byte.
    let following = head.get(1..).unwrap_or_default();
    let bare = head.first() == Some(&b'\n')
        || head.iter().zip(following).fold(false, |bare, (&prev, &b)| {
            bare | ((b == b'\n') & (prev != b'\r'))
        });
    if bare {
        return Err(HeadError::Malformed("a line ends in a bare LF"));
    }
    Ok(())
}

fn parse_error(e: httparse::Error, limits: &HeadLimits) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders(limits.max_headers),
        httparse::Error::Version => HeadError::Version,
        httparse::Error::HeaderName => {
            HeadError::Malformed("invalid header field name (or an obsolete line folding)")
        }
        httparse::Error::HeaderValue => HeadError::Malformed("invalid character in a header value"),
        httparse::Error::Token => HeadError::Malformed("invalid method"),
        httparse::Error::NewLine => HeadError::Malformed("invalid line ending"),
        httparse::Error::Status => HeadError::Malformed("invalid status code"),
    }
}

fn scan_request(buf: &[u8], limits: &HeadLimits) -> Result<Option<Scan>, HeadError> {
    check_line(buf, limits)?;
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let parsed =
        req.parse_with_uninit_headers(buf, &mut slots[..limits.max_headers.min(MAX_HEADERS)]);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_head {
                return Err(HeadError::HeadTooLarge(limits.max_head));
            }
            return Ok(None);
        }
        Err(e) => return Err(parse_error(e, limits)),
    };
    if len > limits.max_head {
        return Err(HeadError::HeadTooLarge(limits.max_head));
    }
    check_line_ends(&buf[..len])?;
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(HeadError::Version),
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(HeadError::Malformed("invalid request line"));
    };
    let (fields, facts) = fields(buf, req.headers)?;
    Ok(Some(Scan {
        len,
        method: offset(buf, method.as_bytes()),
        target: offset(buf, target.as_bytes()),
        status: 0,
        version,
        fields,
        facts,
    }))
}

fn scan_response(buf: &[u8], limits: &HeadLimits) -> Result<Option<Scan>, HeadError> {
    check_line(buf, limits)?;
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        buf,
        &mut slots[..limits.max_headers.min(MAX_HEADERS)],
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_head {
                return Err(HeadError::HeadTooLarge(limits.max_head));
            }
            return Ok(None);
        }
        Err(e) => return Err(parse_error(e, limits)),
    };
    if len > limits.max_head {
        return Err(HeadError::HeadTooLarge(limits.max_head));
    }
    check_line_ends(&buf[..len])?;
    let version = match res.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(HeadError::Version),
    };
    let status = res
        .code
        .ok_or(HeadError::Malformed("invalid status code"))?;
    let (fields, facts) = fields(buf, res.headers)?;
    Ok(Some(Scan {
        len,
        method: 0..0,
        target: 0..0,
        status,
        version,
        fields,
        facts,
    }))
}

// === building ===

/// Fields a gateway typically adds to a parsed head before passing it on.
const ADDED_FIELDS: usize = 8;

fn header_map(fields: Fields, facts: &Facts, bytes: &Bytes) -> Result<HeaderMap, HeadError> {
    // Room for the fields a proxy adds (forwarding, request id, trace
    // context): growing the map later rehashes it.
    let mut headers = HeaderMap::with_capacity(fields.len() + ADDED_FIELDS);
    let mut length_written = false;
    for (name, value) in fields {
        // `Connection: keep-alive` or `close` speaks to this hop only, and
        // what it says is the head's `keep_alive`: a proxy would remove it
        // at once, so it is not put in the map. A `Connection` that names
        // anything else (an upgrade, fields to drop) stays, for the
        // proxy's own hop-by-hop rules.
        if name == CONNECTION && !facts.connection_names {
            continue;
        }
        if name == CONTENT_LENGTH {
            // Repeats were checked to be identical: one is kept.
            if length_written {
                continue;
            }
            length_written = true;
            if facts.content_length_values > 1 {
                let n = facts.content_length.unwrap_or_default();
                headers.append(name, HeaderValue::from(n));
                continue;
            }
        }
        let value = HeaderValue::from_maybe_shared(bytes.slice(value))
            .map_err(|_| HeadError::Malformed("invalid character in a header value"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

fn build_request(scan: Scan, bytes: Bytes) -> Result<RequestHead, HeadError> {
    let method = Method::from_bytes(&bytes[scan.method.clone()])
        .map_err(|_| HeadError::Malformed("invalid method"))?;
    let uri = Uri::from_maybe_shared(bytes.slice(scan.target.clone()))
        .map_err(|_| HeadError::Malformed("invalid request target"))?;
    let f = &scan.facts;
    let body = if f.transfer_encoding {
        if scan.version == Version::HTTP_10 {
            return Err(HeadError::Malformed(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        if f.other_codings {
            return Err(HeadError::UnsupportedCoding);
        }
        RequestBody::Chunked
    } else {
        match f.content_length {
            Some(0) | None => RequestBody::None,
            Some(n) => RequestBody::Length(n),
        }
    };
    let keep_alive = match scan.version {
        Version::HTTP_11 => !f.close,
        _ => f.keep_alive && !f.close,
    };
    let upgrade = scan.version == Version::HTTP_11 && f.upgrade && f.connection_upgrade;
    let expect_continue = f.expect_continue && scan.version == Version::HTTP_11;
    let headers = header_map(scan.fields, &scan.facts, &bytes)?;
    Ok(RequestHead {
        method,
        uri,
        version: scan.version,
        headers,
        body,
        keep_alive,
        expect_continue,
        upgrade,
    })
}

fn build_response(scan: Scan, bytes: Bytes) -> Result<ResponseHead, HeadError> {
    let status = StatusCode::from_u16(scan.status)
        .map_err(|_| HeadError::Malformed("invalid status code"))?;
    let f = &scan.facts;
    let declared = if f.transfer_encoding {
        if f.other_codings {
            return Err(HeadError::UnsupportedCoding);
        }
        ResponseBody::Chunked
    } else {
        match f.content_length {
            Some(n) => ResponseBody::Length(n),
            None => ResponseBody::CloseDelimited,
        }
    };
    let keep_alive = match scan.version {
        Version::HTTP_11 => !f.close,
        _ => f.keep_alive && !f.close,
    };
    let headers = header_map(scan.fields, &scan.facts, &bytes)?;
    Ok(ResponseHead {
        status,
        version: scan.version,
        headers,
        declared,
        keep_alive,
    })
}
