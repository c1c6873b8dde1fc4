//! End-to-end behaviour of the mirror engine against real local upstreams.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use gateway_core::ToProblem;
use gateway_mirror::{
    DiffCategory, DropReason, ErrorKind, LaunchState, MirrorOutcome, Observation, Verdict,
};
use http::{HeaderMap, Method, StatusCode};

fn rates(path: &str) -> String {
    let id: u64 = path
        .trim_start_matches("/v1/orders/")
        .split('?')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    format!(r#"{{"id":{id},"total":{},"currency":"EUR"}}"#, id * 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidate_sleeping_two_seconds_adds_nothing_to_the_primary() {
    let primary = upstream(Arc::new(|p, _, _| (200, rates(p), 0))).await;
    let finished = Arc::new(AtomicBool::new(false));
    let f = finished.clone();
    let candidate = upstream(Arc::new(move |p, _, _| {
        let f = f.clone();
        // Flag flips only after the 2 s sleep, when the response is sent.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(2100)).await;
            f.store(true, Ordering::SeqCst);
        });
        (200, rates(p), 2000)
    }))
    .await;
    let c = client(&primary, &candidate, None);
    let e = engine(vec![launch("slow")], c.clone(), None).await;

    let start = std::time::Instant::now();
    let (resp, planned) = proxy(&e, &c, Method::GET, "/v1/orders/7", "r1", &[]).await;
    let served_in = start.elapsed();
    assert!(planned);
    assert_eq!(resp.status, Some(StatusCode::OK));
    assert_eq!(body(&resp), rates("/v1/orders/7"));
    // The client had its answer while the candidate was still sleeping.
    assert!(!finished.load(Ordering::SeqCst));
    assert!(served_in < Duration::from_millis(1500), "{served_in:?}");

    e.idle().await;
    let r = e.report("slow").unwrap();
    let ep = &r.assessment.endpoints[0];
    assert_eq!((ep.attempts, ep.compared, ep.matches), (1, 1, 1));
    assert!(ep.latency.as_ref().unwrap().candidate_p50_ms >= 2000.0);
}

#[tokio::test]
async fn saturated_queue_drops_shadows_never_primaries() {
    // The candidate never answers before the test releases it.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let candidate = common::serve(axum::Router::new().fallback(move || {
        let g = g.clone();
        async move {
            let _p = g.acquire().await;
            "{}"
        }
    }))
    .await;
    let c = client("http://127.0.0.1:9", &candidate, None);
    let mut cfg = launch("sat");
    cfg.queue_capacity = 2;
    cfg.concurrency = 1;
    let e = engine(vec![cfg], c, None).await;
    let primary = || {
        Observation::response(
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from_static(b"{}"),
            Duration::from_millis(1),
        )
    };
    let parts = || http::Request::get("/v1/x").body(()).unwrap().into_parts().0;
    // Plans made before anything is queued all see room; the queue then
    // takes two and submit drops the rest without waiting.
    let plans: Vec<_> = (0..5)
        .map(|i| e.plan("api", &parts(), &format!("a{i}"), None).unwrap())
        .collect();
    let results: Vec<_> = plans
        .into_iter()
        .map(|p| p.submit(Bytes::new(), primary()))
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 2);
    assert!(results
        .iter()
        .filter_map(|r| r.err())
        .all(|o| o == MirrorOutcome::Dropped(DropReason::QueueFull)));
    // With the queue full, plan itself declines (and counts) further shadows.
    for i in 0..5 {
        assert!(e.plan("api", &parts(), &format!("b{i}"), None).is_none());
    }
    let r = e.report("sat").unwrap();
    assert_eq!(r.dropped.get("queue_full"), Some(&8));

    gate.add_permits(100);
    e.idle().await;
    let r = e.report("sat").unwrap();
    assert_eq!(r.assessment.endpoints[0].attempts, 2);
}

#[tokio::test]
async fn sample_rate_holds_within_tolerance_over_10000_request_ids() {
    let c = client("http://127.0.0.1:9", "http://127.0.0.1:9", None);
    let mut cfg = launch("sampled");
    cfg.sample_percent = 10.0;
    let e = engine(vec![cfg], c, None).await;
    let (parts, ()) = http::Request::get("/v1/x").body(()).unwrap().into_parts();
    let n = 10_000;
    let planned = (0..n)
        .filter(|i| {
            e.plan("api", &parts, &format!("{:032x}", i * 7919), None)
                .is_some()
        })
        .count();
    // Binomial(10000, 0.1): sd = 30; allow 4 sd.
    assert!((880..=1120).contains(&planned), "{planned}");
    assert_eq!(
        e.report("sampled").unwrap().skipped.get("not_sampled"),
        Some(&((n - planned) as u64))
    );
    // Deterministic: the same ids give the same decisions.
    let again = (0..n)
        .filter(|i| {
            e.plan("api", &parts, &format!("{:032x}", i * 7919), None)
                .is_some()
        })
        .count();
    assert_eq!(planned, again);
}

