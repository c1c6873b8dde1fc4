//! The HTTP/1.1 engine's chunked decoder (`gateway-http1`).
//!
//! Input: one byte choosing where the body is split, then the body bytes.
//! Properties: decoding never panics; a body fed in two reads decodes to the
//! same data, end and outcome as the same body in one read (framing cannot
//! depend on how the bytes arrive); nothing after the body's end is taken.
#![no_main]

use bytes::{Bytes, BytesMut};
use gateway_http1::{Chunk, ChunkedDecoder};
use libfuzzer_sys::fuzz_target;

/// What a decoder made of the reads: the data, whether it ended, whether it
/// refused the body, and what it left unread.
#[derive(Debug, PartialEq)]
struct Outcome {
    data: Vec<u8>,
    ended: bool,
    refused: bool,
    left: Bytes,
}

fn decode(reads: &[&[u8]], max_data: usize) -> Outcome {
    let mut decoder = ChunkedDecoder::new();
    let mut buf = BytesMut::new();
    let mut out = Outcome {
        data: Vec::new(),
        ended: false,
        refused: false,
        left: Bytes::new(),
    };
    for (i, read) in reads.iter().enumerate() {
        buf.extend_from_slice(read);
        loop {
            match decoder.decode(&mut buf, max_data) {
                Ok(Some(Chunk::Data(d))) => {
                    assert!(!d.is_empty() && d.len() <= max_data.max(1));
                    out.data.extend_from_slice(&d);
                }
                Ok(Some(Chunk::Trailers(_))) => {}
                Ok(Some(Chunk::End)) => {
                    assert!(decoder.is_done());
                    out.ended = true;
                    // What follows the body, including reads not yet fed.
                    for later in &reads[i + 1..] {
                        buf.extend_from_slice(later);
                    }
                    out.left = buf.split().freeze();
                    return out;
                }
                Ok(None) => break,
                Err(_) => {
                    out.refused = true;
                    return out;
                }
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let at = usize::from(split) % (body.len() + 1);
    let max_data = 1 + usize::from(split % 64);
    let whole = decode(&[body], max_data);
    let halves = decode(&[&body[..at], &body[at..]], max_data);
    // A split inside a chunk line can only make the decoder wait, so the
    // two must agree exactly; only where one read refused early might the
    // other have refused on the same bytes: both refuse.
    assert_eq!(whole.refused, halves.refused, "{whole:?} vs {halves:?}");
    if !whole.refused {
        assert_eq!(whole, halves);
    }
});
