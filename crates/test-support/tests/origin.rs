//! The mock origin answers over HTTP/1.1, h2c and TLS, logs what it got,
//! and its built-in handlers behave as documented.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use test_support::{Handler, Origin};

fn client(h2: bool) -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(h2)
        .build(HttpConnector::new())
}

async fn get(
    c: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
) -> Result<(http::response::Parts, Bytes), hyper_util::client::legacy::Error> {
    let res = c
        .request(Request::get(url).body(Full::default()).unwrap())
        .await?;
    let (parts, body) = res.into_parts();
    Ok((parts, body.collect().await.unwrap().to_bytes()))
}

#[tokio::test]
async fn echo_reports_the_request_over_http1_and_h2c() {
    let origin = Origin::start(Handler::echo()).await;
    for (h2, version) in [(false, "HTTP/1.1"), (true, "HTTP/2.0")] {
        let req = Request::post(format!("{}/a/b?x=1", origin.url()))
            .header("x-test", "yes")
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap();
        let res = client(h2).request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        let v: serde_json::Value =
            serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/a/b");
        assert_eq!(v["query"], "x=1");
        assert_eq!(v["version"], version);
        assert_eq!(v["headers"]["x-test"], "yes");
        assert_eq!(v["body_len"], 5);
        assert_eq!(
            v["body_sha256"],
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }
    assert_eq!(origin.requests(), 2);
    assert_eq!(origin.connections(), 2, "one connection per client");
    assert_eq!(origin.requests_to("/a/b"), 2);
    assert_eq!(origin.recorded()[1].version, Version::HTTP_2);
}

#[tokio::test]
async fn fixed_close_stream_and_on_path() {
    let origin = Origin::start(
        Handler::fixed(418, &[("x-kind", "teapot")], "short and stout")
            .on_path("/close", Handler::close())
            .on_path("/big", Handler::stream(1_000_003, 4096)),
    )
    .await;
    let c = client(false);
    let (parts, body) = get(&c, &format!("{}/", origin.url())).await.unwrap();
    assert_eq!(parts.status, 418);
    assert_eq!(parts.headers["x-kind"], "teapot");
    assert_eq!(body, "short and stout");

    assert!(get(&c, &format!("{}/close", origin.url())).await.is_err());

    let (parts, body) = get(&c, &format!("{}/big", origin.url())).await.unwrap();
    assert_eq!(parts.headers["content-length"], "1000003");
    assert_eq!(body.len(), 1_000_003);
    assert_eq!(&body[..3], b"abc");
}

#[tokio::test]
async fn stop_releases_the_port_and_restart_reuses_it() {
    let origin = Origin::start(Handler::status(204).delay(Duration::from_millis(5))).await;
    let addr = origin.addr();
    let c = client(false);
    assert_eq!(get(&c, &origin.url()).await.unwrap().0.status, 204);
    origin.stop().await;
    assert!(get(&c, &format!("http://{addr}/")).await.is_err());
    let origin = Origin::builder(Handler::status(200))
        .addr(addr)
        .start()
        .await;
    assert!(test_support::wait_for_port(addr, Duration::from_secs(2)).await);
    assert_eq!(get(&c, &origin.url()).await.unwrap().0.status, 200);
    origin.set_handler(Handler::status(503));
    assert_eq!(get(&c, &origin.url()).await.unwrap().0.status, 503);
}

#[tokio::test]
async fn tls_origin_negotiates_h2_by_alpn() {
    let origin = Origin::builder(Handler::echo()).tls().start().await;
    let certs = origin.certs().unwrap().clone();
    assert!(certs.ca_file().exists() && certs.cert_file().exists() && certs.key_file().exists());
    let connector = tokio_rustls::TlsConnector::from(certs.client_config());
    let tcp = tokio::net::TcpStream::connect(origin.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let res = send
        .send_request(
            Request::get(format!("{}/tls", origin.url()))
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["path"], "/tls");
    assert_eq!(v["version"], "HTTP/2.0");
}
