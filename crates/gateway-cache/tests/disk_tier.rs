//! The disk tier through `HttpCache`: a cache opened on a directory that a
//! previous cache filled serves its objects as hits, refuses corrupt files,
//! remembers purges, stays under its byte bound and falls back to memory
//! when writes fail.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use futures::FutureExt;
use gateway_cache::{CacheConfig, DiskConfig, Purge, PurgeTarget, RouteCacheConfig};
use gateway_core::{body, ManualClock};
use http::Response;

fn config(dir: &Path, disk_max_bytes: u64) -> CacheConfig {
    CacheConfig {
        max_bytes: 64 * 1024,
        max_object_bytes: 16 * 1024,
        disk: Some(DiskConfig {
            path: dir.to_path_buf(),
            max_bytes: disk_max_bytes,
        }),
        ..CacheConfig::default()
    }
}

fn open(dir: &Path, clock: &ManualClock) -> Harness {
    Harness::open(
        config(dir, 1 << 20),
        RouteCacheConfig::default(),
        clock.clone(),
    )
}

/// An origin answering `/n` paths with `body <n>`, fresh for an hour,
/// tagged `even` or `odd`.
fn origin() -> Arc<FnOrigin> {
    FnOrigin::new(|n| {
        async move {
            let mut res = Response::new(body::full(Bytes::from(format!("body {n}"))));
            let headers = res.headers_mut();
            headers.insert("cache-control", "max-age=3600".parse().unwrap());
            headers.insert("etag", format!("\"v{n}\"").parse().unwrap());
            let tag = if n % 2 == 0 { "even" } else { "odd" };
            headers.insert("surrogate-key", tag.parse().unwrap());
            Ok(res)
        }
        .boxed()
    })
}

fn entry_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "entry"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn a_restarted_cache_serves_what_the_previous_one_stored() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start_time());
    let o = origin();
    {
        let h = open(dir.path(), &clock);
        let r = h.get("/a", o.clone()).await;
        assert!(r.cache_status().contains("stored"), "{}", r.cache_status());
        h.cache.flush();
    }
    assert_eq!(entry_files(dir.path()).len(), 1);
    clock.advance(chrono::Duration::seconds(10));

    let h = open(dir.path(), &clock);
    let r = h.get("/a", o.clone()).await;
    assert!(r.cache_status().contains("hit"), "{}", r.cache_status());
    assert_eq!(r.text(), "body 0");
    assert_eq!(
        r.age(),
        Some(10),
        "the age kept counting across the restart"
    );
    assert_eq!(o.calls(), 1, "the restart cost no origin request");
    let disk = h.cache.stats().disk.unwrap();
    assert_eq!(disk.entries, 1);
    assert_eq!(disk.corrupt, 0);
    assert_eq!(disk.reads, 1, "the hit was read from disk");
    let r = h.get("/a", o.clone()).await;
    assert!(r.cache_status().contains("hit"), "{}", r.cache_status());
    assert_eq!(
        h.cache.stats().disk.unwrap().reads,
        1,
        "the next hit came from memory"
    );
}

#[tokio::test]
async fn a_corrupt_entry_is_dropped_and_refetched() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start_time());
    let o = origin();
    {
        let h = open(dir.path(), &clock);
        h.get("/a", o.clone()).await;
        h.cache.flush();
    }
    let file = entry_files(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01; // one bit of the body
    std::fs::write(&file, bytes).unwrap();

    let h = open(dir.path(), &clock);
    let r = h.get("/a", o.clone()).await;
    assert!(
        r.cache_status().contains("fwd=uri-miss"),
        "{}",
        r.cache_status()
    );
    assert_eq!(r.text(), "body 1", "the corrupt body was never served");
    assert_eq!(o.calls(), 2);
    assert_eq!(h.cache.stats().disk.unwrap().corrupt, 1);
    h.cache.flush();
    assert!(!file.exists(), "the corrupt file is deleted");

    let r = h.get("/a", o.clone()).await;
    assert!(r.cache_status().contains("hit"), "{}", r.cache_status());
    assert_eq!(r.text(), "body 1");
}

