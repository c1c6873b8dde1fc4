//! The connection driver over an in-memory socket: raw request bytes in,
//! the exact response bytes out, and what the service saw.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gateway_core::Body;
use gateway_http1::{serve_connection, OnUpgrade, ServerOptions};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

/// What the service saw of each request: method, target, body (or error).
type Seen = Arc<Mutex<Vec<String>>>;

fn reply(status: u16, body: Body) -> Response<Body> {
    let mut res = Response::new(body);
    *res.status_mut() = StatusCode::from_u16(status).unwrap();
    res.headers_mut()
        .insert("date", HeaderValue::from_static(DATE));
    res
}

/// Answers by path: `/echo` returns the request body, `/stream` a body
/// of unknown length with trailers, `/refuse` a 403 without reading the
/// body, `/204`, `/upgrade` a 101 then upper-cases the tunnel, anything
/// else `ok`.
async fn service(mut req: Request<Body>, seen: Seen) -> Response<Body> {
    let label = format!("{} {}", req.method(), req.uri());
    match req.uri().path() {
        "/echo" => {
            let collected = req.body_mut().collect().await;
            match collected {
                Ok(c) => {
                    let trailers = c.trailers().cloned();
                    let bytes = c.to_bytes();
                    let mut line = format!("{label} body={:?}", String::from_utf8_lossy(&bytes));
                    if let Some(t) = trailers {
                        line.push_str(&format!(" trailers={t:?}"));
                    }
                    seen.lock().unwrap().push(line);
                    reply(200, gateway_core::body::full(bytes))
                }
                Err(e) => {
                    seen.lock()
                        .unwrap()
                        .push(format!("{label} body error: {e}"));
                    reply(400, gateway_core::body::full("bad body"))
                }
            }
        }
        "/stream" => {
            seen.lock().unwrap().push(label);
            let mut t = HeaderMap::new();
            t.insert("x-sum", HeaderValue::from_static("9"));
            let frames = vec![
                Ok::<_, gateway_core::BoxError>(Frame::data(Bytes::from_static(b"hello "))),
                Ok(Frame::data(Bytes::from_static(b"world"))),
                Ok(Frame::trailers(t)),
            ];
            reply(
                200,
                StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync(),
            )
        }
        "/refuse" => {
            seen.lock().unwrap().push(label);
            reply(403, gateway_core::body::full("no"))
        }
        "/204" => {
            seen.lock().unwrap().push(label);
            let mut res = reply(204, gateway_core::body::empty());
            res.headers_mut()
                .insert("content-length", HeaderValue::from_static("0"));
            res
        }
        "/upgrade" => {
            seen.lock().unwrap().push(label);
            let on_upgrade = req.extensions_mut().remove::<OnUpgrade>().unwrap();
            tokio::spawn(async move {
                let mut io = on_upgrade.upgraded().await.unwrap();
                let mut buf = [0u8; 64];
                loop {
                    let n = io.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    io.write_all(&buf[..n].to_ascii_uppercase()).await.unwrap();
                }
            });
            let mut res = reply(101, gateway_core::body::empty());
            res.headers_mut()
                .insert("upgrade", HeaderValue::from_static("websocket"));
            res.headers_mut()
                .insert("connection", HeaderValue::from_static("upgrade"));
            res
        }
        _ => {
            seen.lock().unwrap().push(label);
            let mut res = reply(200, gateway_core::body::full("ok"));
            if req.method() == http::Method::HEAD {
                *res.body_mut() = gateway_core::body::empty();
                res.headers_mut()
                    .insert("content-length", HeaderValue::from_static("2"));
            }
            res
        }
    }
}

/// Serves `input` (then the client's end of file) on a fresh connection;
/// returns every byte written back and what the service saw.
async fn serve(input: &[u8]) -> (String, Vec<String>) {
    serve_with(input, true).await
}

async fn serve_with(input: &[u8], close_after: bool) -> (String, Vec<String>) {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    let driver = tokio::spawn(serve_connection(
        server,
        BytesMut::new(),
        ServerOptions::default(),
        move |req| service(req, seen2.clone()),
    ));
    client.write_all(input).await.unwrap();
    if close_after {
        client.shutdown().await.unwrap();
    }
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut out))
        .await
        .expect("the connection ends")
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
    let seen = seen.lock().unwrap().clone();
    (String::from_utf8_lossy(&out).into_owned(), seen)
}

