//! Why a head or a body cannot be accepted.

use gateway_core::errors::{self, ErrorCode};
use gateway_core::Problem;

/// A request or response that is refused. Each kind names the entry of
/// the error table a client receives when its request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Not valid HTTP/1.1, or framed ambiguously; says what.
    Malformed(&'static str),
    /// The request line is longer than the limit (bytes).
    RequestLineTooLong(usize),
    /// The head is larger than the limit (bytes).
    HeadTooLarge(usize),
    /// More header fields than the limit.
    TooManyHeaders(usize),
    /// A transfer coding other than `chunked`.
    UnsupportedCoding,
    /// A version other than HTTP/1.0 and HTTP/1.1.
    Version,
}

impl HeadError {
    /// The error-table entry a client receives for this refusal.
    pub fn error_code(&self) -> &'static ErrorCode {
        match self {
            HeadError::Malformed(_) => &errors::MALFORMED_REQUEST,
            HeadError::RequestLineTooLong(_) => &errors::REQUEST_LINE_TOO_LONG,
            HeadError::HeadTooLarge(_) | HeadError::TooManyHeaders(_) => &errors::HEADERS_TOO_LARGE,
            HeadError::UnsupportedCoding => &errors::UNSUPPORTED_TRANSFER_CODING,
            HeadError::Version => &errors::VERSION_NOT_SUPPORTED,
        }
    }

    /// The problem+json a client receives.
    pub fn problem(&self) -> Problem {
        Problem::new(self.error_code(), self.to_string())
    }
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::Malformed(what) => f.write_str(what),
            HeadError::RequestLineTooLong(limit) => {
                write!(f, "the request line is longer than {limit} bytes")
            }
            HeadError::HeadTooLarge(limit) => {
                write!(f, "the request head is larger than {limit} bytes")
            }
            HeadError::TooManyHeaders(limit) => {
                write!(f, "the request has more than {limit} header fields")
            }
            HeadError::UnsupportedCoding => {
                f.write_str("a transfer coding other than chunked is not supported")
            }
            HeadError::Version => f.write_str("only HTTP/1.0 and HTTP/1.1 are served here"),
        }
    }
}

impl std::error::Error for HeadError {}
