//! The upstream exchange over real loopback sockets: a scripted upstream
//! sees exact request bytes and answers exact response bytes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gateway_core::Body;
use gateway_http1::client::{self, Checkin, ClientError, Connection};
use gateway_http1::HeadLimits;
use http::{Method, Request};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Keeps the connection handed back, if any.
#[derive(Clone, Default)]
struct Returned(Arc<Mutex<Option<Connection>>>);

impl Checkin for Returned {
    fn checkin(self, conn: Connection) {
        *self.0.lock().unwrap() = Some(conn);
    }
}

impl Returned {
    fn take(&self) -> Option<Connection> {
        self.0.lock().unwrap().take()
    }
}

/// An upstream that answers each request on one connection with the next
/// of `answers`, and records the request bytes it read (heads and bodies,
/// `Content-Length` or chunked). Counts connections accepted.
struct Upstream {
    addr: std::net::SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    accepted: Arc<Mutex<usize>>,
}

async fn upstream(answers: Vec<&'static [u8]>) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let accepted = Arc::new(Mutex::new(0));
    let (seen, count) = (requests.clone(), accepted.clone());
    tokio::spawn(async move {
        let mut answers = answers.into_iter();
        while let Ok((mut io, _)) = listener.accept().await {
            *count.lock().unwrap() += 1;
            let mut buf = Vec::new();
            loop {
                let Some(end) = find(&buf, b"\r\n\r\n") else {
                    let mut chunk = [0u8; 4096];
                    match io.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end + 4]).to_string();
                let chunked = head.contains("transfer-encoding: chunked");
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                let body_end = |buf: &[u8]| {
                    if chunked {
                        find(&buf[end + 4..], b"0\r\n\r\n").map(|at| end + 4 + at + 5)
                    } else {
                        (buf.len() >= end + 4 + len).then_some(end + 4 + len)
                    }
                };
                while body_end(&buf).is_none() {
                    let mut chunk = [0u8; 4096];
                    match io.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let Some(whole_len) = body_end(&buf) else {
                    break;
                };
                let whole = buf.drain(..whole_len).collect::<Vec<_>>();
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&whole).to_string());
                let Some(answer) = answers.next() else { return };
                io.write_all(answer).await.unwrap();
                if find(answer, b"connection: close").is_some() {
                    break;
                }
            }
        }
    });
    Upstream {
        addr,
        requests,
        accepted,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn connect(up: &Upstream) -> Connection {
    Connection::new(TcpStream::connect(up.addr).await.unwrap(), ())
}

fn get(path: &str) -> Request<Body> {
    Request::builder()
        .uri(path)
        .header("host", "up.test")
        .body(gateway_core::body::empty())
        .unwrap()
}

/// `GET /` on `conn`; the connection is not kept afterwards.
async fn get_root(conn: Connection) -> Result<http::Response<Body>, ClientError> {
    client::send(conn, get("/"), &HeadLimits::default(), Returned::default()).await
}

async fn body_of(res: http::Response<Body>) -> String {
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn a_keep_alive_connection_goes_back_when_its_body_ends_and_carries_the_next_exchange() {
    let up = upstream(vec![
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nagain!",
    ])
    .await;
    let home = Returned::default();
    let res = client::send(
        connect(&up).await,
        get("/a"),
        &HeadLimits::default(),
        home.clone(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(body_of(res).await, "hello");
    let conn = home.take().expect("the connection came back");
    assert!(conn.is_reused());
    assert!(conn.is_usable());
    let res = client::send(conn, get("/b"), &HeadLimits::default(), home.clone())
        .await
        .unwrap();
    assert_eq!(body_of(res).await, "again!");
    assert_eq!(*up.accepted.lock().unwrap(), 1);
    assert_eq!(
        *up.requests.lock().unwrap(),
        vec![
            "GET /a HTTP/1.1\r\nhost: up.test\r\n\r\n",
            "GET /b HTTP/1.1\r\nhost: up.test\r\n\r\n"
        ]
    );
}

#[tokio::test]
async fn a_chunked_response_streams_with_its_trailers() {
    let up = upstream(vec![
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n, chunked!\r\n0\r\nx-sum: 15\r\n\r\n",
    ])
    .await;
    let home = Returned::default();
    let res = client::send(
        connect(&up).await,
        get("/"),
        &HeadLimits::default(),
        home.clone(),
    )
    .await
    .unwrap();
    let collected = res.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["x-sum"], "15");
    assert_eq!(collected.to_bytes(), "hello, chunked!");
    assert!(
        home.take().is_some(),
        "a complete chunked body keeps the connection"
    );
}

#[tokio::test]
async fn a_close_delimited_body_is_read_to_the_end_and_the_connection_is_not_kept() {
    let up = upstream(vec![
        b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end",
    ])
    .await;
    let home = Returned::default();
    let res = client::send(
        connect(&up).await,
        get("/"),
        &HeadLimits::default(),
        home.clone(),
    )
    .await
    .unwrap();
    assert_eq!(body_of(res).await, "until the end");
    assert!(home.take().is_none());
}

#[tokio::test]
async fn an_http_10_response_without_keep_alive_is_not_reused() {
    let up = upstream(vec![b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"]).await;
    let home = Returned::default();
    let res = client::send(
        connect(&up).await,
        get("/"),
        &HeadLimits::default(),
        home.clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        res.version(),
        http::Version::HTTP_11,
        "the proxy speaks its own version"
    );
    assert_eq!(body_of(res).await, "ok");
    assert!(home.take().is_none());
}

#[tokio::test]
async fn a_head_response_has_no_body_and_keeps_the_connection() {
    let up = upstream(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n"]).await;
    let home = Returned::default();
    let mut req = get("/");
    *req.method_mut() = Method::HEAD;
    let res = client::send(
        connect(&up).await,
        req,
        &HeadLimits::default(),
        home.clone(),
    )
    .await
    .unwrap();
    assert_eq!(res.headers()["content-length"], "1000");
    assert_eq!(body_of(res).await, "");
    assert!(home.take().is_some());
}

#[tokio::test]
async fn interim_responses_are_skipped_when_no_client_takes_them() {
    let up = upstream(vec![
        b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nfine",
    ])
    .await;
    let res = get_root(connect(&up).await).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("link").is_none());
    assert_eq!(body_of(res).await, "fine");
}

#[tokio::test]
async fn a_body_of_unknown_length_goes_chunked_and_a_known_one_with_its_length() {
    let up = upstream(vec![
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
    ])
    .await;
    let frames = vec![
        Ok::<_, gateway_core::BoxError>(Frame::data(Bytes::from_static(b"abc"))),
        Ok(Frame::data(Bytes::from_static(b"defgh"))),
    ];
    let streamed = StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync();
    let req = Request::post("/up")
        .header("host", "up.test")
        .body(streamed)
        .unwrap();
    let home = Returned::default();
    let res = client::send(
        connect(&up).await,
        req,
        &HeadLimits::default(),
        home.clone(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let req = Request::post("/up")
        .header("host", "up.test")
        .body(gateway_core::body::full("0123456789"))
        .unwrap();
    let res = client::send(
        home.take().unwrap(),
        req,
        &HeadLimits::default(),
        home.clone(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        *up.requests.lock().unwrap(),
        vec![
            "POST /up HTTP/1.1\r\nhost: up.test\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n",
            "POST /up HTTP/1.1\r\nhost: up.test\r\ncontent-length: 10\r\n\r\n0123456789",
        ]
    );
}

#[tokio::test]
async fn an_early_answer_stops_sending_the_request_body() {
    // An upstream that answers as soon as it has the head.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut io, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        while find(&buf, b"\r\n\r\n").is_none() {
            let mut chunk = [0u8; 1024];
            let n = io.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
        }
        io.write_all(
            b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 3\r\nconnection: close\r\n\r\nbig",
        )
        .await
        .unwrap();
        // Keep the connection open: the answer alone must end the exchange.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    // A body that sends one chunk and then never ends.
    let first = futures_util::stream::iter(vec![Ok::<_, gateway_core::BoxError>(Frame::data(
        Bytes::from_static(b"start"),
    ))]);
    let never = futures_util::stream::pending();
    let streamed = StreamBody::new(futures_util::StreamExt::chain(first, never)).boxed_unsync();
    let req = Request::put("/big")
        .header("host", "up.test")
        .body(streamed)
        .unwrap();
    let home = Returned::default();
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        client::send(
            Connection::new(TcpStream::connect(addr).await.unwrap(), ()),
            req,
            &HeadLimits::default(),
            home.clone(),
        ),
    )
    .await
    .expect("the early answer ends the exchange")
    .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(body_of(res).await, "big");
    assert!(
        home.take().is_none(),
        "a half-sent request never leaves a reusable connection"
    );
}

#[tokio::test]
async fn an_ambiguously_framed_response_is_an_error() {
    let up = upstream(vec![
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ])
    .await;
    let err = get_root(connect(&up).await).await.unwrap_err();
    assert!(matches!(err, ClientError::Head(_)), "{err:?}");
}

#[tokio::test]
async fn a_close_before_any_response_byte_says_so() {
    let up = upstream(vec![]).await;
    let err = get_root(connect(&up).await).await.unwrap_err();
    assert!(err.before_response(), "{err:?}");
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_not_a_short_body() {
    let up = upstream(vec![
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nconnection: close\r\n\r\nabc",
    ])
    .await;
    let home = Returned::default();
    let res = client::send(
        connect(&up).await,
        get("/"),
        &HeadLimits::default(),
        home.clone(),
    )
    .await
    .unwrap();
    assert!(res.into_body().collect().await.is_err());
    assert!(home.take().is_none());
}

/// An upstream that, as soon as it accepts, either sends `unasked` or
/// (with `None`) closes its side, then keeps reading. `GET /` is made once
/// the client's reactor has seen that; gives the exchange's error and what
/// reached the upstream.
async fn upstream_acts_first(unasked: Option<&'static [u8]>) -> (ClientError, Vec<u8>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = tokio::spawn(async move {
        let (mut io, _) = listener.accept().await.unwrap();
        match unasked {
            Some(bytes) => io.write_all(bytes).await.unwrap(),
            None => io.shutdown().await.unwrap(),
        }
        let mut got = Vec::new();
        let _ = io.read_to_end(&mut got).await;
        got
    });
    let io = TcpStream::connect(addr).await.unwrap();
    io.readable().await.unwrap();
    let err = get_root(Connection::new(io, ())).await.unwrap_err();
    (err, received.await.unwrap())
}

// Both need batched writes (io_uring): written at once, a head is sent
// before anything from the upstream can be seen.

#[tokio::test]
async fn a_request_is_not_sent_on_a_connection_the_upstream_closed_before_it_went_out() {
    let (err, got) = upstream_acts_first(None).await;
    assert!(err.before_response(), "{err:?}");
    assert!(
        got.is_empty(),
        "the upstream received {:?} (without io_uring heads are not batched)",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
async fn a_request_is_not_sent_after_bytes_the_upstream_sent_unasked() {
    let (err, got) =
        upstream_acts_first(Some(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")).await;
    assert!(matches!(err, ClientError::Head(_)), "{err:?}");
    assert!(!err.before_response(), "not retried: {err:?}");
    assert!(
        got.is_empty(),
        "the upstream received {:?} (without io_uring heads are not batched)",
        String::from_utf8_lossy(&got)
    );
}
