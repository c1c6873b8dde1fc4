//! The head-parsing conformance corpus: raw bytes in, the parsed head (or
//! the status a client gets) out. Every framing rule of RFC 9112 the
//! engine enforces has a line here.

use gateway_http1::{
    parse_request_head, parse_response_head, HeadLimits, Parsed, RequestBody, ResponseBody,
};
use http::Method;

/// A parsed request in one line: method, target, version, body framing,
/// keep-alive, expect-continue, upgrade; or the refusal's status.
fn request(raw: &[u8], limits: &HeadLimits) -> String {
    match parse_request_head(raw, limits) {
        Ok(Parsed::Partial) => "partial".into(),
        Ok(Parsed::Complete { head, len }) => {
            let body = match head.body {
                RequestBody::None => "none".to_string(),
                RequestBody::Length(n) => format!("length {n}"),
                RequestBody::Chunked => "chunked".to_string(),
            };
            let mut s = format!(
                "{} {} {:?} body={body} rest={}",
                head.method,
                head.uri,
                head.version,
                raw.len() - len
            );
            if !head.keep_alive {
                s.push_str(" close");
            }
            if head.expect_continue {
                s.push_str(" expect-continue");
            }
            if head.upgrade {
                s.push_str(" upgrade");
            }
            s
        }
        Err(e) => format!("{} {}", e.error_code().status.as_u16(), e),
    }
}

