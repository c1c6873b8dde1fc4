//! Partial responses: a request for one byte range is answered from the
//! whole 200 response the cache produced for it (stored, or fetched whole
//! and being stored), as a 206 with `Content-Range`, a 416 when no byte of
//! the representation is in the range, or the whole 200 when `If-Range`
//! does not match or the length is not known in advance.
//!
//! When the whole body is being copied into storage, the client's part is
//! cut from the stream while the rest is still read, so the copy completes.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use gateway_core::{body, Body, BoxError};
use http::{header, HeaderValue, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use crate::range::{if_range_allows, ByteRange, Resolved};

/// Marks a response whose body is being teed into storage, so cutting a
/// range out of it still reads it to the end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoringCopy;

/// `res` as the answer to a request for `range` with the `If-Range`
/// condition `if_range`.
pub(crate) fn answer_range(
    mut res: Response<Body>,
    range: ByteRange,
    if_range: Option<&HeaderValue>,
) -> Response<Body> {
    let storing = res.extensions_mut().remove::<StoringCopy>().is_some();
    if res.status() != StatusCode::OK || !if_range_allows(if_range, res.headers()) {
        return res;
    }
    let declared = res
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(complete) = declared.or_else(|| http_body::Body::size_hint(res.body()).exact()) else {
        // The length is only known at the end; the whole 200 is a valid
        // answer to a range request (RFC 9110 §14.2).
        return res;
    };
    let (mut parts, whole) = res.into_parts();
    match range.resolve(complete) {
        Resolved::Part {
            first,
            last,
            complete,
        } => {
            let len = last - first + 1;
            parts.status = StatusCode::PARTIAL_CONTENT;
            parts.headers.insert(
                header::CONTENT_RANGE,
                content_range(&format!("bytes {first}-{last}/{complete}")),
            );
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            let part = Slice {
                inner: whole,
                skip: first,
                remaining: len,
                read_to_end: storing,
            };
            Response::from_parts(parts, part.boxed_unsync())
        }
        Resolved::Unsatisfiable { complete } => {
            parts.status = StatusCode::RANGE_NOT_SATISFIABLE;
            parts.headers.insert(
                header::CONTENT_RANGE,
                content_range(&format!("bytes */{complete}")),
            );
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            parts.headers.remove(header::CONTENT_TYPE);
            if storing {
                // Nobody reads the body now; read it (the copy keeps it, up
                // to max_object_bytes) so it is stored.
                let mut whole = whole;
                tokio::spawn(async move { while let Some(Ok(_)) = whole.frame().await {} });
            }
            Response::from_parts(parts, body::empty())
        }
    }
}

fn content_range(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).expect("digits, spaces, `-`, `/` and `*` are valid")
}

/// Bytes `skip..skip + remaining` of `inner`; with `read_to_end`, the rest
/// of `inner` is read (and dropped) before the end is reported.
struct Slice {
    inner: Body,
    skip: u64,
    remaining: u64,
    read_to_end: bool,
}

impl http_body::Body for Slice {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.remaining == 0 && !this.read_to_end {
                return Poll::Ready(None);
            }
            let Some(frame) = ready!(Pin::new(&mut this.inner).poll_frame(cx)) else {
                return Poll::Ready(None);
            };
            // Trailers belong to the whole message, not to a part of it.
            let Ok(mut data) = frame?.into_data() else {
                continue;
            };
            let len = data.len() as u64;
            if this.remaining == 0 {
                continue;
            }
            if this.skip >= len {
                this.skip -= len;
                continue;
            }
            data = data.slice(this.skip as usize..);
            this.skip = 0;
            if data.len() as u64 > this.remaining {
                data.truncate(this.remaining as usize);
            }
            this.remaining -= data.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.read_to_end {
            self.inner.is_end_stream()
        } else {
            self.remaining == 0 || self.inner.is_end_stream()
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(status: u16, body_text: &'static str) -> Response<Body> {
        let mut res = Response::new(body::full(body_text));
        *res.status_mut() = StatusCode::from_u16(status).unwrap();
        res.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body_text.len()));
        res.headers_mut()
            .insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        res
    }

    async fn text(res: Response<Body>) -> String {
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn cuts_the_range_and_says_where_it_is() {
        let res = answer_range(
            whole(200, "0123456789"),
            ByteRange::Bounded { first: 2, last: 4 },
            None,
        );
        assert_eq!(res.status(), 206);
        assert_eq!(res.headers()[header::CONTENT_RANGE], "bytes 2-4/10");
        assert_eq!(res.headers()[header::CONTENT_LENGTH], "3");
        assert_eq!(text(res).await, "234");

        let res = answer_range(
            whole(200, "0123456789"),
            ByteRange::Suffix { length: 4 },
            None,
        );
        assert_eq!(text(res).await, "6789");

        let res = answer_range(
            whole(200, "0123456789"),
            ByteRange::From { first: 20 },
            None,
        );
        assert_eq!(res.status(), 416);
        assert_eq!(res.headers()[header::CONTENT_RANGE], "bytes */10");
        assert_eq!(text(res).await, "");
    }

    #[tokio::test]
    async fn other_statuses_and_failed_if_range_get_the_whole() {
        let range = ByteRange::From { first: 5 };
        let res = answer_range(whole(404, "missing"), range, None);
        assert_eq!(
            (res.status().as_u16(), text(res).await.as_str()),
            (404, "missing")
        );
        let stale = HeaderValue::from_static("\"v0\"");
        let res = answer_range(whole(200, "0123456789"), range, Some(&stale));
        assert_eq!(res.status(), 200);
        assert_eq!(text(res).await, "0123456789");
    }

    #[tokio::test]
    async fn a_slice_across_frames_reads_on_when_asked() {
        let frames = ["012", "345", "678", "9"]
            .into_iter()
            .map(|s| Ok::<_, BoxError>(Frame::data(Bytes::from_static(s.as_bytes()))));
        let inner = body::boxed(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )));
        let mut part = Slice {
            inner,
            skip: 2,
            remaining: 5,
            read_to_end: true,
        };
        let mut got = Vec::new();
        while let Some(frame) = part.frame().await {
            got.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        assert_eq!(got, b"23456");
        assert!(part.inner.frame().await.is_none(), "the rest was read");
    }
}
