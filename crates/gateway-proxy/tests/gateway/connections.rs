//! Client connections over raw sockets: connections that send nothing are
//! limited and closed, slow heads and idle keep-alive connections are
//! closed at their deadlines, and normal clients are served throughout.
//!
//! Client addresses other than 127.0.0.1 are other loopback addresses
//! (127.0.0.0/8 all reach the gateway on Linux), so per-address limits can
//! be exercised from one machine. Deadlines are asserted with wide margins.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use test_support::origin::{Handler, Origin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::harness::{base_with, TestGateway};

fn config(origin: &Origin, gateway: &str) -> String {
    base_with(
        gateway,
        &format!(
            r#"
[clusters.svc]
targets = ["{}"]

[[routes]]
name = "svc"
cluster = "svc"
"#,
            origin.authority()
        ),
    )
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(ip(from), 0))?;
    socket.connect(to).await
}

/// Waits up to `within` for the gateway to close `stream` (end of file or
/// reset); returns how long that took, `None` if it stayed open.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(started + within, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            // A response (a 408, say) before the close is fine.
            Ok(Ok(_)) => continue,
        }
    }
}

/// One `GET /` on a fresh connection from `from`; the status, or `None`
/// when the connection was closed without an answer.
async fn get_from(from: &str, to: SocketAddr) -> Option<u16> {
    let mut s = connect_from(from, to).await.ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// More silent connections than the limits allow, from several addresses:
/// each address gets no more than its share, connections past the global
/// limit are refused or replace the oldest silent ones, an established
/// client and new clients are served while they are held, and every silent
/// connection is closed once `first_byte_timeout` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_limited_and_closed_while_clients_are_served() {
    let origin = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let gw = TestGateway::start(&config(
        &origin,
        "first_byte_timeout = \"4s\"\nmax_connections = 30\nmax_connections_per_client = 10",
    ))
    .await;

    // An established client: a keep-alive connection that has served.
    let established = reqwest::Client::builder()
        .local_address(ip("127.0.0.9"))
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let get = || async {
        established
            .get(gw.url("/"))
            .send()
            .await
            .map(|r| r.status())
    };
    assert_eq!(get().await.unwrap(), 200);

    // 60 silent connections from four addresses: 15 each, 10 admitted per
    // address, and no more than 29 in all (the client above holds one).
    let mut silent = Vec::new();
    for from in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        for _ in 0..15 {
            silent.push(connect_from(from, gw.addr).await.unwrap());
        }
    }
    let flood_started = Instant::now();

    // Those over a limit are closed at once, long before the deadline.
    let refused = futures_util::future::join_all(
        silent
            .iter_mut()
            .map(|s| closed_within(s, Duration::from_millis(300))),
    )
    .await
    .into_iter()
    .filter(Option::is_some)
    .count();
    assert!(
        refused >= 31,
        "at most 29 silent connections are held, {} were",
        60 - refused
    );
    assert!(
        flood_started.elapsed() < Duration::from_secs(3),
        "checked before the first-byte deadline"
    );

    // While they are held: the established client is served, and so is a
    // new client, which takes the place of the oldest silent connection.
    assert_eq!(
        get().await.unwrap(),
        200,
        "the established client is served"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        get_from("127.0.0.6", gw.addr).await,
        Some(200),
        "a new client is served at the limit"
    );

    // Every silent connection is closed by the first-byte deadline (4 s;
    // a wide margin for a busy machine).
    for s in &mut silent {
        assert!(
            closed_within(s, Duration::from_secs(12)).await.is_some(),
            "a silent connection is closed after first_byte_timeout"
        );
    }
    assert!(
        flood_started.elapsed() >= Duration::from_secs(3),
        "silent connections are not closed early"
    );
    assert_eq!(get().await.unwrap(), 200);
    assert_eq!(get_from("127.0.0.2", gw.addr).await, Some(200));
}

/// An idle keep-alive connection is closed at `idle_timeout`, not at
/// `header_read_timeout`; a request head that stops half-way is closed at
/// `header_read_timeout`.
#[tokio::test]
async fn idle_and_slow_head_connections_close_at_their_own_deadlines() {
    let origin = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let gw = TestGateway::start(&config(
        &origin,
        "idle_timeout = \"2s\"\nheader_read_timeout = \"6s\"\nfirst_byte_timeout = \"60s\"",
    ))
    .await;

    // Idle: one request, then nothing.
    let mut idle = TcpStream::connect(gw.addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "served"
    );
    let took = closed_within(&mut idle, Duration::from_secs(10))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(4500),
        "closed at idle_timeout (2 s), not at header_read_timeout (6 s): {took:?}"
    );

    // A head that stops half-way: closed at header_read_timeout (6 s), not
    // at the idle timeout nor the first-byte one.
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: gw.te")
        .await
        .unwrap();
    let took = closed_within(&mut slow, Duration::from_secs(15))
        .await
        .expect("a stalled head is closed after header_read_timeout");
    assert!(
        took >= Duration::from_secs(5),
        "the head has its own deadline, longer than the idle one: {took:?}"
    );

    // A head sent in several packets within the deadline is served.
    let mut split = TcpStream::connect(gw.addr).await.unwrap();
    for part in [
        &b"GET / HT"[..],
        b"TP/1.1\r\nHost: gw",
        b".test\r\nConnection: close\r\n\r\n",
    ] {
        split.write_all(part).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut out = Vec::new();
    split.read_to_end(&mut out).await.unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
}

/// Native HTTP/1.1 engine: a request body the client stops sending is
/// closed once it has paused for `header_read_timeout`, while a body that
/// keeps coming, however slowly, is served.
#[tokio::test]
async fn a_stalled_request_body_is_closed_at_header_read_timeout() {
    let origin = Origin::start(Handler::echo()).await;
    let gw = TestGateway::start(&config(
        &origin,
        "http1_engine = \"native\"\nheader_read_timeout = \"2s\"\nidle_timeout = \"60s\"",
    ))
    .await;
    // Bytes every second for three seconds: each pause is under the limit.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /slow HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\nContent-Length: 4\r\n\r\n",
    )
    .await
    .unwrap();
    for b in [b"a", b"b", b"c", b"d"] {
        tokio::time::sleep(Duration::from_secs(1)).await;
        s.write_all(b).await.unwrap();
    }
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&out)
    );

    // Three bytes of ten, then nothing: closed about 2 s later.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /stall HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let took = closed_within(&mut s, Duration::from_secs(15))
        .await
        .expect("a stalled body is closed");
    assert!(
        took >= Duration::from_millis(1500),
        "not before the deadline: {took:?}"
    );
}