fn check(cases: &[(&str, &[u8], &str)]) {
    let limits = HeadLimits {
        max_line: 64,
        max_head: 256,
        max_headers: 8,
    };
    let mut failures = Vec::new();
    for (name, raw, expected) in cases {
        let got = request(raw, &limits);
        if got != *expected {
            failures.push(format!("{name}:\n  expected {expected}\n  got      {got}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn well_formed_requests() {
    check(&[
        (
            "get",
            b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /a?b=1 HTTP/1.1 body=none rest=0",
        ),
        ("partial", b"GET / HTTP/1.1\r\nHost: x\r\n", "partial"),
        (
            "pipelined rest stays",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\n",
            "GET / HTTP/1.1 body=none rest=17",
        ),
        (
            "length",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
            "POST / HTTP/1.1 body=length 5 rest=5",
        ),
        (
            "zero length",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "POST / HTTP/1.1 body=none rest=0",
        ),
        (
            "identical lengths",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\n",
            "POST / HTTP/1.1 body=length 3 rest=0",
        ),
        (
            "chunked",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1 body=chunked rest=0",
        ),
        (
            "chunked any case, OWS",
            b"POST / HTTP/1.1\r\nTransfer-Encoding:  ChUnKeD \r\n\r\n",
            "POST / HTTP/1.1 body=chunked rest=0",
        ),
        (
            "http/1.0 closes",
            b"GET / HTTP/1.0\r\n\r\n",
            "GET / HTTP/1.0 body=none rest=0 close",
        ),
        (
            "http/1.0 keep-alive",
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            "GET / HTTP/1.0 body=none rest=0",
        ),
        (
            "http/1.1 close",
            b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1 body=none rest=0 close",
        ),
        (
            "expect",
            b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            "PUT / HTTP/1.1 body=length 1 rest=0 expect-continue",
        ),
        (
            "upgrade",
            b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1 body=none rest=0 upgrade",
        ),
        (
            "upgrade needs connection token",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1 body=none rest=0",
        ),
        (
            "absolute form",
            b"GET http://a.test/p HTTP/1.1\r\n\r\n",
            "GET http://a.test/p HTTP/1.1 body=none rest=0",
        ),
        (
            "leading empty line",
            b"\r\nGET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1 body=none rest=0",
        ),
        (
            "obs-text value",
            b"GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n",
            "GET / HTTP/1.1 body=none rest=0",
        ),
    ]);
}

#[test]
fn smuggling_and_ambiguity_are_refused() {
    check(&[
        (
            "CL.TE",
            b"POST / HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
            "400 both Content-Length and Transfer-Encoding",
        ),
        (
            "TE.CL",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
            "400 both Content-Length and Transfer-Encoding",
        ),
        (
            "TE.TE second field",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n",
            "400 Transfer-Encoding whose last coding is not chunked",
        ),
        (
            "TE.TE identity last",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "400 Transfer-Encoding whose last coding is not chunked",
        ),
        (
            "TE.TE chunked twice",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "400 Transfer-Encoding applies chunked more than once",
        ),
        (
            "TE.TE xchunked",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
            "400 Transfer-Encoding whose last coding is not chunked",
        ),
        (
            "TE.TE space before colon",
            b"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
            "400 invalid header field name (or an obsolete line folding)",
        ),
        (
            "TE.TE vertical tab",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: \x0bchunked\r\n\r\n",
            "400 invalid character in a header value",
        ),
        (
            "TE.TE obs-fold",
            b"POST / HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
            "400 invalid header field name (or an obsolete line folding)",
        ),
        (
            "TE.TE empty",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n",
            "400 empty Transfer-Encoding",
        ),
        (
            "TE with params",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked;x=1\r\n\r\n",
            "400 Transfer-Encoding whose last coding is not chunked",
        ),
        (
            "gzip then chunked",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "501 a transfer coding other than chunked is not supported",
        ),
        (
            "TE in HTTP/1.0",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "400 Transfer-Encoding in an HTTP/1.0 request",
        ),
        (
            "differing lengths",
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "400 differing Content-Length values",
        ),
        (
            "differing lengths in a list",
            b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
            "400 differing Content-Length values",
        ),
        (
            "signed length",
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "400 Content-Length is not a number",
        ),
        (
            "hex length",
            b"POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n",
            "400 Content-Length is not a number",
        ),
        (
            "length overflow",
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "400 Content-Length is too large",
        ),
        (
            "obs-fold",
            b"GET / HTTP/1.1\r\nX-A: 1\r\n 2\r\n\r\n",
            "400 invalid header field name (or an obsolete line folding)",
        ),
        (
            "bare LF",
            b"GET / HTTP/1.1\nHost: x\n\n",
            "400 a line ends in a bare LF",
        ),
        (
            "bare LF in fields",
            b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
            "400 a line ends in a bare LF",
        ),
        (
            "bare LF ending the head",
            b"GET / HTTP/1.1\r\nHost: x\r\n\n",
            "400 a line ends in a bare LF",
        ),
        (
            "NUL in value",
            b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            "400 invalid character in a header value",
        ),
        (
            "bad name",
            b"GET / HTTP/1.1\r\nX(y): a\r\n\r\n",
            "400 invalid header field name (or an obsolete line folding)",
        ),
        (
            "bad method",
            b"G(T / HTTP/1.1\r\n\r\n",
            "400 invalid method",
        ),
        (
            "space in target",
            b"GET /a b HTTP/1.1\r\n\r\n",
            "505 only HTTP/1.0 and HTTP/1.1 are served here",
        ),
        (
            "version 2",
            b"GET / HTTP/2.0\r\n\r\n",
            "505 only HTTP/1.0 and HTTP/1.1 are served here",
        ),
        (
            "version 1.2",
            b"GET / HTTP/1.2\r\n\r\n",
            "505 only HTTP/1.0 and HTTP/1.1 are served here",
        ),
    ]);
}

#[test]
fn sizes_are_limited() {
    let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(80));
    let long_partial = format!("GET /{}", "a".repeat(80));
    let big_head = format!(
        "GET / HTTP/1.1\r\nX: {}\r\nY: {}\r\n\r\n",
        "a".repeat(60),
        "b".repeat(200)
    );
    let big_partial = format!(
        "GET / HTTP/1.1\r\nX: {}\r\nY: {}",
        "a".repeat(60),
        "b".repeat(200)
    );
    let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: 1\r\n".repeat(9));
    let eight = format!("GET / HTTP/1.1\r\n{}\r\n", "X: 1\r\n".repeat(8));
    check(&[
        (
            "request line over the limit",
            long_target.as_bytes(),
            "414 the request line is longer than 64 bytes",
        ),
        (
            "request line over the limit, partial",
            long_partial.as_bytes(),
            "414 the request line is longer than 64 bytes",
        ),
        (
            "head over the limit",
            big_head.as_bytes(),
            "431 the request head is larger than 256 bytes",
        ),
        (
            "head over the limit, partial",
            big_partial.as_bytes(),
            "431 the request head is larger than 256 bytes",
        ),
        (
            "too many fields",
            many.as_bytes(),
            "431 the request has more than 8 header fields",
        ),
        (
            "as many fields as allowed",
            eight.as_bytes(),
            "GET / HTTP/1.1 body=none rest=0",
        ),
    ]);
}

fn response(raw: &[u8], method: &Method) -> String {
    match parse_response_head(raw, &HeadLimits::default()) {
        Ok(Parsed::Partial) => "partial".into(),
        Ok(Parsed::Complete { head, .. }) => {
            let body = match head.body_for(method) {
                ResponseBody::None => "none".to_string(),
                ResponseBody::Length(n) => format!("length {n}"),
                ResponseBody::Chunked => "chunked".to_string(),
                ResponseBody::CloseDelimited => "close-delimited".to_string(),
            };
            format!(
                "{} {:?} body={body} keep={}",
                head.status.as_u16(),
                head.version,
                head.keep_alive
            )
        }
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn response_framing() {
    let get = Method::GET;
    let head = Method::HEAD;
    for (raw, method, expected) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"[..],
            &get,
            "200 HTTP/1.1 body=length 5 keep=true",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            &head,
            "200 HTTP/1.1 body=none keep=true",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            &get,
            "200 HTTP/1.1 body=chunked keep=true",
        ),
        (
            b"HTTP/1.1 200 OK\r\n\r\n",
            &get,
            "200 HTTP/1.1 body=close-delimited keep=true",
        ),
        (
            b"HTTP/1.0 200 OK\r\n\r\n",
            &get,
            "200 HTTP/1.0 body=close-delimited keep=false",
        ),
        (
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            &get,
            "200 HTTP/1.0 body=length 0 keep=true",
        ),
        (
            b"HTTP/1.1 204 No Content\r\n\r\n",
            &get,
            "204 HTTP/1.1 body=none keep=true",
        ),
        (
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
            &get,
            "304 HTTP/1.1 body=none keep=true",
        ),
        (
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
            &get,
            "103 HTTP/1.1 body=none keep=true",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            &get,
            "error: both Content-Length and Transfer-Encoding",
        ),
        (
            b"HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n",
            &get,
            "error: a line ends in a bare LF",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX: y\n\r\n",
            &get,
            "error: a line ends in a bare LF",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            &get,
            "error: differing Content-Length values",
        ),
        (
            b"HTTP/1.1 2000 OK\r\n\r\n",
            &get,
            "error: invalid status code",
        ),
        (
            b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            &get,
            "error: invalid header field name (or an obsolete line folding)",
        ),
    ] {
        assert_eq!(
            response(raw, method),
            expected,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn a_connection_that_only_says_close_or_keep_alive_is_not_a_field() {
    let limits = HeadLimits::default();
    let fields = |raw: &[u8]| -> Vec<String> {
        let headers = match parse_response_head(raw, &limits) {
            Ok(Parsed::Complete { head, .. }) => head.headers,
            other => panic!("{other:?}"),
        };
        headers
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect()
    };
    assert_eq!(
        fields(b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"),
        ["content-length: 0"]
    );
    assert_eq!(
        fields(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
        ["content-length: 0"]
    );
    // Naming anything else, it stays for the proxy's hop-by-hop rules.
    assert_eq!(
        fields(b"HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n\r\n"),
        ["connection: close, X-Hop", "x-hop: 1"]
    );
    assert_eq!(
        fields(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
        ["connection: Upgrade", "upgrade: websocket"]
    );
    match parse_request_head(
        b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
        &limits,
    ) {
        Ok(Parsed::Complete { head, .. }) => {
            assert!(head.keep_alive);
            assert!(!head.headers.contains_key("connection"));
            assert_eq!(head.headers.len(), 1);
        }
        other => panic!("{other:?}"),
    }
}