fn ok(len: usize, body: &str) -> String {
    format!("HTTP/1.1 200 OK\r\ndate: {DATE}\r\ncontent-length: {len}\r\n\r\n{body}")
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (out, seen) = serve(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /c HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(
        out,
        format!("{}{}{}", ok(2, "ok"), ok(3, "abc"), ok(2, "ok"))
    );
    assert_eq!(seen, ["GET /a", "POST /echo body=\"abc\"", "GET /c"]);
}

#[tokio::test]
async fn chunked_requests_are_decoded_with_trailers() {
    let (out, seen) = serve(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n",
    )
    .await;
    assert_eq!(out, ok(13, "abc0123456789"));
    assert_eq!(
        seen,
        [r#"POST /echo body="abc0123456789" trailers={"x-t": "1"}"#]
    );
}

#[tokio::test]
async fn a_bad_chunk_fails_the_body_and_closes() {
    let (out, seen) = serve(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\nGET /next HTTP/1.1\r\n\r\n",
    )
    .await;
    assert_eq!(
        out,
        format!("HTTP/1.1 400 Bad Request\r\ndate: {DATE}\r\ncontent-length: 8\r\nconnection: close\r\n\r\nbad body")
    );
    assert_eq!(
        seen,
        ["POST /echo body error: chunk data not followed by CRLF"]
    );
}

#[tokio::test]
async fn unknown_lengths_are_chunked_with_trailers() {
    let (out, _) = serve(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(
        out,
        format!("HTTP/1.1 200 OK\r\ndate: {DATE}\r\ntransfer-encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\nx-sum: 9\r\n\r\n")
    );
    // An HTTP/1.0 client cannot read chunks: the body ends with the connection.
    let (out, _) =
        serve(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /never HTTP/1.0\r\n\r\n")
            .await;
    assert_eq!(
        out,
        format!("HTTP/1.1 200 OK\r\ndate: {DATE}\r\nconnection: close\r\n\r\nhello world")
    );
}

#[tokio::test]
async fn http10_clients_get_http11_with_their_connection_rules() {
    let (out, seen) = serve(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\nGET /c HTTP/1.0\r\n\r\n").await;
    assert_eq!(
        out,
        format!(
            "HTTP/1.1 200 OK\r\ndate: {DATE}\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok\
             HTTP/1.1 200 OK\r\ndate: {DATE}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
        )
    );
    assert_eq!(seen, ["GET /a", "GET /b"], "nothing is read after a close");
}

#[tokio::test]
async fn head_204_and_304_carry_no_body() {
    let (out, _) =
        serve(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /204 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(
        out,
        format!("HTTP/1.1 200 OK\r\ndate: {DATE}\r\ncontent-length: 2\r\n\r\nHTTP/1.1 204 No Content\r\ndate: {DATE}\r\n\r\n")
    );
}

#[tokio::test]
async fn ambiguous_requests_are_refused_and_never_served() {
    for (input, status) in [
        (&b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"[..], "400 Bad Request"),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "400 Bad Request"),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "400 Bad Request"),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "501 Not Implemented"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", "400 Bad Request"),
    ] {
        let (out, seen) = serve(input).await;
        assert!(out.starts_with(&format!("HTTP/1.1 {status}\r\ncontent-type: application/problem+json\r\n")), "{out}");
        assert!(out.contains("\r\nconnection: close\r\n"), "{out}");
        assert_eq!(out.matches("HTTP/1.1").count(), 1, "one answer, then the close: {out}");
        assert!(seen.is_empty(), "the service saw {seen:?}");
    }
    let (out, _) = serve(format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000)).as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{out}");
    assert!(out.contains(r#""code":"request_line_too_long""#), "{out}");
}

#[tokio::test]
async fn expect_continue_is_answered_when_the_body_is_read() {
    let (out, seen) = serve(
        b"PUT /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
    )
    .await;
    assert_eq!(out, format!("HTTP/1.1 100 Continue\r\n\r\n{}", ok(2, "hi")));
    assert_eq!(seen, ["PUT /echo body=\"hi\""]);
    // Refused without reading: no 100, and the connection closes since
    // the client may or may not send the body.
    let (out, _) = serve(
        b"PUT /refuse HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    )
    .await;
    assert_eq!(out, format!("HTTP/1.1 403 Forbidden\r\ndate: {DATE}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno"));
}

#[tokio::test]
async fn unread_bodies_are_drained_when_small() {
    let (out, seen) = serve(b"POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /after HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(
        out,
        format!(
            "HTTP/1.1 403 Forbidden\r\ndate: {DATE}\r\ncontent-length: 2\r\n\r\nno{}",
            ok(2, "ok")
        )
    );
    assert_eq!(seen, ["POST /refuse", "GET /after"]);
    let (out, seen) =
        serve(b"POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\nhello").await;
    assert!(out.ends_with("connection: close\r\n\r\nno"), "{out}");
    assert_eq!(seen, ["POST /refuse"]);
}

#[tokio::test]
async fn a_large_body_the_service_read_in_full_keeps_the_connection() {
    // Well over what is drained after a response: read by the service, it
    // leaves nothing to drain, so the next request is served.
    let body = "x".repeat(200_000);
    let input = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}GET /after HTTP/1.1\r\nHost: x\r\n\r\n",
        body.len()
    );
    let (out, seen) = serve(input.as_bytes()).await;
    assert!(
        out.ends_with(&ok(2, "ok")),
        "{}",
        &out[out.len().saturating_sub(200)..]
    );
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1], "GET /after");
}

#[tokio::test]
async fn a_client_closing_mid_body_fails_the_body() {
    let (out, seen) =
        serve(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc").await;
    assert!(out.starts_with("HTTP/1.1 400 Bad Request"), "{out}");
    assert_eq!(
        seen,
        ["POST /echo body error: the client closed the connection before the request body ended"]
    );
}

#[tokio::test]
async fn upgrades_hand_the_connection_over() {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(serve_connection(
        server,
        BytesMut::new(),
        ServerOptions::default(),
        move |req| service(req, seen2.clone()),
    ));
    client
        .write_all(b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nearly")
        .await
        .unwrap();
    let expected = format!("HTTP/1.1 101 Switching Protocols\r\ndate: {DATE}\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\nEARLY");
    let mut buf = vec![0u8; expected.len()];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&buf), expected);
    client.write_all(b"more").await.unwrap();
    let mut buf = [0u8; 4];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"MORE");
}

#[tokio::test]
async fn shutdown_closes_an_idle_connection() {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let opts = ServerOptions::default();
    let stop = opts.shutdown.clone();
    let seen: Seen = Arc::default();
    let driver = tokio::spawn(serve_connection(
        server,
        BytesMut::new(),
        opts,
        move |req| service(req, seen.clone()),
    ));
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; ok(2, "ok").len()];
    client.read_exact(&mut buf).await.unwrap();
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), driver)
        .await
        .expect("closed at once")
        .unwrap()
        .unwrap();
}

/// Records what the driver says about waiting on the client for body bytes.
#[derive(Default)]
struct Waits(Mutex<Vec<bool>>);

impl gateway_http1::BodyObserver for Waits {
    fn body_pending(&self, pending: bool) {
        self.0.lock().unwrap().push(pending);
    }
}

#[tokio::test]
async fn the_observer_hears_when_a_body_read_waits_on_the_client() {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let waits = Arc::new(Waits::default());
    let opts = ServerOptions {
        observer: Some(waits.clone()),
        ..Default::default()
    };
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(serve_connection(
        server,
        BytesMut::new(),
        opts,
        move |req| service(req, seen2.clone()),
    ));
    client
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        *waits.0.lock().unwrap(),
        [true],
        "waiting for the last two bytes"
    );
    client.write_all(b"cd").await.unwrap();
    let mut buf = vec![0u8; ok(4, "abcd").len()];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&buf), ok(4, "abcd"));
    assert_eq!(*waits.0.lock().unwrap(), [true, false], "the body ended");
    // A request without a body never waits on the client.
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; ok(2, "ok").len()];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(*waits.0.lock().unwrap(), [true, false]);
}
