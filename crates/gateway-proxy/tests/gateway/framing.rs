//! The framing conformance corpus, end to end: raw request bytes to the
//! gateway; the exact response bytes back and exactly what the upstream
//! received (nothing, for every refused request).
//!
//! The upstream is a raw socket that records every byte and answers each
//! request with the bytes its path names (`/r/<name>`), so upstream
//! behaviour (an HTTP/1.0 server, a close mid-body) is exact too. Values
//! that change per run (`Date`, `X-Request-Id`, `traceparent`) are
//! replaced by placeholders before comparing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{base, TestGateway};

/// Raw upstream answers by name (the request path is `/r/<name>`).
fn answers() -> HashMap<&'static str, &'static [u8]> {
    HashMap::from([
        ("ok", &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..]),
        (
            "chunked",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ),
        (
            "http10",
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold",
        ),
        ("cut", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
        ("head", b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"),
        ("nocontent", b"HTTP/1.1 204 No Content\r\n\r\n"),
        (
            "hints",
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ),
    ])
}

/// Every byte the upstream received, in order, over all its connections.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<u8>>>);

impl Received {
    fn take(&self) -> String {
        normalise(&std::mem::take(&mut *self.0.lock().unwrap()))
    }
}

async fn raw_origin() -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let log = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve_raw(s, log.clone()));
        }
    });
    (addr, received)
}

/// Reads requests (head, then a Content-Length or chunked body) and
/// answers each from [`answers`]; closes after answers without a length.
async fn serve_raw(mut s: TcpStream, log: Received) {
    let answers = answers();
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    log.0.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let body_end = if let Some(len) = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            head_end + len
        } else if head.contains("transfer-encoding: chunked") {
            loop {
                if let Some(i) = find(&buf[head_end..], b"0\r\n\r\n") {
                    break head_end + i + 5;
                }
                let mut chunk = [0u8; 4096];
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        log.0.lock().unwrap().extend_from_slice(&chunk[..n]);
                    }
                }
            }
        } else {
            head_end
        };
        while buf.len() < body_end {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    log.0.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            }
        }
        buf.drain(..body_end);
        let name = head
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.strip_prefix("/r/"))
            .unwrap_or("ok")
            .to_string();
        let answer = answers.get(name.as_str()).copied().unwrap_or(answers["ok"]);
        if s.write_all(answer).await.is_err() {
            return;
        }
        if matches!(name.as_str(), "http10" | "cut") {
            return;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Replaces per-run values with placeholders.
fn normalise(raw: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(raw).into_owned();
    // A problem's request id (a UUID).
    if let Some(at) = text.find(r#""request_id":""#) {
        let start = at + r#""request_id":""#.len();
        text.replace_range(start..start + 36, "<request-id>");
    }
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        let lower = line.to_ascii_lowercase();
        let replaced = ["date", "x-request-id", "traceparent"]
            .iter()
            .find(|name| lower.starts_with(&format!("{name}: ")))
            .map(|name| format!("{}: <{name}>\r\n", &line[..name.len()]));
        out.push_str(replaced.as_deref().unwrap_or(line));
    }
    out
}

/// Sends `request` on a new connection (then ends the client's side when
/// `client_closes`) and reads until the gateway closes.
async fn exchange(gw: SocketAddr, request: &[u8], client_closes: bool) -> String {
    let mut s = TcpStream::connect(gw).await.unwrap();
    s.write_all(request).await.unwrap();
    if client_closes {
        s.shutdown().await.unwrap();
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    normalise(&out)
}

/// The forwarding fields the gateway adds to every upstream request.
const FWD: &str = "x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\nx-forwarded-host: gw.test\r\nx-request-id: <x-request-id>\r\ntraceparent: <traceparent>\r\n";

/// The request id the gateway returns on every response it forwards.
const RID: &str = "x-request-id: <x-request-id>\r\n";

struct Case {
    name: &'static str,
    request: &'static [u8],
    response: String,
    upstream: String,
}

fn case(name: &'static str, request: &'static [u8], response: &str, upstream: &str) -> Case {
    Case {
        name,
        request,
        response: response.replace("{FWD}", FWD).replace("{RID}", RID),
        upstream: upstream.replace("{FWD}", FWD),
    }
}

fn problem(status: &str, code: &str, detail: &str) -> String {
    let title = gateway_core::errors::lookup(code).unwrap().title;
    let body = format!(
        r#"{{"type":"https://gatehouse.dev/problems/{code}","title":"{title}","status":{},"detail":"{detail}","code":"{code}"}}"#,
        &status[..3]
    );
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/problem+json\r\ncache-control: no-store\r\ncontent-length: {}\r\nconnection: close\r\ndate: <date>\r\n\r\n{body}",
        body.len()
    )
}

