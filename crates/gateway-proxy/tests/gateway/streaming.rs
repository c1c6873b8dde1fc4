//! Bodies stream both ways: 100 MB up and 100 MB down through the gateway
//! while the process's resident memory stays far below the body size.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use test_support::origin::{Handler, Origin, Reply};

use crate::harness::{base, client, reply, TestGateway};

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
