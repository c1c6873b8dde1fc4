//! One authority per request: what is routed, what keys the cache and what
//! the upstream sees as `Host` are the same value, whatever mix of
//! absolute-form target, HTTP/2 `:authority` and `Host` headers a client
//! sends. Requests that are ambiguous about it get 400 `bad_host` and never
//! reach an upstream.

use http::Request;
use test_support::origin::{Handler, Origin, Reply};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::harness::{base, body, TestGateway};

/// An origin that answers with the `Host` it was sent, cacheable for a minute.
fn host_echo() -> Handler {
    Handler::new(|req: Request<hyper::body::Incoming>| async move {
        let hosts: Vec<&str> = req
            .headers()
            .get_all("host")
            .iter()
            .map(|v| v.to_str().unwrap_or("?"))
            .collect();
        Reply::Response(
            http::Response::builder()
                .header("cache-control", "max-age=60")
                .body(body(format!("host={}", hosts.join("|"))))
                .unwrap(),
        )
    })
}

fn config(origin: &Origin) -> String {
    base(&format!(
        r#"
[cache]
max_bytes = "16MiB"

[clusters.web]
targets = ["{}"]

[[routes]]
name = "secret"
hosts = ["secret.example"]
path_prefix = "/"
cluster = "web"

[[routes]]
name = "cached"
path_prefix = "/cached"
cluster = "web"
cache = {{}}

[[routes]]
name = "default"
path_prefix = "/"
cluster = "web"
"#,
        origin.authority()
    ))
}

/// Sends `raw` on a new connection and reads until the gateway closes it.
async fn exchange(gw: &TestGateway, raw: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the gateway answers and closes")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}

fn body_of(response: &str) -> &str {
    response.split("\r\n\r\n").nth(1).unwrap_or_default()
}

#[tokio::test]
async fn absolute_form_authority_replaces_host_for_routing_cache_and_upstream() {
    let origin = Origin::start(host_echo()).await;
    let gw = TestGateway::start(&config(&origin)).await;

    // The attacker's request: the target names the victim, `Host` itself.
    let (status, res) = exchange(
        &gw,
        "GET http://victim.example/cached/x HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(
        body_of(&res),
        "host=victim.example",
        "the upstream sees the one authority"
    );

    // The victim's plain request may hit, but only what its own host stored.
    let (status, res) = exchange(
        &gw,
        "GET /cached/x HTTP/1.1\r\nHost: victim.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(body_of(&res), "host=victim.example", "{res}");

    // And the attacker's own host never shares an entry with the victim's.
    let (_, res) = exchange(
        &gw,
        "GET /cached/x HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(body_of(&res), "host=attacker.example", "{res}");
    for seen in origin.recorded() {
        assert_eq!(seen.headers.get_all("host").iter().count(), 1);
    }
}

#[tokio::test]
async fn a_host_only_route_never_forwards_another_host() {
    let origin = Origin::start(host_echo()).await;
    let gw = TestGateway::start(&config(&origin)).await;
    let (status, res) = exchange(
        &gw,
        "GET http://secret.example/admin HTTP/1.1\r\nHost: probe.local\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(body_of(&res), "host=secret.example");
    let seen = origin.recorded();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["host"], "secret.example");
    assert_eq!(seen[0].uri, "/admin", "origin-form upstream");
}

#[tokio::test]
async fn missing_repeated_or_invalid_host_is_refused_before_any_upstream() {
    let origin = Origin::start(host_echo()).await;
    let gw = TestGateway::start(&config(&origin)).await;
    for (raw, why) in [
        (
            "GET /cached/x HTTP/1.1\r\nHost: victim.example\r\nHost: attacker.example\r\nConnection: close\r\n\r\n",
            "more than one",
        ),
        (
            "GET http://victim.example/x HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
            "more than one",
        ),
        ("GET /x HTTP/1.1\r\nConnection: close\r\n\r\n", "no `Host`"),
        (
            "GET /x HTTP/1.1\r\nHost: user@victim.example\r\nConnection: close\r\n\r\n",
            "",
        ),
        (
            "GET http://user@victim.example/x HTTP/1.1\r\nHost: victim.example\r\nConnection: close\r\n\r\n",
            "user information",
        ),
    ] {
        let (status, res) = exchange(&gw, raw).await;
        assert_eq!(status, 400, "{raw:?} -> {res}");
        let problem: serde_json::Value = serde_json::from_str(body_of(&res)).unwrap();
        assert_eq!(problem["code"], "bad_host", "{res}");
        assert!(
            problem["detail"].as_str().unwrap().contains(why),
            "{problem}"
        );
    }
    assert_eq!(
        origin.requests(),
        0,
        "nothing ambiguous reached the upstream"
    );

    // HTTP/1.0 may omit `Host`: it matches host-less routes.
    let (status, res) = exchange(&gw, "GET /x HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200, "{res}");
}

#[tokio::test]
async fn http2_host_that_differs_from_authority_is_refused() {
    let origin = Origin::start(host_echo()).await;
    let gw = TestGateway::start(&config(&origin)).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve("victim.example", gw.addr)
        .build()
        .unwrap();
    let port = gw.addr.port();

    let res = h2
        .get(format!("http://victim.example:{port}/cached/x"))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.status(), 400);
    let problem: serde_json::Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "bad_host");
    assert_eq!(origin.requests(), 0);

    // `:authority` alone is the authority, forwarded as `Host`.
    let res = h2
        .get(format!("http://victim.example:{port}/cached/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.text().await.unwrap(),
        format!("host=victim.example:{port}")
    );
    // An HTTP/1.1 client of the same host gets that entry; another host does not.
    let (_, res) = exchange(
        &gw,
        &format!(
            "GET /cached/x HTTP/1.1\r\nHost: victim.example:{port}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(res.contains("hit"), "{res}");
    let (_, res) = exchange(
        &gw,
        "GET /cached/x HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(body_of(&res), "host=attacker.example");
}
