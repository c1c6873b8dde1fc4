//! The documented metrics are emitted with the documented labels. Runs in
//! its own test binary because it installs a global `metrics` recorder.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway_core::body::empty;
use gateway_upstream::metrics as m;
use gateway_upstream::{ClusterConfig, SendOptions, Upstreams};
use http::Request;
use http_body_util::BodyExt;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use test_support::{Handler, Origin};

type Store = Arc<Mutex<HashMap<String, f64>>>;

/// Records every metric as `name{k=v,...}` (labels sorted) → value; for
/// histograms the value is the number of observations.
#[derive(Clone, Default)]
struct Capture(Store);

struct Cell {
    store: Store,
    key: String,
}

impl metrics::CounterFn for Cell {
    fn increment(&self, v: u64) {
        *self
            .store
            .lock()
            .unwrap()
            .entry(self.key.clone())
            .or_default() += v as f64;
    }
    fn absolute(&self, v: u64) {
        self.store
            .lock()
            .unwrap()
            .insert(self.key.clone(), v as f64);
    }
}

impl metrics::GaugeFn for Cell {
    fn increment(&self, v: f64) {
        *self
            .store
            .lock()
            .unwrap()
            .entry(self.key.clone())
            .or_default() += v;
    }
    fn decrement(&self, v: f64) {
        *self
            .store
            .lock()
            .unwrap()
            .entry(self.key.clone())
            .or_default() -= v;
    }
    fn set(&self, v: f64) {
        self.store.lock().unwrap().insert(self.key.clone(), v);
    }
}

impl metrics::HistogramFn for Cell {
    fn record(&self, _v: f64) {
        *self
            .store
            .lock()
            .unwrap()
            .entry(self.key.clone())
            .or_default() += 1.0;
    }
}

impl Capture {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        Arc::new(Cell {
            store: self.0.clone(),
            key: format!("{}{{{}}}", key.name(), labels.join(",")),
        })
    }

    fn get(&self, key: &str) -> Option<f64> {
        self.0.lock().unwrap().get(key).copied()
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.cell(key))
    }
}

#[tokio::test]
async fn attempts_retries_ejections_health_and_in_flight_are_measured() {
    let capture = Capture::default();
    metrics::set_global_recorder(capture.clone()).unwrap();

    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().to_string()
    };
    let good = Origin::start(Handler::status(200)).await;
    let mut cfg = ClusterConfig::with_targets([dead.clone(), good.authority()]);
    cfg.retry.attempts = 2;
    cfg.retry.backoff_base = Duration::from_millis(1);
    cfg.retry.backoff_max = Duration::from_millis(1);
    cfg.passive.consecutive_failures = 1;
    let u = Upstreams::new(BTreeMap::from([("m".to_string(), cfg)])).unwrap();
    let c = u.get("m").unwrap();

    for _ in 0..2 {
        let req = Request::get("/").body(empty()).unwrap();
        let res = c
            .send(
                req,
                SendOptions::default().with_timeout(Duration::from_secs(5)),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.into_body().collect().await.unwrap();
    }

    let dead_t = format!("http://{dead}");
    let good_t = format!("http://{}", good.authority());
    let counter = |name: &str, labels: &str| capture.get(&format!("{name}{{{labels}}}"));
    assert_eq!(
        counter(
            m::REQUESTS_TOTAL,
            &format!("cluster=m,outcome=upstream_connect_failed,target={dead_t}")
        ),
        Some(1.0)
    );
    assert_eq!(
        counter(
            m::REQUESTS_TOTAL,
            &format!("cluster=m,outcome=success,target={good_t}")
        ),
        Some(2.0)
    );
    assert_eq!(counter(m::RETRIES_TOTAL, "cluster=m"), Some(1.0));
    assert_eq!(
        counter(m::EJECTIONS_TOTAL, &format!("cluster=m,target={dead_t}")),
        Some(1.0)
    );
    assert_eq!(
        counter(m::TARGET_HEALTHY, &format!("cluster=m,target={dead_t}")),
        Some(0.0)
    );
    assert_eq!(
        counter(m::TARGET_HEALTHY, &format!("cluster=m,target={good_t}")),
        Some(1.0)
    );
    assert_eq!(
        counter(m::IN_FLIGHT, &format!("cluster=m,target={good_t}")),
        Some(0.0)
    );
    assert_eq!(counter(m::CIRCUIT_STATE, "cluster=m"), Some(0.0));
    assert_eq!(
        counter(
            m::CONNECTIONS_OPENED_TOTAL,
            &format!("cluster=m,target={good_t}")
        ),
        Some(1.0),
        "keep-alive: both requests used one connection"
    );
    assert_eq!(
        counter(m::CONNECTIONS_OPEN, &format!("cluster=m,target={good_t}")),
        Some(1.0)
    );
    assert_eq!(counter(m::REQUEST_DURATION_SECONDS, "cluster=m"), Some(2.0));
}
