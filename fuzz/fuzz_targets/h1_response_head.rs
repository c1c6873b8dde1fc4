//! The HTTP/1.1 engine's response-head parser (`gateway-http1`), which
//! reads what upstreams send.
//!
//! Properties: parsing never panics; a complete head is no longer than the
//! input; the borrowed and the taking parser agree; a head is never
//! complete before its last byte has arrived.
#![no_main]

use bytes::BytesMut;
use gateway_http1::head::take_response_head;
use gateway_http1::{parse_response_head, HeadLimits, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = HeadLimits::default();
    let parsed = parse_response_head(data, &limits);
    let mut buf = BytesMut::from(data);
    let taken = take_response_head(&mut buf, &limits);
    match (&parsed, &taken) {
        (Ok(Parsed::Complete { head, len }), Ok(Some(same))) => {
            assert!(*len <= data.len());
            assert_eq!(buf.len(), data.len() - len, "take leaves the rest");
            assert_eq!(head.status, same.status);
            if *len > 0 {
                assert!(
                    !matches!(
                        parse_response_head(&data[..len - 1], &limits),
                        Ok(Parsed::Complete { .. })
                    ),
                    "a head is complete only with its last byte"
                );
            }
        }
        (Ok(Parsed::Partial), Ok(None)) | (Err(_), Err(_)) => {}
        _ => panic!("parse and take disagree"),
    }
});
