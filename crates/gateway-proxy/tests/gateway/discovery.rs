//! Service discovery through the whole gateway: a cluster given as an SRV
//! name, whose answer (from a test resolver put into the loaded config)
//! changes while clients send requests; traffic moves to the new instance
//! with no reload and no failed request.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway_upstream::resolve::{
    Resolve, ResolveFuture, Resolved, ResolverHandle, SrvAnswer, SrvFuture, SrvRecord,
};
use test_support::origin::{Handler, Origin};

use crate::harness::{base, client, eventually, TestGateway};

/// Answers the SRV records the test last set; every host is local.
#[derive(Debug, Default)]
struct Records(Mutex<Vec<SrvRecord>>);

#[derive(Debug, Clone)]
struct TestDns(Arc<Records>);

impl Resolve for TestDns {
    fn resolve<'a>(&'a self, _host: &'a str) -> ResolveFuture<'a> {
        Box::pin(async {
            Ok(Resolved {
                addrs: vec![IpAddr::from([127, 0, 0, 1])],
                ttl: None,
            })
        })
    }

    fn resolve_srv<'a>(&'a self, _name: &'a str) -> SrvFuture<'a> {
        let records = self.0 .0.lock().unwrap().clone();
        Box::pin(async move { Ok(SrvAnswer { records, ttl: None }) })
    }
}

/// The status and body of a GET.
async fn fetch(http: &reqwest::Client, url: &str) -> (u16, String) {
    let res = http.get(url).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

fn instance(origin: &Origin) -> SrvRecord {
    let port = origin.addr().port();
    SrvRecord {
        priority: 0,
        weight: 1,
        port,
        target: format!("fx-{port}.fx.test"),
    }
}

#[tokio::test]
async fn an_srv_cluster_follows_its_answer_while_requests_flow_without_a_reload() {
    let blue = Origin::start(Handler::fixed(200, &[], "blue")).await;
    let green = Origin::start(Handler::fixed(200, &[], "green")).await;
    let records = Arc::new(Records::default());
    *records.0.lock().unwrap() = vec![instance(&blue)];
    let dns = ResolverHandle::new(TestDns(records.clone()));
    let gw = TestGateway::start_adjusted(
        &base(
            r#"
[clusters.fx]
targets = ["srv+http://_http._tcp.fx.test"]
dns_refresh = "1s"
retry = { attempts = 1 }

[[routes]]
name = "fx"
cluster = "fx"
"#,
        ),
        |loaded| {
            loaded.config.clusters.get_mut("fx").unwrap().resolver = dns;
        },
    )
    .await;
    let http = client();
    assert!(
        eventually(Duration::from_secs(10), || async {
            fetch(&http, &gw.url("/")).await == (200, "blue".into())
        })
        .await,
        "the first answer's instance serves"
    );

    // Clients keep sending while the answer changes.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn({
        let (url, stop, http) = (gw.url("/"), stop.clone(), http.clone());
        async move {
            let mut seen = Vec::new();
            for _ in 0..5000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                seen.push(fetch(&http, &url).await);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        }
    });
    *records.0.lock().unwrap() = vec![instance(&green)];
    assert!(
        eventually(Duration::from_secs(10), || async {
            fetch(&http, &gw.url("/")).await == (200, "green".into())
        })
        .await,
        "the new instance serves without a reload"
    );
    stop.store(true, Ordering::Relaxed);
    let seen = traffic.await.unwrap();
    assert!(!seen.is_empty(), "requests flowed during the change");
    assert!(
        seen.iter().all(|(status, _)| *status == 200),
        "no request failed while the answer changed: {seen:?}"
    );

    let blue_before = blue.requests();
    for _ in 0..10 {
        assert_eq!(fetch(&http, &gw.url("/")).await, (200, "green".into()));
    }
    assert_eq!(
        blue.requests(),
        blue_before,
        "the instance that left gets no new request"
    );
    let status = gw.admin_json("/v1/upstreams").await;
    let targets = &status["fx"]["targets"];
    assert_eq!(targets.as_array().map(Vec::len), Some(1), "{status}");
    assert_eq!(
        targets[0]["address"],
        format!("http://127.0.0.1:{}", green.addr().port()),
        "{status}"
    );
}
