//! Routes over real sockets: precedence, rewriting, header rules, 404s,
//! hop-by-hop stripping and forwarding headers.

use std::time::Duration;

use test_support::origin::{Handler, Origin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{base, client, TestGateway};

async fn named(name: &'static str) -> Origin {
    Origin::start(Handler::fixed(200, &[("x-origin", name)], name)).await
}

#[tokio::test]
async fn most_specific_route_wins_end_to_end() {
    let (a, b, c, d) = (
        named("a").await,
        named("b").await,
        named("c").await,
        named("d").await,
    );
    let gw = TestGateway::start(&base(&format!(
        r#"
[clusters.a]
targets = ["{a}"]
[clusters.b]
targets = ["{b}"]
[clusters.c]
targets = ["{c}"]
[clusters.d]
targets = ["{d}"]

[[routes]]
name = "api"
path_prefix = "/api"
cluster = "a"

[[routes]]
name = "api-user"
path_template = "/api/users/{{id}}"
cluster = "b"

[[routes]]
name = "api-user-me"
path = "/api/users/me"
cluster = "c"

[[routes]]
name = "tenant"
hosts = ["*.tenants.test"]
path_prefix = "/api"
cluster = "d"
"#,
        a = a.authority(),
        b = b.authority(),
        c = c.authority(),
        d = d.authority(),
    )))
    .await;
    let http = client();
    for (host, path, want) in [
        ("gw.test", "/api/orders", "a"),
        ("gw.test", "/api/users/42", "b"),
        ("gw.test", "/api/users/me", "c"),
        ("acme.tenants.test", "/api/users/42", "d"),
    ] {
        let res = http
            .get(gw.url(path))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{host}{path}");
        assert_eq!(res.text().await.unwrap(), want, "{host}{path}");
    }
    let res = http.get(gw.url("/nope")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "route_not_found");
    assert!(body["detail"].as_str().unwrap().contains("/nope"));
    assert!(body["request_id"].is_string());
}

#[tokio::test]
async fn strip_prefix_rewrite_and_header_rules() {
    let echo = Origin::start(Handler::echo()).await;
    let gw = TestGateway::start(&base(&format!(
        r#"
[clusters.echo]
targets = ["{echo}"]

[[routes]]
name = "fx"
path_prefix = "/v1/fx"
strip_prefix = "/v1/fx"
cluster = "echo"
request_headers = {{ set = {{ "x-env" = "test" }}, remove = ["x-drop-me"] }}
response_headers = {{ add = {{ "x-served-by" = "gatehouse" }} }}

[[routes]]
name = "files"
path_template = "/users/{{id}}/files/{{*rest}}"
rewrite = "/storage/{{id}}/{{*rest}}"
cluster = "echo"
"#,
        echo = echo.authority()
    )))
    .await;
    let http = client();
    let res = http
        .get(gw.url("/v1/fx/rates?base=USD"))
        .header("x-drop-me", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-served-by"], "gatehouse");
    let seen: serde_json::Value = res.json().await.unwrap();
    assert_eq!(seen["path"], "/rates");
    assert_eq!(seen["query"], "base=USD");
    assert_eq!(seen["headers"]["x-env"], "test");
    assert!(seen["headers"].get("x-drop-me").is_none());

    let seen: serde_json::Value = http
        .get(gw.url("/users/7/files/a/b.txt"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["path"], "/storage/7/a/b.txt");

    // Dot segments cannot escape a route.
    let seen: serde_json::Value = http
        .get(gw.url("/v1/fx/../fx/latest"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["path"], "/latest");
}

/// Raw HTTP/1.1 so the client library cannot tidy the headers for us.
#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways_and_forwarding_added() {
    let origin = Origin::start(Handler::new(|req| async move {
        let seen = fields_as_lines(&req);
        let res = http::Response::builder()
            .header("connection", "x-origin-hop")
            .header("x-origin-hop", "secret")
            .header("keep-alive", "timeout=5")
            .header("x-origin-end", "kept")
            .body(crate::harness::body(seen))
            .unwrap();
        test_support::origin::Reply::Response(res)
    }))
    .await;
    let gw = TestGateway::start(&base(&format!(
        "[clusters.o]\ntargets = [\"{}\"]\n[[routes]]\nname = \"all\"\ncluster = \"o\"\n",
        origin.authority()
    )))
    .await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"GET /x HTTP/1.1\r\nHost: gw.test\r\nConnection: x-client-hop, close\r\nX-Client-Hop: 1\r\n\
Keep-Alive: timeout=1\r\nProxy-Authorization: Basic Zm9v\r\nTE: gzip\r\nX-Request-Id: req-123\r\n\
X-Forwarded-For: 203.0.113.7\r\nX-End: kept\r\n\r\n",
    )
    .await
    .unwrap();
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("x-origin-hop"), "{head}");
    assert!(!head.contains("keep-alive"), "{head}");
    assert!(head.contains("x-origin-end: kept"), "{head}");
    assert!(head.contains("x-request-id: req-123"), "{head}");

    for gone in [
        "x-client-hop",
        "keep-alive",
        "proxy-authorization",
        "te=",
        "connection=",
    ] {
        assert!(!body.contains(gone), "`{gone}` reached the origin:\n{body}");
    }
    for kept in [
        "x-end=kept",
        "x-request-id=req-123",
        "x-forwarded-for=203.0.113.7, 127.0.0.1",
        "x-forwarded-proto=http",
        "x-forwarded-host=gw.test",
        "host=gw.test",
    ] {
        assert!(body.contains(kept), "`{kept}` missing upstream:\n{body}");
    }
    assert!(body.contains("traceparent=00-"), "{body}");
}

/// A route's rules that remove or set one of the gateway's own fields
/// (which the gateway then does not build at all) leave exactly what the
/// rules ask for upstream: no removed field, neither the gateway's nor the
/// client's, and one value for a set field. The client still gets its
/// `X-Request-Id` back.
#[tokio::test]
async fn header_rules_replace_the_fields_the_gateway_adds() {
    let origin = Origin::start(Handler::new(|req| async move {
        test_support::origin::Reply::Response(http::Response::new(crate::harness::body(
            fields_as_lines(&req),
        )))
    }))
    .await;
    let gw = TestGateway::start(&base(&format!(
        r#"
[clusters.o]
targets = ["{}"]

[[routes]]
name = "all"
cluster = "o"
request_headers = {{ remove = ["Traceparent", "x-request-id", "x-forwarded-proto"], set = {{ "x-forwarded-host" = "edge.example" }} }}
"#,
        origin.authority()
    )))
    .await;
    let res = client()
        .get(gw.url("/x"))
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .header("x-request-id", "req-456")
        .header("x-forwarded-proto", "gopher")
        .header("x-forwarded-host", "client.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "req-456");
    let body = res.text().await.unwrap();
    let seen: Vec<&str> = body.lines().collect();
    for gone in ["traceparent=", "x-request-id=", "x-forwarded-proto="] {
        assert!(
            !seen.iter().any(|l| l.starts_with(gone)),
            "`{gone}` reached the origin:\n{body}"
        );
    }
    let hosts: Vec<&&str> = seen
        .iter()
        .filter(|l| l.starts_with("x-forwarded-host="))
        .collect();
    assert_eq!(hosts, [&"x-forwarded-host=edge.example"], "{body}");
    assert!(seen.contains(&"x-forwarded-for=127.0.0.1"), "{body}");
}

/// The fields an origin received, one `name=value` line each.
fn fields_as_lines<B>(req: &http::Request<B>) -> String {
    req.headers()
        .iter()
        .map(|(k, v)| format!("{k}={}", v.to_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join("\n")
}
