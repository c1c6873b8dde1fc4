//! Response bodies spliced from the upstream socket to the client socket:
//! a real upstream, the native client, the connection driver on a real
//! client socket, and a client reading the exact bytes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gateway_core::Body;
use gateway_http1::client::{self, Checkin, Connection};
use gateway_http1::splice::{SharedSocket, SpliceOffer, SPLICE_MIN};
use gateway_http1::{serve_connection, HeadLimits, ServerOptions};
use http::Request;
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A body of `len` bytes no two neighbouring windows of which look alike,
/// so a dropped, doubled or reordered piece shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32)
        .flat_map(|i| i.to_le_bytes())
        .take(len)
        .collect()
}

/// An upstream answering every request on a connection with `body` under
/// its `Content-Length`; with `cut_at`, it sends only that much of the
/// body and closes. Counts the connections it accepted.
async fn upstream(
    body: Vec<u8>,
    cut_at: Option<usize>,
) -> (std::net::SocketAddr, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(0));
    let count = accepted.clone();
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut io, _)) = listener.accept().await {
            *count.lock().unwrap() += 1;
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        let mut chunk = [0u8; 4096];
                        match io.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.clear();
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                    if io.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let sent = cut_at.unwrap_or(body.len());
                    // Several writes, so the relay meets an empty socket.
                    for piece in body[..sent].chunks(100_000) {
                        if io.write_all(piece).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    if cut_at.is_some() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// Keeps the one upstream connection between exchanges.
#[derive(Clone, Default)]
struct Pool(Arc<Mutex<Option<Connection>>>);

impl Checkin for Pool {
    fn checkin(self, conn: Connection) {
        *self.0.lock().unwrap() = Some(conn);
    }
}

/// How the service hands the upstream body to the driver.
#[derive(Clone, Copy)]
enum Layer {
    /// As it came.
    Plain,
    /// Through a body that skips empty frames and reads on: the driver
    /// must not take the connection then.
    SkipsEmptyFrames,
}

/// A proxy on a real socket: each request goes to `up` on a pooled
/// connection; the offers of its responses are kept for the test.
async fn proxy(
    up: std::net::SocketAddr,
    layer: Layer,
    splice: bool,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<SpliceOffer>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let offers: Arc<Mutex<Vec<SpliceOffer>>> = Arc::default();
    let kept = offers.clone();
    tokio::spawn(async move {
        let pool = Pool::default();
        while let Ok((io, _)) = listener.accept().await {
            let socket = SharedSocket::new(io);
            let opts = ServerOptions {
                splice: splice.then(|| socket.sink()),
                ..ServerOptions::default()
            };
            let (pool, kept) = (pool.clone(), kept.clone());
            tokio::spawn(serve_connection(
                socket,
                BytesMut::new(),
                opts,
                move |req| {
                    let (pool, kept) = (pool.clone(), kept.clone());
                    async move {
                        let conn = pool.0.lock().unwrap().take();
                        let conn = match conn {
                            Some(conn) => conn,
                            None => Connection::new(TcpStream::connect(up).await.unwrap(), ()),
                        };
                        let upstream_req = Request::builder()
                            .uri(req.uri().clone())
                            .header("host", "up.test")
                            .body(gateway_core::body::empty())
                            .unwrap();
                        let res = client::send(conn, upstream_req, &HeadLimits::default(), pool)
                            .await
                            .unwrap();
                        if let Some(offer) = res.extensions().get::<SpliceOffer>() {
                            kept.lock().unwrap().push(offer.clone());
                        }
                        match layer {
                            Layer::Plain => res,
                            Layer::SkipsEmptyFrames => {
                                res.map(|b| SkipEmpty(b).boxed_unsync() as Body)
                            }
                        }
                    }
                },
            ));
        }
    });
    (addr, offers)
}

/// One test's world: an upstream serving a body of `len` bytes (cut at
/// `cut_at`), the proxy in front of it, and what they recorded.
struct World {
    body: Vec<u8>,
    /// Upstream connections accepted.
    accepted: Arc<Mutex<usize>>,
    /// The offers of the responses the proxy got.
    offers: Arc<Mutex<Vec<SpliceOffer>>>,
    gw: std::net::SocketAddr,
}

async fn world(len: usize, cut_at: Option<usize>, layer: Layer, splice: bool) -> World {
    let body = pattern(len);
    let (up, accepted) = upstream(body.clone(), cut_at).await;
    let (gw, offers) = proxy(up, layer, splice).await;
    World {
        body,
        accepted,
        offers,
        gw,
    }
}

impl World {
    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.gw).await.unwrap()
    }

    fn offers(&self) -> Vec<SpliceOffer> {
        self.offers.lock().unwrap().clone()
    }

    fn accepted(&self) -> usize {
        *self.accepted.lock().unwrap()
    }
}

