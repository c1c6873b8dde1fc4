//! The one body type that flows through the gateway pipeline.
//!
//! Requests and responses are streamed, never buffered whole, so every stage
//! passes a boxed streaming body. Stages that need the bytes (the cache, the
//! mirror comparator, retry replay, provider files) collect them explicitly
//! and under a size cap, with [`read_capped`]: the one place a body is read
//! whole.

use bytes::{Bytes, BytesMut};
use http_body::Body as _;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

/// A type-erased error, as carried by bodies and services.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The streaming body used by every stage of the pipeline.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body holding `bytes` in full.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Boxes any body whose error converts into [`BoxError`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A body read under a size cap by [`read_capped`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capped {
    /// The whole body, no longer than the cap.
    Complete(Bytes),
    /// The body is longer than the cap. What was read is dropped; the rest
    /// is left unread (see [`drain`]).
    TooLarge,
}

impl Capped {
    /// The body, or `None` when it was too large.
    pub fn into_bytes(self) -> Option<Bytes> {
        match self {
            Capped::Complete(b) => Some(b),
            Capped::TooLarge => None,
        }
    }
}

/// Reads `body` to its end if it holds at most `limit` bytes of data.
///
/// Stops at once when the body declares (size hint) or turns out to be
/// longer than `limit`, and returns [`Capped::TooLarge`] with the rest
/// unread: a caller that must still consume it (to keep a connection
/// reusable, or to time the whole response) calls [`drain`]. Trailers are
/// skipped. A body that fails mid-way returns its error. A body of one
/// chunk is returned without a copy.
pub async fn read_capped<B>(body: &mut B, limit: usize) -> Result<Capped, B::Error>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    if body.size_hint().lower() > limit as u64 {
        return Ok(Capped::TooLarge);
    }
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        len += data.len();
        if len > limit {
            return Ok(Capped::TooLarge);
        }
        match &first {
            None => first = Some(data),
            Some(f) => {
                if rest.is_empty() {
                    rest.reserve(len);
                    rest.extend_from_slice(f);
                }
                rest.extend_from_slice(&data);
            }
        }
    }
    Ok(Capped::Complete(if rest.is_empty() {
        first.unwrap_or_default()
    } else {
        rest.freeze()
    }))
}

/// Reads what is left of `body` and drops it; returns the data bytes read.
pub async fn drain<B>(body: &mut B) -> Result<u64, B::Error>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            n += data.len() as u64;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body::Frame;

    use super::*;

    /// A body of the given data frames, then trailers.
    struct Chunks(std::collections::VecDeque<Frame<Bytes>>);

    impl http_body::Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            std::task::Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    fn chunks(parts: &[&'static str]) -> Chunks {
        let mut frames: std::collections::VecDeque<_> = parts
            .iter()
            .map(|p| Frame::data(Bytes::from_static(p.as_bytes())))
            .collect();
        frames.push_back(Frame::trailers(http::HeaderMap::new()));
        Chunks(frames)
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[test]
    fn reads_up_to_the_cap_and_no_further() {
        let read = |parts: &[&'static str], limit| {
            block_on(read_capped(&mut chunks(parts), limit)).unwrap()
        };
        assert_eq!(
            read(&["ab", "cd", "e"], 5),
            Capped::Complete(Bytes::from("abcde"))
        );
        assert_eq!(read(&["abcde"], 5), Capped::Complete(Bytes::from("abcde")));
        assert_eq!(read(&[], 0), Capped::Complete(Bytes::new()));
        assert_eq!(read(&["ab", "cd", "ef"], 5), Capped::TooLarge);
        assert_eq!(read(&["abcdef"], 5).into_bytes(), None);
        // A declared length over the cap is refused before any read.
        let mut full = Full::new(Bytes::from("abcdef"));
        assert_eq!(
            block_on(read_capped(&mut full, 5)).unwrap(),
            Capped::TooLarge
        );
        assert_eq!(block_on(drain(&mut full)).unwrap(), 6);
    }

    #[test]
    fn the_rest_can_be_drained_after_too_large() {
        let mut body = chunks(&["ab", "cd", "ef", "gh"]);
        assert_eq!(
            block_on(read_capped(&mut body, 3)).unwrap(),
            Capped::TooLarge
        );
        assert_eq!(block_on(drain(&mut body)).unwrap(), 4);
    }
}
