//! Heads and chunks written out.
//!
//! A head is written into one buffer with its framing fields; the caller
//! appends a small body to the same buffer so both go out in one write.
//! Field names are written as `http` keeps them (lower case).

use bytes::{BufMut, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderMap, Method, StatusCode, Uri, Version};

use crate::date::with_date;

/// How a written message's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body and no length field (1xx, 204, or a request without body).
    None,
    /// `Content-Length: n`, then n bytes (also used for HEAD responses,
    /// where the length describes the body a GET would get).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// No length: the body ends when the connection closes.
    Close,
}

/// What the connection does after a response, as the head announces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// HTTP/1.1 default: nothing to say.
    Default,
    /// `Connection: keep-alive` (to an HTTP/1.0 client that asked for it).
    KeepAlive,
    /// `Connection: close`.
    Close,
}

/// Writes an HTTP/1.1 status line, `headers` (minus any framing and
/// `Connection` fields, which are decided here), the framing field, the
/// `Connection` field and `Date` if `headers` has none.
pub fn response_head(
    dst: &mut BytesMut,
    status: StatusCode,
    headers: &HeaderMap,
    framing: Framing,
    persistence: Persistence,
) {
    dst.reserve(64 + headers.len() * 32);
    dst.put_slice(b"HTTP/1.1 ");
    dst.put_slice(status.as_str().as_bytes());
    dst.put_u8(b' ');
    dst.put_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    dst.put_slice(b"\r\n");
    fields(dst, headers);
    framing_field(dst, framing);
    match persistence {
        Persistence::Default => {}
        Persistence::KeepAlive => dst.put_slice(b"connection: keep-alive\r\n"),
        Persistence::Close => dst.put_slice(b"connection: close\r\n"),
    }
    if !headers.contains_key(DATE) {
        dst.put_slice(b"date: ");
        with_date(|d| dst.put_slice(d));
        dst.put_slice(b"\r\n");
    }
    dst.put_slice(b"\r\n");
}

/// Writes an interim (1xx) response head as received fields say.
pub fn interim_head(dst: &mut BytesMut, status: StatusCode, headers: &HeaderMap) {
    dst.put_slice(b"HTTP/1.1 ");
    dst.put_slice(status.as_str().as_bytes());
    dst.put_u8(b' ');
    dst.put_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    dst.put_slice(b"\r\n");
    fields(dst, headers);
    dst.put_slice(b"\r\n");
}

/// Writes a request line and head in origin-form (or the URI as given
/// when it has no path, e.g. `*`), `headers` minus framing fields, then the
/// framing field.
pub fn request_head(
    dst: &mut BytesMut,
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
    framing: Framing,
) {
    dst.reserve(64 + headers.len() * 32);
    dst.put_slice(method.as_str().as_bytes());
    dst.put_u8(b' ');
    match uri.path_and_query() {
        Some(pq) => dst.put_slice(pq.as_str().as_bytes()),
        None => dst.put_slice(b"/"),
    }
    dst.put_slice(if version == Version::HTTP_10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    fields(dst, headers);
    framing_field(dst, framing);
    dst.put_slice(b"\r\n");
}

fn fields(dst: &mut BytesMut, headers: &HeaderMap) {
    for (name, value) in headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == CONNECTION {
            continue;
        }
        dst.put_slice(name.as_str().as_bytes());
        dst.put_slice(b": ");
        dst.put_slice(value.as_bytes());
        dst.put_slice(b"\r\n");
    }
}

fn framing_field(dst: &mut BytesMut, framing: Framing) {
    match framing {
        Framing::None | Framing::Close => {}
        Framing::Length(n) => {
            dst.put_slice(b"content-length: ");
            dst.put_slice(itoa::Buffer::new().format(n).as_bytes());
            dst.put_slice(b"\r\n");
        }
        Framing::Chunked => dst.put_slice(b"transfer-encoding: chunked\r\n"),
    }
}

/// Writes the size line of a chunk of `len` bytes (`len` > 0).
pub fn chunk_start(dst: &mut BytesMut, len: usize) {
    use std::fmt::Write as _;
    let _ = write!(dst, "{len:x}\r\n");
}

/// Writes the CRLF that ends a chunk's data.
pub fn chunk_end(dst: &mut BytesMut) {
    dst.put_slice(b"\r\n");
}

/// Writes the last chunk, with `trailers` if any.
pub fn last_chunk(dst: &mut BytesMut, trailers: Option<&HeaderMap>) {
    dst.put_slice(b"0\r\n");
    if let Some(trailers) = trailers {
        for (name, value) in trailers {
            dst.put_slice(name.as_str().as_bytes());
            dst.put_slice(b": ");
            dst.put_slice(value.as_bytes());
            dst.put_slice(b"\r\n");
        }
    }
    dst.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn writes_a_response_head_with_its_framing() {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("1"));
        headers.insert(
            DATE,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("999"));
        headers.insert(CONNECTION, HeaderValue::from_static("x-a"));
        let mut out = BytesMut::new();
        response_head(
            &mut out,
            StatusCode::OK,
            &headers,
            Framing::Length(5),
            Persistence::Close,
        );
        assert_eq!(
            &out[..],
            b"HTTP/1.1 200 OK\r\nx-a: 1\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\ncontent-length: 5\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn writes_chunks() {
        let mut out = BytesMut::new();
        chunk_start(&mut out, 26);
        out.put_slice(b"abcdefghijklmnopqrstuvwxyz");
        chunk_end(&mut out);
        let mut t = HeaderMap::new();
        t.insert("x-sum", HeaderValue::from_static("9"));
        last_chunk(&mut out, Some(&t));
        assert_eq!(
            &out[..],
            b"1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-sum: 9\r\n\r\n"
        );
    }
}