/// A body that never passes an empty data frame on.
struct SkipEmpty(Body);

impl http_body::Body for SkipEmpty {
    type Data = Bytes;
    type Error = gateway_core::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        loop {
            match std::pin::Pin::new(&mut self.0).poll_frame(cx) {
                std::task::Poll::Ready(Some(Ok(f)))
                    if f.data_ref().is_some_and(Bytes::is_empty) => {}
                other => return other,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }
}

/// Sends a GET on `io` and reads its response: the head and exactly
/// `Content-Length` bytes of body, or what came before the connection
/// closed.
async fn exchange(io: &mut TcpStream, path: &str) -> (String, Vec<u8>) {
    io.write_all(format!("GET {path} HTTP/1.1\r\nhost: gw.test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = io.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed before a response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_string)
        })
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut body = buf[end..].to_vec();
    while body.len() < len {
        let mut chunk = vec![0u8; 64 * 1024];
        match tokio::time::timeout(Duration::from_secs(10), io.read(&mut chunk))
            .await
            .expect("the body arrives or the connection closes")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    (head, body)
}

const LEN: usize = 1024 * 1024 + 17;

#[tokio::test]
async fn a_large_body_is_spliced_byte_for_byte_and_its_upstream_connection_is_reused() {
    let w = world(LEN, None, Layer::Plain, true).await;
    let mut io = w.connect().await;
    for _ in 0..3 {
        let (head, got) = exchange(&mut io, "/big").await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(got == w.body, "the body arrives whole and in order");
    }
    let offers = w.offers();
    assert_eq!(offers.len(), 3);
    for offer in &offers {
        // Everything but what came with the head went kernel-side.
        let moved = offer.moved();
        assert!(
            moved > (LEN - 64 * 1024) as u64 && moved <= LEN as u64,
            "{moved}"
        );
    }
    // The relay handed the connection back each time.
    assert_eq!(w.accepted(), 1);
}

#[tokio::test]
async fn a_small_body_is_not_offered() {
    let w = world(SPLICE_MIN as usize / 2, None, Layer::Plain, true).await;
    let (_, got) = exchange(&mut w.connect().await, "/small").await;
    assert!(got == w.body);
    assert!(w.offers().is_empty());
}

#[tokio::test]
async fn a_layer_that_reads_past_the_empty_frame_gets_the_bytes_instead() {
    let w = world(LEN, None, Layer::SkipsEmptyFrames, true).await;
    let mut io = w.connect().await;
    for _ in 0..2 {
        let (_, got) = exchange(&mut io, "/big").await;
        assert!(got == w.body, "the body arrives whole and in order");
    }
    for offer in w.offers() {
        assert_eq!(
            offer.moved(),
            0,
            "nothing was spliced behind the layer's back"
        );
    }
    assert_eq!(w.accepted(), 1);
}

#[tokio::test]
async fn without_a_sink_the_body_is_copied() {
    let w = world(LEN, None, Layer::Plain, false).await;
    let (_, got) = exchange(&mut w.connect().await, "/big").await;
    assert!(got == w.body);
    assert_eq!(w.offers()[0].moved(), 0);
}

#[tokio::test]
async fn an_upstream_closing_mid_body_cuts_the_response_short_and_closes_the_connection() {
    let cut = 300_000;
    let w = world(LEN, Some(cut), Layer::Plain, true).await;
    let mut io = w.connect().await;
    let (_, got) = exchange(&mut io, "/big").await;
    assert_eq!(got.len(), cut, "every byte the upstream sent, and no more");
    assert!(got[..] == w.body[..cut]);
    // The response cannot be completed: the connection closes.
    let mut rest = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), io.read(&mut rest))
        .await
        .expect("the connection closes")
        .unwrap_or(0);
    assert_eq!(n, 0);
    let moved = w.offers()[0].moved();
    assert!(moved > 0 && moved < cut as u64, "{moved}");
}

#[tokio::test]
async fn a_response_relayed_as_its_client_goes_away_does_not_go_back_to_the_pool() {
    let w = world(8 * LEN, None, Layer::Plain, true).await;
    let mut io = w.connect().await;
    io.write_all(b"GET /big HTTP/1.1\r\nhost: gw.test\r\n\r\n")
        .await
        .unwrap();
    let mut some = vec![0u8; 64 * 1024];
    let n = io.read(&mut some).await.unwrap();
    assert!(n > 0);
    drop(io);
    // The upstream connection still owes most of the body: a new client
    // gets a new upstream connection, and its whole body.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, got) = exchange(&mut w.connect().await, "/big").await;
    assert!(got == w.body);
    assert_eq!(w.accepted(), 2);
    assert!(w.offers()[0].moved() < w.body.len() as u64);
}
