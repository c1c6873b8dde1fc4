//! IP rules over real sockets: clients connect from different loopback
//! addresses (127.0.0.1, .2, .3), so the peer address is real; a trusted
//! proxy is a peer listed in `trusted_proxies`.

use std::net::IpAddr;
use std::time::Duration;

use test_support::origin::{Handler, Origin};

use crate::harness::{base, base_with, TestGateway};

/// A client whose connections come from `from`.
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn status(
    client: &reqwest::Client,
    url: &str,
    xff: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut req = client.get(url);
    if let Some(xff) = xff {
        req = req.header("x-forwarded-for", xff);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let problem = if res
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "application/problem+json")
    {
        res.json().await.unwrap()
    } else {
        serde_json::Value::Null
    };
    (status, problem)
}

fn routes(origin: &Origin) -> String {
    format!(
        r#"
[clusters.o]
targets = ["{}"]

[[routes]]
name = "public"
path_prefix = "/public"
cluster = "o"

[[routes]]
name = "internal"
path_prefix = "/internal"
cluster = "o"
ip_rules = {{ allow = ["127.0.0.1/32", "127.0.0.2"], deny = ["127.0.0.2"] }}

[[routes]]
name = "keyed"
path_prefix = "/keyed"
cluster = "o"
auth = {{ methods = ["api_key"] }}
ip_rules = {{ deny = ["127.0.0.3"] }}
"#,
        origin.authority()
    )
}

#[tokio::test]
async fn a_denied_address_gets_403_and_the_upstream_sees_nothing() {
    let origin = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let gw = TestGateway::start(&base(&format!(
        "[ip_rules]\ndeny = [\"127.0.0.4/32\"]\n{}",
        routes(&origin)
    )))
    .await;
    let (one, two, three, four) = (
        client_from("127.0.0.1"),
        client_from("127.0.0.2"),
        client_from("127.0.0.3"),
        client_from("127.0.0.4"),
    );

    // Globally denied: refused before routing, even for a path no route has.
    for path in ["/public/x", "/internal/x", "/no-such-route"] {
        let (s, problem) = status(&four, &gw.url(path), None).await;
        assert_eq!(s, 403, "{path}");
        assert_eq!(problem["code"], "address_forbidden", "{problem}");
        assert_eq!(problem["status"], 403);
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("127.0.0.4 is denied"),
            "{problem}"
        );
        assert!(problem["request_id"].is_string(), "{problem}");
    }
    // Route allow list with a deny inside it: deny wins; others are refused.
    let (s, problem) = status(&two, &gw.url("/internal/x"), None).await;
    assert_eq!(
        (s, problem["code"].as_str()),
        (403, Some("address_forbidden"))
    );
    let (s, problem) = status(&three, &gw.url("/internal/x"), None).await;
    assert_eq!(
        (s, problem["code"].as_str()),
        (403, Some("address_forbidden"))
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not in the allow list"),
        "{problem}"
    );
    // Refused before authentication: 403, not 401 for the missing key.
    let (s, problem) = status(&three, &gw.url("/keyed/x"), None).await;
    assert_eq!(
        (s, problem["code"].as_str()),
        (403, Some("address_forbidden"))
    );
    assert_eq!(
        origin.requests(),
        0,
        "a refused request reached the upstream"
    );

    // Allowed addresses go through.
    assert_eq!(status(&one, &gw.url("/internal/x"), None).await.0, 200);
    assert_eq!(status(&three, &gw.url("/public/x"), None).await.0, 200);
    assert_eq!(status(&two, &gw.url("/public/x"), None).await.0, 200);
    let (s, problem) = status(&one, &gw.url("/keyed/x"), None).await;
    assert_eq!(
        (s, problem["code"].as_str()),
        (401, Some("missing_credentials"))
    );
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn forwarded_for_is_honoured_only_from_trusted_proxies() {
    let origin = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let gw = TestGateway::start(&base_with(
        "trusted_proxies = [\"127.0.0.1\"]",
        &format!(
            r#"
[ip_rules]
deny = ["203.0.113.0/24"]

[clusters.o]
targets = ["{}"]

[[routes]]
name = "partners"
path_prefix = "/partners"
cluster = "o"
ip_rules = {{ allow = ["192.0.2.0/24"] }}

[[routes]]
name = "all"
path_prefix = "/"
cluster = "o"
"#,
            origin.authority()
        ),
    ))
    .await;
    let proxy = client_from("127.0.0.1");
    let stranger = client_from("127.0.0.2");

    // From the trusted proxy, the address it appended is the client.
    let (s, problem) = status(&proxy, &gw.url("/x"), Some("203.0.113.7")).await;
    assert_eq!(
        (s, problem["code"].as_str()),
        (403, Some("address_forbidden"))
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("203.0.113.7"),
        "{problem}"
    );
    assert_eq!(
        status(&proxy, &gw.url("/x"), Some("198.51.100.1")).await.0,
        200
    );
    // From anyone else the header proves nothing: the peer is the client.
    assert_eq!(
        status(&stranger, &gw.url("/x"), Some("203.0.113.7"))
            .await
            .0,
        200
    );
    let (s, _) = status(&stranger, &gw.url("/partners/x"), Some("192.0.2.9")).await;
    assert_eq!(s, 403, "an untrusted peer claimed an allowed address");
    // A client behind the proxy cannot prepend an address: the rightmost
    // entry not written by a trusted proxy counts.
    let (s, _) = status(
        &proxy,
        &gw.url("/partners/x"),
        Some("192.0.2.9, 198.51.100.1"),
    )
    .await;
    assert_eq!(s, 403, "a spoofed leftmost entry was believed");
    assert_eq!(
        status(&proxy, &gw.url("/x"), Some("203.0.113.7, 198.51.100.1"))
            .await
            .0,
        200
    );
    assert_eq!(
        status(&proxy, &gw.url("/partners/x"), Some("192.0.2.9"))
            .await
            .0,
        200
    );
    assert_eq!(origin.requests(), 4);
}

#[tokio::test]
async fn a_reload_with_a_bad_block_changes_nothing() {
    let origin = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let gw = TestGateway::start(&base(&format!(
        "[ip_rules]\ndeny = [\"127.0.0.2\"]\n{}",
        routes(&origin)
    )))
    .await;
    let two = client_from("127.0.0.2");
    assert_eq!(status(&two, &gw.url("/public/x"), None).await.0, 403);

    let broken = base(&format!(
        "[ip_rules]\ndeny = [\"127.0.0.3\", \"127.0.0.300\"]\n{}",
        routes(&origin)
    ));
    std::fs::write(&gw.config_path, broken).unwrap();
    let err = gw
        .gateway()
        .reload_from_file()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ip_rules.deny[1]: `127.0.0.300` is not a CIDR block"),
        "{err}"
    );
    assert_eq!(status(&two, &gw.url("/public/x"), None).await.0, 403);
    assert_eq!(
        status(&client_from("127.0.0.3"), &gw.url("/public/x"), None)
            .await
            .0,
        200
    );

    let lifted = base(&format!(
        "[ip_rules]\ndeny = [\"127.0.0.3\"]\n{}",
        routes(&origin)
    ));
    std::fs::write(&gw.config_path, lifted).unwrap();
    gw.gateway().reload_from_file().await.unwrap();
    assert_eq!(status(&two, &gw.url("/public/x"), None).await.0, 200);
    assert_eq!(
        status(&client_from("127.0.0.3"), &gw.url("/public/x"), None)
            .await
            .0,
        403
    );
}
