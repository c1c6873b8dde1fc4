//! Reloads never drop traffic and never apply a broken file; shutdown
//! drains what is in flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use test_support::origin::{Handler, Origin};

use crate::harness::{base, client, eventually, TestGateway, TOKEN};

fn config(origin: &str, version: usize) -> String {
    base(&format!(
        r#"
[clusters.svc]
targets = ["{origin}"]

[[routes]]
name = "svc"
cluster = "svc"
response_headers = {{ set = {{ "x-config-version" = "{version}" }} }}
"#
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_requests_during_ten_reloads_all_succeed() {
    let origin = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let gw = TestGateway::start(&config(&origin.authority(), 0)).await;
    let http = client();
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));

    let mut workers = Vec::new();
    for _ in 0..8 {
        let http = http.clone();
        let url = gw.url("/");
        let ok = ok.clone();
        let failures = failures.clone();
        workers.push(tokio::spawn(async move {
            for _ in 0..250 {
                match http.get(&url).send().await {
                    Ok(res) if res.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(res) => failures.lock().unwrap().push(res.status().to_string()),
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
            }
        }));
    }
    for version in 1..=10 {
        tokio::time::sleep(Duration::from_millis(15)).await;
        std::fs::write(&gw.config_path, config(&origin.authority(), version)).unwrap();
        let res = http
            .post(gw.admin_url("/v1/config/reload"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "reload {version}");
    }
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(*failures.lock().unwrap(), Vec::<String>::new());
    assert_eq!(ok.load(Ordering::Relaxed), 2000);
    let res = http.get(gw.url("/")).send().await.unwrap();
    assert_eq!(
        res.headers()["x-config-version"],
        "10",
        "the last reload is live"
    );
}

#[tokio::test]
async fn broken_config_is_rejected_with_its_line_and_the_old_one_keeps_serving() {
    let origin = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let good = config(&origin.authority(), 1);
    let gw = TestGateway::start(&good).await;
    let http = client();

    let broken = good.replace("cluster = \"svc\"", "cluster = \"missing\"");
    let line = broken
        .lines()
        .position(|l| l.contains("cluster = \"missing\""))
        .unwrap()
        + 1;
    std::fs::write(&gw.config_path, &broken).unwrap();
    let res = http
        .post(gw.admin_url("/v1/config/reload"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let p: serde_json::Value = res.json().await.unwrap();
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("gatehouse.toml:{line}:")) && detail.contains("routes[0].cluster"),
        "{detail}"
    );
    let res = http.get(gw.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-config-version"], "1");

    std::fs::write(&gw.config_path, "[[routes]\n").unwrap();
    let err = gw.gateway().reload_from_file().await.unwrap_err();
    assert!(err.to_string().contains("gatehouse.toml:1:"), "{err}");
    assert_eq!(http.get(gw.url("/")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let origin =
        Origin::start(Handler::fixed(200, &[], "finished").delay(Duration::from_millis(500))).await;
    let mut gw = TestGateway::start(&config(&origin.authority(), 1)).await;
    let http = client();
    let in_flight = tokio::spawn({
        let http = http.clone();
        let url = gw.url("/");
        async move {
            let res = http.get(url).send().await.unwrap();
            (res.status(), res.text().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let addr = gw.addr;
    let drained = gw.shutdown(Duration::from_secs(5)).await;
    let (status, body) = in_flight.await.unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "finished"));
    assert!(drained, "every connection finished within the grace period");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown"
    );
}

#[tokio::test]
async fn a_changed_file_is_picked_up_without_a_signal() {
    let origin = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let watched =
        |v| config(&origin.authority(), v).replace("watch_config = false", "watch_config = true");
    let gw = TestGateway::start(&watched(1)).await;
    let http = client();
    assert_eq!(
        http.get(gw.url("/")).send().await.unwrap().headers()["x-config-version"],
        "1"
    );
    std::fs::write(&gw.config_path, watched(2)).unwrap();
    let applied = crate::harness::eventually(Duration::from_secs(10), || async {
        http.get(gw.url("/")).send().await.unwrap().headers()["x-config-version"] == "2"
    })
    .await;
    assert!(applied, "the watcher reloads after the file changes");
}

/// A config that fails to build is not applied in part: the plan it
/// lowers stays at its old rate although plans come before clusters.
#[tokio::test]
async fn a_reload_that_fails_to_build_changes_nothing() {
    let origin = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let with_rate = |rate: &str, extra: &str| {
        base(&format!(
            r#"
[plans.basic]
rate_per_second = {rate}

[clusters.svc]
targets = ["{origin}"]
{extra}

[[routes]]
name = "svc"
cluster = "svc"
auth = {{ methods = ["api_key"] }}
"#,
            origin = origin.authority()
        ))
    };
    let gw = TestGateway::start(&with_rate("1000.0", "")).await;
    let http = client();
    let created = gw
        .create_key(serde_json::json!({"owner": "acme", "plan": "basic"}))
        .await;
    let key = created["secret"].as_str().expect("a key").to_string();
    let limit = || async {
        let res = http
            .get(gw.url("/"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        // 429 once the lowered plan applies; the header comes either way.
        assert!([200, 429].contains(&res.status().as_u16()), "{res:?}");
        res.headers()["ratelimit-limit"]
            .to_str()
            .unwrap()
            .to_string()
    };
    let before = limit().await;

    let broken = with_rate(
        "1.0",
        "\n[clusters.secure]\ntargets = [\"https://127.0.0.1:9\"]\ntls = { ca_file = \"/nonexistent/ca.pem\" }\n",
    );
    std::fs::write(&gw.config_path, &broken).unwrap();
    let res = http
        .post(gw.admin_url("/v1/config/reload"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let p: serde_json::Value = res.json().await.unwrap();
    let detail = p["detail"].as_str().unwrap();
    let line = broken.lines().position(|l| l.contains("ca_file")).unwrap() + 1;
    assert!(
        detail.contains(&format!("gatehouse.toml:{line}:"))
            && detail.contains("clusters.secure.tls.ca_file"),
        "{detail}"
    );
    assert_eq!(limit().await, before, "the old plan is still enforced");
    assert!(gw.gateway().upstreams().get("secure").is_none());

    // The same file without the broken cluster applies whole.
    std::fs::write(&gw.config_path, with_rate("1.0", "")).unwrap();
    gw.gateway().reload_from_file().await.unwrap();
    assert_ne!(limit().await, before, "the new plan applies once it builds");
}

/// `[[dark_launches]]` and `[keys]` apply on reload: a launch's sample
/// rate goes from none to all, and new keys get the new environment.
#[tokio::test]
async fn a_reload_applies_dark_launch_and_key_settings() {
    let primary = Origin::start(Handler::fixed(200, &[], "primary")).await;
    let candidate = Origin::start(Handler::fixed(200, &[], "candidate")).await;
    let with = |percent: &str, environment: &str| {
        base(&format!(
            r#"
[keys]
environment = "{environment}"

[clusters.svc]
targets = ["{primary}"]

[clusters.next]
targets = ["{candidate}"]

[[routes]]
name = "svc"
cluster = "svc"

[[dark_launches]]
name = "svc-next"
routes = ["svc"]
candidate = "next"
sample_percent = {percent}
"#,
            primary = primary.authority(),
            candidate = candidate.authority(),
        ))
    };
    let gw = TestGateway::start(&with("0.0", "live")).await;
    let http = client();
    let send = |n: usize| {
        let http = http.clone();
        let url = gw.url("/x");
        async move {
            for _ in 0..n {
                let res = http.get(&url).send().await.unwrap();
                assert_eq!(res.text().await.unwrap(), "primary");
            }
        }
    };
    let new_key_prefix = || async {
        let created: serde_json::Value = http
            .post(gw.admin_url("/v1/keys"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"owner": "acme"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let secret = created["secret"].as_str().expect("a key").to_string();
        secret.splitn(3, '_').take(2).collect::<Vec<_>>().join("_")
    };
    send(5).await;
    gw.gateway().mirror().idle().await;
    assert_eq!(candidate.requests(), 0, "nothing is sampled at 0%");
    assert_eq!(new_key_prefix().await, "gh_live");

    std::fs::write(&gw.config_path, with("100.0", "staging")).unwrap();
    gw.gateway().reload_from_file().await.unwrap();
    send(5).await;
    let mirrored = eventually(Duration::from_secs(10), || async {
        candidate.requests() == 5
    })
    .await;
    assert!(mirrored, "all five mirrored: {}", candidate.requests());
    assert_eq!(new_key_prefix().await, "gh_staging");
    let report = gw.admin_json("/v1/shadow/svc-next").await;
    assert_eq!(report["state"], "active", "{report}");
}
