//! HTTP/2 (h2c and TLS with ALPN), HTTP/2 to upstreams, and WebSocket
//! upgrades passed through.

use std::time::Duration;

use test_support::origin::{Handler, Origin};
use test_support::tls::TestCerts;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{base, TestGateway};

#[tokio::test]
async fn http2_over_tls_and_h2c_end_to_end() {
    let origin = Origin::start(Handler::echo()).await;
    let certs = TestCerts::generate();
    let config = format!(
        r#"
[gateway]
watch_config = false

[[listeners]]
name = "plain"
bind = "127.0.0.1:0"

[[listeners]]
name = "tls"
bind = "127.0.0.1:0"
tls = {{ cert = "{cert}", key = "{key}" }}

[admin]
bind = "127.0.0.1:0"

[telemetry]
access_log = "off"

[clusters.h2]
targets = ["{origin}"]
protocol = "h2c"

[[routes]]
name = "all"
cluster = "h2"
"#,
        cert = certs.cert_file().display(),
        key = certs.key_file().display(),
        origin = origin.authority(),
    );
    let gw = TestGateway::start(&config).await;
    let tls_addr = gw.running.as_ref().unwrap().listeners[1];

    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.ca_file()).unwrap()).unwrap();
    let tls_client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .resolve("localhost", tls_addr)
        .build()
        .unwrap();
    let res = tls_client
        .get(format!("https://localhost:{}/secure", tls_addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.version(),
        reqwest::Version::HTTP_2,
        "ALPN negotiates h2"
    );
    assert_eq!(res.status(), 200);
    let seen: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        seen["version"], "HTTP/2.0",
        "the upstream hop is h2c: {seen}"
    );
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");

    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let res = h2c.get(gw.url("/plain")).send().await.unwrap();
    assert_eq!(
        res.version(),
        reqwest::Version::HTTP_2,
        "h2c by prior knowledge"
    );
    let seen: serde_json::Value = res.json().await.unwrap();
    assert_eq!(seen["path"], "/plain");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
}

/// A raw TCP upstream that accepts one WebSocket-style upgrade and then
/// echoes bytes back upper-cased.
async fn upgrade_origin() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(head.contains("upgrade: websocket"), "{head}");
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            let upper = buf[..n].to_ascii_uppercase();
            s.write_all(&upper).await.unwrap();
        }
    });
    addr
}

#[tokio::test]
async fn websocket_upgrade_is_tunnelled() {
    let upstream = upgrade_origin().await;
    let gw = TestGateway::start(&base(&format!(
        "[clusters.ws]\ntargets = [\"{upstream}\"]\n[[routes]]\nname = \"ws\"\ncluster = \"ws\"\n"
    )))
    .await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut byte))
            .await
            .expect("101 arrives")
            .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    s.write_all(b"hello tunnel").await.unwrap();
    let mut buf = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .expect("echo arrives through the tunnel")
        .unwrap();
    assert_eq!(&buf, b"HELLO TUNNEL");
}
