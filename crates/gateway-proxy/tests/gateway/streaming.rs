//! Bodies stream both ways: 100 MB up and 100 MB down through the gateway
//! while the process's resident memory stays far below the body size.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use test_support::origin::{Handler, Origin, Reply};

use crate::harness::{base, client, eventually, reply, with_access_log, TestGateway};

const TOTAL: u64 = 100 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;
/// Far below the 100 MB body: buffering a body whole would blow through it.
const MAX_GROWTH: u64 = 48 * 1024 * 1024;

/// Samples this process's RSS until dropped; reports the peak.
struct PeakRss {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    fn start() -> Self {
        let peak = Arc::new(AtomicU64::new(test_support::self_rss_bytes().unwrap_or(0)));
        let p = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Some(rss) = test_support::self_rss_bytes() {
                    p.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Self { peak, task }
    }

    fn stop(self) -> u64 {
        self.task.abort();
        self.peak.load(Ordering::Relaxed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_stream_both_ways_in_bounded_memory() {
    let counting = Handler::new(|req| async move {
        let mut body = req.into_body();
        let mut n: u64 = 0;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(_) => return Reply::Close,
            }
        }
        reply(200, n.to_string())
    });
    let origin = Origin::start(Handler::stream(TOTAL, CHUNK).on_path("/upload", counting)).await;
    let gw = TestGateway::start(&base(&format!(
        r#"
[clusters.bulk]
targets = ["{}"]

[[routes]]
name = "bulk"
cluster = "bulk"
max_body = "200MiB"
timeout = "60s"
"#,
        origin.authority()
    )))
    .await;
    let http = client();

    // Warm up pools and allocators so the baseline is honest.
    let _ = http
        .get(gw.url("/warm"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await;
    let before = test_support::self_rss_bytes().unwrap();
    let rss = PeakRss::start();

    // Download.
    let mut res = http.get(gw.url("/download")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let mut got: u64 = 0;
    while let Some(chunk) = res.chunk().await.unwrap() {
        got += chunk.len() as u64;
    }
    assert_eq!(got, TOTAL, "every byte arrives");

    // Upload, streamed with no Content-Length.
    let chunks = futures_util::stream::iter(
        (0..TOTAL / CHUNK as u64).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![7u8; CHUNK]))),
    );
    let res = http
        .post(gw.url("/upload"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), TOTAL.to_string());

    let peak = rss.stop();
    let growth = peak.saturating_sub(before);
    assert!(
        growth < MAX_GROWTH,
        "memory grew by {} MiB while streaming 2 × 100 MiB",
        growth >> 20
    );
}

/// Bytes the gateway spliced for `route`, from its metrics.
async fn spliced(gw: &TestGateway, route: &str) -> u64 {
    let label = format!("route=\"{route}\"");
    gw.metrics()
        .await
        .lines()
        .find(|l| l.starts_with("gatehouse_spliced_bytes_total{") && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// A large response on a plain route goes from socket to socket without
/// passing through the gateway (native engine, plain TCP). A cached route
/// must see every byte it stores, so its responses are copied: the hit
/// that follows is the whole body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_response_is_spliced_on_a_plain_route_and_stored_whole_on_a_cached_one() {
    const LEN: usize = 3 * 1024 * 1024 + 5;
    let big: Bytes = (0..LEN as u32)
        .flat_map(|i| i.to_le_bytes())
        .take(LEN)
        .collect::<Vec<u8>>()
        .into();
    let origin = Origin::start(Handler::fixed(
        200,
        &[("cache-control", "max-age=60")],
        big.clone(),
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let config = base(&format!(
        r#"
[cache]
max_bytes = "64MiB"
max_object_bytes = "8MiB"

[clusters.up]
targets = ["{}"]

[[routes]]
name = "splice-cached"
path_prefix = "/cached"
cluster = "up"
cache = {{}}

[[routes]]
name = "splice-plain"
path_prefix = "/plain"
cluster = "up"
"#,
        origin.authority()
    ));
    let config = with_access_log(&config, &log);
    let gw = TestGateway::start(&config).await;
    let native = std::env::var("GATEHOUSE_TEST_HTTP1_ENGINE")
        .ok()
        .is_none_or(|e| e == "native");
    let http = client();

    for _ in 0..2 {
        let res = http.get(gw.url("/plain/big")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.bytes().await.unwrap() == big, "the body arrives whole");
    }
    let plain = spliced(&gw, "splice-plain").await;
    if native {
        assert!(plain > 2 * (LEN as u64 - 64 * 1024), "{plain}");
    } else {
        assert_eq!(plain, 0, "hyper's engine copies");
    }

    let miss = http.get(gw.url("/cached/big")).send().await.unwrap();
    assert!(miss.headers()["cache-status"]
        .to_str()
        .unwrap()
        .contains("stored"));
    assert!(miss.bytes().await.unwrap() == big);
    let hit = http.get(gw.url("/cached/big")).send().await.unwrap();
    assert!(hit.headers()["cache-status"]
        .to_str()
        .unwrap()
        .contains("hit"));
    assert!(
        hit.bytes().await.unwrap() == big,
        "the stored copy is whole"
    );
    assert_eq!(spliced(&gw, "splice-cached").await, 0);
    assert_eq!(origin.requests_to("/cached/big"), 1);

    // The access log counts spliced bytes as sent.
    let logged = eventually(Duration::from_secs(5), || async {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
            >= 4
    })
    .await;
    assert!(logged);
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(line["bytes_out"], LEN as u64, "{line}");
        assert_eq!(line["completed"], true, "{line}");
    }
}