/// Calls across every upstream of the test binary: a per-call value.
static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// An upstream whose answers carry a per-call timestamp.
fn with_ts(price: u64) -> Handler {
    Arc::new(move |_, _, _| {
        let n = CALLS.fetch_add(1, Ordering::SeqCst);
        (
            200,
            format!(
                r#"{{"price":{price},"meta":{{"generated_at":"2026-11-23T11:{:02}:{:02}.{:03}Z"}}}}"#,
                n / 60000 % 60,
                n / 1000 % 60,
                n % 1000
            ),
            0,
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_learnt_from_repeats_hides_a_timestamp_and_catches_a_real_change() {
    let primary = upstream(with_ts(10)).await;
    let same = upstream(with_ts(10)).await;
    let changed = upstream(with_ts(11)).await;
    for (cand, name) in [(same, "same"), (changed, "changed")] {
        let c = client(&primary, &cand, None);
        let mut cfg = launch(name);
        cfg.concurrency = 1;
        let e = engine(vec![cfg], c.clone(), None).await;
        // Identical requests repeated: the primary disagrees with itself on
        // the timestamp, which is how it is learnt as noise.
        for i in 0..40 {
            proxy(
                &e,
                &c,
                Method::GET,
                &format!("/v1/price/{}", i % 4),
                &format!("{name}{i}"),
                &[],
            )
            .await;
            e.idle().await;
        }
        let r = e.report(name).unwrap();
        let ep = &r.assessment.endpoints[0];
        assert_eq!(ep.endpoint, "api GET /v1/price/{id}");
        assert_eq!(ep.compared, 40);
        assert!(
            r.noise_fields
                .iter()
                .any(|f| f.field == "$.meta.generated_at"),
            "{name}: {:?}",
            r.noise_fields
        );
        if name == "same" {
            assert_eq!(ep.matches, 40);
            assert!(r.top_fields.is_empty(), "{:?}", r.top_fields);
        } else {
            assert_eq!(ep.matches, 0);
            assert_eq!(r.top_fields[0].field, "$.price");
            assert_eq!(r.top_fields[0].count, 40);
            let ex = &r.examples[0];
            assert_eq!(ex.field, "$.price");
            assert!(ex.diffs.iter().any(|d| d.path == "$.price"
                && d.primary.as_deref() == Some("10")
                && d.candidate.as_deref() == Some("11")));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_marks_noise_per_request() {
    let primary = upstream(with_ts(10)).await;
    let secondary = upstream(with_ts(10)).await;
    let candidate = upstream(with_ts(12)).await;
    let c = client(&primary, &candidate, Some(&secondary));
    let mut cfg = launch("sec");
    cfg.secondary = Some("secondary".into());
    cfg.compare.learn_noise = false;
    let e = engine(vec![cfg], c.clone(), None).await;
    for i in 0..20 {
        // All distinct requests: only the secondary can reveal the noise.
        proxy(
            &e,
            &c,
            Method::GET,
            &format!("/v1/p/{i}"),
            &format!("s{i}"),
            &[],
        )
        .await;
    }
    e.idle().await;
    let r = e.report("sec").unwrap();
    let fields: Vec<_> = r.top_fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, vec!["$.price"]);
    assert_eq!(r.assessment.endpoints[0].matches, 0);
}

async fn run_traffic(cand: Handler, n: u64, min_samples: u64) -> gateway_mirror::Report {
    let primary = upstream(Arc::new(|p, _, _| (200, rates(p), 0))).await;
    let candidate = upstream(cand).await;
    let c = client(&primary, &candidate, None);
    let mut cfg = launch("gen");
    cfg.thresholds.min_samples = min_samples;
    let e = engine(vec![cfg], c.clone(), None).await;
    for i in 0..n {
        proxy(
            &e,
            &c,
            Method::GET,
            &format!("/v1/orders/{i}"),
            &format!("g{i}"),
            &[],
        )
        .await;
    }
    e.idle().await;
    e.report("gen").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_candidate_promotes_after_the_minimum_samples() {
    let r = run_traffic(Arc::new(|p, _, _| (200, rates(p), 0)), 300, 300).await;
    assert_eq!(
        r.assessment.verdict,
        Verdict::Promote,
        "{:?}",
        r.assessment.reasons
    );
    assert_eq!(r.assessment.score, 100);
    let r = run_traffic(Arc::new(|p, _, _| (200, rates(p), 0)), 100, 300).await;
    assert_eq!(r.assessment.verdict, Verdict::KeepObserving);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_mismatch_rolls_back() {
    let r = run_traffic(
        Arc::new(|p, _, _| {
            let body = rates(p);
            let id: u64 = p.trim_start_matches("/v1/orders/").parse().unwrap_or(0);
            if id % 20 == 0 {
                (200, body.replace("\"EUR\"", "\"USD\""), 0)
            } else {
                (200, body, 0)
            }
        }),
        400,
        300,
    )
    .await;
    assert_eq!(r.assessment.verdict, Verdict::RollBack);
    assert!(
        r.assessment.reasons[0].contains("match rate 95.00%"),
        "{:?}",
        r.assessment.reasons
    );
    assert_eq!(r.top_fields[0].field, "$.currency");
    assert_eq!(r.top_fields[0].count, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slower_candidate_is_flagged_by_the_latency_test() {
    let r = run_traffic(Arc::new(|p, _, _| (200, rates(p), 25)), 60, 60).await;
    assert_eq!(
        r.assessment.verdict,
        Verdict::RollBack,
        "{:?}",
        r.assessment.reasons
    );
    let l = r.assessment.endpoints[0].latency.clone().unwrap();
    assert!(l.regression, "{l:?}");
    assert!(r.assessment.reasons[0].contains("slower"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_candidate_changes_nothing_for_the_client() {
    let primary = upstream(Arc::new(|p, _, _| (200, rates(p), 0))).await;
    // Nothing listens on port 9: connection refused.
    let c = client(&primary, "http://127.0.0.1:9", None);
    let e = engine(vec![launch("down")], c.clone(), None).await;
    let (resp, _) = proxy(&e, &c, Method::GET, "/v1/orders/3", "d1", &[]).await;
    assert_eq!(body(&resp), rates("/v1/orders/3"));
    e.idle().await;
    let r = e.report("down").unwrap();
    assert_eq!(r.categories.get("candidate_error"), Some(&1));
    let ex = &r.examples[0];
    assert_eq!(ex.category, DiffCategory::CandidateError);
    assert!(ex
        .candidate
        .error
        .as_deref()
        .unwrap()
        .starts_with(ErrorKind::Connect.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_methods_are_not_mirrored_unless_enabled() {
    let seen = Arc::new(parking_lot::Mutex::new(Vec::<HeaderMap>::new()));
    let s = seen.clone();
    let primary = upstream(Arc::new(|_, _, _| (201, "{}".into(), 0))).await;
    let candidate = upstream(Arc::new(move |_, h, _| {
        s.lock().push(h.clone());
        (201, "{}".into(), 0)
    }))
    .await;
    let c = client(&primary, &candidate, None);
    let e = engine(vec![launch("safe")], c.clone(), None).await;
    let auth = [("authorization", "Bearer s3cret"), ("x-tenant", "t1")];
    let (_, planned) = proxy(&e, &c, Method::POST, "/v1/orders", "p1", &auth).await;
    assert!(!planned);
    assert_eq!(e.report("safe").unwrap().skipped.get("method"), Some(&1));

    let mut cfg = launch("writes");
    cfg.methods = vec!["GET".into(), "POST".into()];
    cfg.allow_unsafe = true;
    cfg.set_headers
        .insert("authorization".into(), "Bearer shadow".into());
    let e = engine(vec![cfg], c.clone(), None).await;
    let (_, planned) = proxy(&e, &c, Method::POST, "/v1/orders", "p2", &auth).await;
    assert!(planned);
    e.idle().await;
    let got = seen.lock();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["x-gatehouse-shadow"], "1");
    assert_eq!(got[0]["authorization"], "Bearer shadow");
    assert_eq!(got[0]["x-tenant"], "t1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_and_stopped_launches_do_not_mirror() {
    let c = client("http://127.0.0.1:9", "http://127.0.0.1:9", None);
    let mut cfg = launch("life");
    cfg.paused = true;
    let e = engine(vec![cfg], c, None).await;
    let (parts, ()) = http::Request::get("/v1/x").body(()).unwrap().into_parts();
    assert!(e.plan("api", &parts, "1", None).is_none());
    e.resume("life").await.unwrap();
    assert!(e.plan("api", &parts, "1", None).is_some());
    e.stop("life").await.unwrap();
    assert!(e.plan("api", &parts, "1", None).is_none());
    let err = e.resume("life").await.unwrap_err();
    assert_eq!(err.code(), "shadow_state_conflict");
    assert_eq!(e.list()[0].state, LaunchState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidate_timeout_is_its_own_category() {
    let primary = upstream(Arc::new(|p, _, _| (200, rates(p), 0))).await;
    let candidate = upstream(Arc::new(|p, _, _| (200, rates(p), 1000))).await;
    let c = client(&primary, &candidate, None);
    let mut cfg = launch("hang");
    cfg.timeout = Duration::from_millis(100);
    let e = engine(vec![cfg], c.clone(), None).await;
    let (resp, _) = proxy(&e, &c, Method::GET, "/v1/orders/1", "h1", &[]).await;
    assert_eq!(resp.status, Some(StatusCode::OK));
    e.idle().await;
    let r = e.report("hang").unwrap();
    assert_eq!(r.categories.get("candidate_timeout"), Some(&1));
    assert_eq!(r.assessment.endpoints[0].compared, 0);
    assert_eq!(r.examples[0].category, DiffCategory::CandidateTimeout);
}

#[tokio::test]
async fn oversized_bodies_are_skipped_not_queued() {
    let c = client("http://127.0.0.1:9", "http://127.0.0.1:9", None);
    let mut cfg = launch("big");
    cfg.max_body_bytes = 10;
    let e = engine(vec![cfg], c, None).await;
    let (parts, ()) = http::Request::get("/v1/x")
        .header("content-length", "11")
        .body(())
        .unwrap()
        .into_parts();
    assert!(e.plan("api", &parts, "1", None).is_none());
    // Without a length up front, submit sees the teed body and skips.
    let (parts, ()) = http::Request::get("/v1/x").body(()).unwrap().into_parts();
    let plan = e.plan("api", &parts, "2", None).unwrap();
    assert_eq!(plan.max_body_bytes(), 10);
    let err = plan
        .submit(Bytes::from_static(b"0123456789a"), Observation::default())
        .unwrap_err();
    assert_eq!(
        err,
        MirrorOutcome::Skipped(gateway_mirror::SkipReason::BodyTooLarge)
    );
    assert_eq!(
        e.report("big").unwrap().skipped.get("body_too_large"),
        Some(&2)
    );
}

#[tokio::test]
async fn sampling_by_consumer_keeps_each_consumer_in_or_out() {
    let c = client("http://127.0.0.1:9", "http://127.0.0.1:9", None);
    let mut cfg = launch("by-consumer");
    cfg.sample_percent = 50.0;
    cfg.sample_by = gateway_mirror::SampleBy::Consumer;
    let e = engine(vec![cfg], c, None).await;
    let (parts, ()) = http::Request::get("/v1/x").body(()).unwrap().into_parts();
    let mut ins = 0;
    for consumer in 0..200 {
        let who = format!("consumer-{consumer}");
        let first = e.plan("api", &parts, "r0", Some(&who)).is_some();
        for r in 1..10 {
            assert_eq!(
                e.plan("api", &parts, &format!("r{r}"), Some(&who))
                    .is_some(),
                first
            );
        }
        ins += first as usize;
    }
    // Binomial(200, 0.5): sd ≈ 7; allow 4 sd.
    assert!((72..=128).contains(&ins), "{ins}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_are_flushed_periodically() {
    use gateway_mirror::{EngineOptions, MirrorEngine, ShadowStore, SqlShadowStore};
    let primary = upstream(Arc::new(|p, _, _| (200, rates(p), 0))).await;
    let c = client(&primary, &primary, None);
    let store = Arc::new(SqlShadowStore::connect("sqlite::memory:").await.unwrap());
    let e = MirrorEngine::start(
        vec![launch("flushy")],
        Arc::new(c.clone()),
        Some(store.clone() as Arc<dyn ShadowStore>),
        EngineOptions {
            flush_interval: Duration::from_millis(20),
            ..EngineOptions::default()
        },
    )
    .await
    .unwrap();
    proxy(&e, &c, Method::GET, "/v1/orders/1", "f1", &[]).await;
    e.idle().await;
    // No explicit flush: the background flusher must write the sample.
    let mut attempts = 0;
    for _ in 0..250 {
        let loaded = store.load().await.unwrap();
        attempts = loaded[0]
            .stats
            .endpoints
            .values()
            .map(|x| x.attempts)
            .sum::<u64>();
        if attempts == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_primary_is_not_held_against_the_candidate() {
    let candidate = upstream(Arc::new(|p, _, _| (200, rates(p), 0))).await;
    // The primary refuses connections.
    let c = client("http://127.0.0.1:9", &candidate, None);
    let e = engine(vec![launch("pfail")], c.clone(), None).await;
    let (resp, planned) = proxy(&e, &c, Method::GET, "/v1/orders/1", "pf", &[]).await;
    assert!(planned && resp.error.is_some());
    e.idle().await;
    let r = e.report("pfail").unwrap();
    let ep = &r.assessment.endpoints[0];
    assert_eq!((ep.attempts, ep.compared), (1, 0));
    assert_eq!(ep.primary_error_rate, 1.0);
    assert_eq!(r.skipped.get("primary_failed"), Some(&1));
    assert!(r.top_fields.is_empty());
}