fn corpus() -> Vec<Case> {
    vec![
        case(
            "pipelined requests, answered in order",
            b"GET /r/ok HTTP/1.1\r\nHost: gw.test\r\n\r\nGET /r/chunked HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 200 OK\r\n{RID}content-length: 2\r\ndate: <date>\r\n\r\nok\
             HTTP/1.1 200 OK\r\n{RID}transfer-encoding: chunked\r\nconnection: close\r\ndate: <date>\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            "GET /r/ok HTTP/1.1\r\nhost: gw.test\r\n{FWD}\r\n\
             GET /r/chunked HTTP/1.1\r\nhost: gw.test\r\n{FWD}\r\n",
        ),
        case(
            "CL.TE smuggling pair",
            b"POST /r/ok HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED",
            &problem("400 Bad Request", "malformed_request", "both Content-Length and Transfer-Encoding"),
            "",
        ),
        case(
            "TE.CL smuggling pair",
            b"POST /r/ok HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
            &problem("400 Bad Request", "malformed_request", "both Content-Length and Transfer-Encoding"),
            "",
        ),
        case(
            "TE.TE: a second Transfer-Encoding field",
            b"POST /r/ok HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\nTransfer-encoding: cow\r\n\r\n0\r\n\r\n",
            &problem("400 Bad Request", "malformed_request", "Transfer-Encoding whose last coding is not chunked"),
            "",
        ),
        case(
            "TE.TE: whitespace before the colon",
            b"POST /r/ok HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
            &problem("400 Bad Request", "malformed_request", "invalid header field name (or an obsolete line folding)"),
            "",
        ),
        case(
            "TE.TE: obs-fold",
            b"POST /r/ok HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: x\r\n chunked\r\n\r\n0\r\n\r\n",
            &problem("400 Bad Request", "malformed_request", "invalid header field name (or an obsolete line folding)"),
            "",
        ),
        case(
            "differing Content-Lengths",
            b"POST /r/ok HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 2\r\nContent-Length: 20\r\n\r\nhi",
            &problem("400 Bad Request", "malformed_request", "differing Content-Length values"),
            "",
        ),
        case(
            "chunk size overflow",
            b"POST /r/ok HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nx\r\n0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncache-control: no-store\r\n{RID}content-length: 349\r\nconnection: close\r\ndate: <date>\r\n\r\n\
             {\"type\":\"https://gatehouse.dev/problems/request_body_failed\",\"title\":\"Request body failed\",\"status\":400,\
             \"detail\":\"upstream `raw` target http://<origin> could not be sent the request body: chunk size overflows\",\
             \"code\":\"request_body_failed\",\"request_id\":\"<request-id>\",\"target\":\"http://<origin>\",\"upstream\":\"raw\"}",
            "",
        ),
        case(
            "chunked body: upper-case hex and an extension, re-framed",
            b"POST /r/ok HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nA;name=\"v\"\r\n0123456789\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\n{RID}content-length: 2\r\nconnection: close\r\ndate: <date>\r\n\r\nok",
            "POST /r/ok HTTP/1.1\r\nhost: gw.test\r\n{FWD}transfer-encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n",
        ),
        case(
            "HEAD keeps the upstream's Content-Length and sends no body",
            b"HEAD /r/head HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 200 OK\r\n{RID}content-length: 1234\r\nconnection: close\r\ndate: <date>\r\n\r\n",
            "HEAD /r/head HTTP/1.1\r\nhost: gw.test\r\n{FWD}\r\n",
        ),
        case(
            "204 has no body and no length",
            b"GET /r/nocontent HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 204 No Content\r\n{RID}connection: close\r\ndate: <date>\r\n\r\n",
            "GET /r/nocontent HTTP/1.1\r\nhost: gw.test\r\n{FWD}\r\n",
        ),
        case(
            "an HTTP/1.0 upstream: the client still gets HTTP/1.1 and keep-alive",
            b"GET /r/http10 HTTP/1.1\r\nHost: gw.test\r\n\r\nGET /r/ok HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-request-id: <x-request-id>\r\ntransfer-encoding: chunked\r\ndate: <date>\r\n\r\n3\r\nold\r\n0\r\n\r\n\
             HTTP/1.1 200 OK\r\n{RID}content-length: 2\r\nconnection: close\r\ndate: <date>\r\n\r\nok",
            "GET /r/http10 HTTP/1.1\r\nhost: gw.test\r\n{FWD}\r\n\
             GET /r/ok HTTP/1.1\r\nhost: gw.test\r\n{FWD}\r\n",
        ),
        case(
            "upstream closes mid-body: the response is cut short and the connection closed",
            b"GET /r/cut HTTP/1.1\r\nHost: gw.test\r\n\r\nGET /r/ok HTTP/1.1\r\nHost: gw.test\r\n\r\n",
            "HTTP/1.1 200 OK\r\n{RID}content-length: 10\r\ndate: <date>\r\n\r\nabc",
            "GET /r/cut HTTP/1.1\r\nhost: gw.test\r\n{FWD}\r\n",
        ),
        case(
            "Expect: 100-continue",
            b"PUT /r/ok HTTP/1.1\r\nHost: gw.test\r\nExpect: 100-continue\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n{RID}content-length: 2\r\nconnection: close\r\ndate: <date>\r\n\r\nok",
            "PUT /r/ok HTTP/1.1\r\nhost: gw.test\r\nexpect: 100-continue\r\n{FWD}content-length: 4\r\n\r\nbody",
        ),
        case(
            "103 Early Hints from the upstream reach an HTTP/1.1 client before the response",
            b"GET /r/hints HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n\
             HTTP/1.1 200 OK\r\n{RID}content-length: 2\r\nconnection: close\r\ndate: <date>\r\n\r\nok",
            "GET /r/hints HTTP/1.1\r\nhost: gw.test\r\n{FWD}\r\n",
        ),
        case(
            "an HTTP/1.0 client gets no 1xx",
            b"GET /r/hints HTTP/1.0\r\nHost: gw.test\r\n\r\n",
            "HTTP/1.1 200 OK\r\n{RID}content-length: 2\r\nconnection: close\r\ndate: <date>\r\n\r\nok",
            "GET /r/hints HTTP/1.1\r\nhost: gw.test\r\n{FWD}\r\n",
        ),
        case(
            "a request line over the limit",
            b"GET /r/ok?aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: gw.test\r\n\r\n",
            &problem("414 URI Too Long", "request_line_too_long", "the request line is longer than 256 bytes"),
            "",
        ),
        case(
            "too many header fields",
            b"GET /r/ok HTTP/1.1\r\nHost: gw.test\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\nF: 1\r\nG: 1\r\nH: 1\r\n\r\n",
            &problem("431 Request Header Fields Too Large", "headers_too_large", "the request has more than 8 header fields"),
            "",
        ),
        case(
            "early client close mid-body: the upstream gets what came, the client a 400",
            b"POST /r/ok HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 100\r\n\r\npartial",
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncache-control: no-store\r\n{RID}content-length: 328\r\nconnection: close\r\ndate: <date>\r\n\r\n\
             {\"type\":\"https://gatehouse.dev/problems/request_body_failed\",\"title\":\"Request body failed\",\"status\":400,\
             \"detail\":\"reading the request body for upstream `raw` failed: the client closed the connection before the request body ended\",\
             \"code\":\"request_body_failed\",\"request_id\":\"<request-id>\",\"upstream\":\"raw\"}",
            "",
        ),
    ]
}

#[tokio::test]
async fn framing_corpus_end_to_end() {
    let (origin, received) = raw_origin().await;
    let gw = TestGateway::start(&crate::harness::base_with(
        "http1_engine = \"native\"\nmax_request_line = \"256B\"\nmax_request_headers = 8",
        &format!("[clusters.raw]\ntargets = [\"{origin}\"]\n[[routes]]\nname = \"raw\"\ncluster = \"raw\"\n"),
    ))
    .await;
    let mut failures = Vec::new();
    for case in corpus() {
        let response = exchange(
            gw.addr,
            case.request,
            case.name.starts_with("early client close"),
        )
        .await
        .replace(&origin.to_string(), "<origin>");
        // Give the upstream a moment to log what it read.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let upstream = received.take();
        if response != case.response {
            failures.push(format!(
                "{}: response\n  expected {:?}\n  got      {:?}",
                case.name, case.response, response
            ));
        }
        if upstream != case.upstream {
            failures.push(format!(
                "{}: upstream received\n  expected {:?}\n  got      {:?}",
                case.name, case.upstream, upstream
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    let _ = base;
}