#[tokio::test]
async fn a_torn_entry_is_never_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start_time());
    let o = origin();
    {
        let h = open(dir.path(), &clock);
        h.get("/a", o.clone()).await;
        h.cache.flush();
    }
    let file = entry_files(dir.path()).pop().unwrap();
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();

    let h = open(dir.path(), &clock);
    assert_eq!(h.cache.stats().disk.unwrap().corrupt, 1);
    let r = h.get("/a", o.clone()).await;
    assert!(r.cache_status().contains("miss"), "{}", r.cache_status());
    assert_eq!(o.calls(), 2);
}

#[tokio::test]
async fn hard_and_soft_purges_reach_the_disk_tier() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start_time());
    let o = origin();
    {
        let h = open(dir.path(), &clock);
        for path in ["/gone", "/soft", "/kept"] {
            h.get(path, o.clone()).await;
        }
        // Call 0 is even, 1 odd, 2 even: `/soft` alone is tagged `odd`.
        let hard = Purge {
            target: PurgeTarget::Url("https://api.example.com/gone".into()),
            soft: false,
        };
        assert_eq!(h.cache.purge(&hard).unwrap().purged, 1);
        let soft = Purge {
            target: PurgeTarget::Tag("odd".into()),
            soft: true,
        };
        assert_eq!(h.cache.purge(&soft).unwrap().purged, 1);
        h.cache.flush();
    }
    assert_eq!(entry_files(dir.path()).len(), 2);

    let h = open(dir.path(), &clock);
    let kept = h.get("/kept", o.clone()).await;
    assert!(
        kept.cache_status().contains("hit"),
        "{}",
        kept.cache_status()
    );
    assert_eq!(o.calls(), 3);

    let gone = h.get("/gone", o.clone()).await;
    assert!(
        gone.cache_status().contains("uri-miss"),
        "{}",
        gone.cache_status()
    );
    assert_eq!(o.calls(), 4);

    let soft = h.get("/soft", o.clone()).await;
    let status = soft.cache_status();
    assert!(
        status.contains("fwd=stale"),
        "a soft-purged object is validated, not served fresh: {status}"
    );
    assert_eq!(o.calls(), 5);
}

#[tokio::test]
async fn the_disk_bound_holds_under_a_crawl_of_unique_urls() {
    const DISK_MAX: u64 = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start_time());
    let h = Harness::open(
        config(dir.path(), DISK_MAX),
        RouteCacheConfig::default(),
        clock.clone(),
    );
    let o = FnOrigin::new(|n| {
        async move {
            let mut res = Response::new(body::full(Bytes::from(vec![(n % 251) as u8; 4096])));
            res.headers_mut()
                .insert("cache-control", "max-age=3600".parse().unwrap());
            Ok(res)
        }
        .boxed()
    });
    for i in 0..300 {
        h.get(&format!("/crawl/{i}"), o.clone()).await;
        let disk = h.cache.stats().disk.unwrap();
        assert!(disk.bytes <= DISK_MAX, "over the bound after {i}: {disk:?}");
    }
    h.cache.flush();
    let disk = h.cache.stats().disk.unwrap();
    assert!(disk.evictions > 200, "{disk:?}");
    let on_disk: u64 = entry_files(dir.path())
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    assert_eq!(on_disk, disk.bytes, "the index counts the files exactly");
    assert!(on_disk <= DISK_MAX);
    assert_eq!(entry_files(dir.path()).len() as u64, disk.entries);

    // The newest objects are the ones kept.
    drop(h);
    let h = open(dir.path(), &clock);
    let r = h.get("/crawl/299", o.clone()).await;
    assert!(r.cache_status().contains("hit"), "{}", r.cache_status());
}

#[tokio::test]
async fn failed_writes_degrade_to_memory_only() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start_time());
    let o = origin();
    let h = open(&dir.path().join("tier"), &clock);
    // The directory disappears under the running cache: every write fails.
    std::fs::remove_dir_all(dir.path().join("tier")).unwrap();
    h.get("/a", o.clone()).await;
    h.cache.flush();
    let disk = h.cache.stats().disk.unwrap();
    assert!(disk.degraded, "{disk:?}");
    assert_eq!(disk.write_drops, 1);
    assert_eq!(disk.entries, 0);

    // Memory still serves, and stores while degraded are dropped, counted.
    let r = h.get("/a", o.clone()).await;
    assert!(r.cache_status().contains("hit"), "{}", r.cache_status());
    h.get("/b", o.clone()).await;
    h.cache.flush();
    assert_eq!(h.cache.stats().disk.unwrap().write_drops, 2);
    assert_eq!(o.calls(), 2);
}
