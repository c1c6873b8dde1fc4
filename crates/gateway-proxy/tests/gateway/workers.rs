//! Worker threads: each accepts on its own socket of the same listener
//! and serves its connections to the end.

use std::collections::BTreeSet;

use test_support::origin::{Handler, Origin};

use crate::harness::{base_with, client, TestGateway};

/// Names of this process's threads (worker threads are named
/// `gatehouse-w<N>`; the gateway runs inside the test process).
fn thread_names() -> BTreeSet<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

#[tokio::test]
async fn three_workers_share_one_listener_and_serve_every_connection() {
    let origin = Origin::start(Handler::fixed(200, &[], "hello")).await;
    let gw = TestGateway::start(&base_with(
        "workers = 3",
        &format!(
            "[clusters.up]\ntargets = [\"{}\"]\n[[routes]]\nname = \"all\"\ncluster = \"up\"\n",
            origin.addr()
        ),
    ))
    .await;
    // Many connections at once (one client opens one per concurrent
    // request): the kernel spreads them over the three sockets, and every
    // one is served.
    let http = client();
    let mut calls = Vec::new();
    for i in 0..30 {
        let url = gw.url(&format!("/c/{i}"));
        let http = http.clone();
        calls.push(tokio::spawn(async move {
            let a = http.get(&url).send().await.unwrap();
            let b = http.get(&url).send().await.unwrap();
            (a.status().as_u16(), b.text().await.unwrap())
        }));
    }
    for call in calls {
        assert_eq!(call.await.unwrap(), (200, "hello".to_string()));
    }
    assert_eq!(origin.requests(), 60);
    // The threads name themselves as they start; by now they have.
    let names = thread_names();
    for w in ["gatehouse-w0", "gatehouse-w1", "gatehouse-w2"] {
        assert!(names.contains(w), "no thread {w} in {names:?}");
    }
}
