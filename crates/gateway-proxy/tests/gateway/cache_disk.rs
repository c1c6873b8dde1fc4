//! The cache's disk tier across restarts: a gateway started on the
//! directory a previous one filled serves its objects as hits, refuses a
//! corrupted file, remembers hard and soft purges, and keeps its files
//! under `cache.disk.max_bytes`.
//!
//! Requests carry a fixed `Host`, so cache keys stay the same although
//! each gateway listens on a new port.

use std::path::{Path, PathBuf};
use std::time::Duration;

use test_support::origin::{Handler, Origin};

use crate::harness::{base, client, eventually, TestGateway, TOKEN};

const HOST: &str = "cdn.example";

fn config(origin: &Origin, dir: &Path, disk_max: &str) -> String {
    base(&format!(
        r#"
[cache]
max_bytes = "1MiB"
max_object_bytes = "16KiB"
disk = {{ path = "{}", max_bytes = "{disk_max}" }}

[clusters.site]
targets = ["{}"]

[[routes]]
name = "site"
path_prefix = "/c"
cluster = "site"
cache = {{}}
"#,
        dir.display(),
        origin.authority()
    ))
}

async fn origin() -> Origin {
    Origin::start(Handler::fixed(
        200,
        &[("cache-control", "max-age=600"), ("etag", "\"v1\"")],
        "stored body",
    ))
    .await
}

/// GETs `path` with the fixed `Host`; returns `Cache-Status` and the body.
async fn get(gw: &TestGateway, path: &str) -> (String, String) {
    let res = client()
        .get(gw.url(path))
        .header("host", HOST)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let status = res.headers()["cache-status"].to_str().unwrap().to_string();
    (status, res.text().await.unwrap())
}

async fn purge(gw: &TestGateway, body: serde_json::Value) {
    let res = client()
        .post(gw.admin_url("/v1/cache/purge"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

async fn disk_stats(gw: &TestGateway) -> serde_json::Value {
    gw.admin_json("/v1/cache/stats").await["disk"].clone()
}

/// Waits until the disk tier has written `n` files.
async fn written(gw: &TestGateway, n: u64) {
    assert!(
        eventually(Duration::from_secs(10), || async {
            disk_stats(gw).await["writes"].as_u64() >= Some(n)
        })
        .await,
        "{}",
        disk_stats(gw).await
    );
}

fn entry_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "entry"))
        .collect()
}

#[tokio::test]
async fn a_restarted_gateway_serves_hits_from_disk_without_the_origin() {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&origin, dir.path(), "1MiB");

    let mut first = TestGateway::start(&config).await;
    let (status, _) = get(&first, "/c/page").await;
    assert!(status.contains("stored"), "{status}");
    written(&first, 1).await;
    first.shutdown(Duration::from_secs(5)).await;
    assert_eq!(origin.requests(), 1);

    let second = TestGateway::start(&config).await;
    let (status, body) = get(&second, "/c/page").await;
    assert!(status.contains("; hit"), "{status}");
    assert_eq!(body, "stored body");
    assert_eq!(
        origin.requests(),
        1,
        "the restarted gateway never asked the origin"
    );
}

#[tokio::test]
async fn a_corrupted_disk_entry_is_dropped_and_refetched() {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&origin, dir.path(), "1MiB");

    let mut first = TestGateway::start(&config).await;
    get(&first, "/c/page").await;
    written(&first, 1).await;
    first.shutdown(Duration::from_secs(5)).await;

    let file = entry_files(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n - 3..].copy_from_slice(b"BAD"); // the body's last bytes
    std::fs::write(&file, bytes).unwrap();

    let second = TestGateway::start(&config).await;
    let (status, body) = get(&second, "/c/page").await;
    assert!(status.contains("fwd=uri-miss"), "{status}");
    assert_eq!(body, "stored body", "the corrupted copy was never served");
    assert_eq!(origin.requests(), 2);
    assert_eq!(disk_stats(&second).await["corrupt"], 1);

    let (status, _) = get(&second, "/c/page").await;
    assert!(status.contains("; hit"), "stored again: {status}");
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn soft_and_hard_purges_reach_the_disk_tier() {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&origin, dir.path(), "1MiB");

    let mut first = TestGateway::start(&config).await;
    for path in ["/c/hard", "/c/soft", "/c/kept"] {
        get(&first, path).await;
    }
    written(&first, 3).await;
    purge(
        &first,
        serde_json::json!({"url": format!("http://{HOST}/c/hard")}),
    )
    .await;
    purge(
        &first,
        serde_json::json!({"url": format!("http://{HOST}/c/soft"), "soft": true}),
    )
    .await;
    first.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        entry_files(dir.path()).len(),
        2,
        "the hard purge deleted a file"
    );

    let second = TestGateway::start(&config).await;
    let (status, _) = get(&second, "/c/kept").await;
    assert!(status.contains("; hit"), "{status}");
    assert_eq!(origin.requests(), 3);

    let (status, _) = get(&second, "/c/hard").await;
    assert!(status.contains("fwd=uri-miss"), "hard-purged: {status}");
    assert_eq!(origin.requests(), 4);

    let (status, _) = get(&second, "/c/soft").await;
    assert!(
        status.contains("fwd=stale") && !status.contains("; hit"),
        "soft-purged objects are validated, not served fresh: {status}"
    );
    assert_eq!(origin.requests(), 5);
}

#[tokio::test]
async fn the_disk_bound_holds_under_a_crawl_of_unique_urls() {
    const DISK_MAX: u64 = 64 * 1024;
    let origin = Origin::start(Handler::fixed(
        200,
        &[("cache-control", "max-age=600")],
        vec![b'x'; 2048],
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = TestGateway::start(&config(&origin, dir.path(), "64KiB")).await;
    for i in 0..200 {
        let (status, _) = get(&gw, &format!("/c/crawl/{i}")).await;
        assert!(status.contains("stored"), "{status}");
        let held = disk_stats(&gw).await["bytes"].as_u64().unwrap();
        assert!(held <= DISK_MAX, "over the bound after {i}: {held}");
    }
    let stats = disk_stats(&gw).await;
    assert!(stats["evictions"].as_u64().unwrap() > 100, "{stats}");
    gw.shutdown(Duration::from_secs(5)).await;
    let on_disk: u64 = entry_files(dir.path())
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    assert!(on_disk <= DISK_MAX, "{on_disk} bytes of files");
    assert!(on_disk > DISK_MAX / 2, "the tier was used: {on_disk}");
}
