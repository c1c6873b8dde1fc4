//! Gatehouse's HTTP/1.1 engine (RFC 9112), on `httparse`.
//!
//! - [`parse_request_head`] and [`parse_response_head`]: a head from raw
//!   bytes, strict about anything that could frame a message two ways
//!   ([`head`], [`framing`]).
//! - [`ChunkedDecoder`]: the chunked transfer coding, extensions and
//!   trailers included ([`chunked`]).
//! - [`encode`]: heads and chunks written out, with a cached `Date`
//!   ([`date`]).
//! - [`client`]: one exchange on an upstream connection, driven in the
//!   caller's task; 1xx heads it reads are relayed ([`interim`]).
//! - [`server`]: a client connection driven end to end: requests read,
//!   handed to a service as `http::Request<gateway_core::Body>`, responses
//!   written with exact framing, keep-alive, pipelining, `Expect:
//!   100-continue` and upgrades.
//!
//! - [`splice`]: response bodies moved from the upstream socket to the
//!   client socket by the kernel.
//!
//! The parsers take plain byte slices and return plain values, so they can
//! be fuzzed and tested without sockets.

pub mod chunked;
pub mod client;
mod connection;
pub mod date;
pub mod encode;
mod error;
mod field_name;
pub mod framing;
pub mod head;
pub mod interim;
pub mod server;
pub mod splice;

pub use chunked::{Chunk, ChunkedDecoder};
pub use error::HeadError;
pub use framing::{RequestBody, ResponseBody};
pub use head::{
    parse_request_head, parse_response_head, HeadLimits, Parsed, RequestHead, ResponseHead,
};
pub use server::{serve_connection, BodyObserver, OnUpgrade, Prefixed, ServerOptions, Upgraded};
