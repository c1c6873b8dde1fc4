//! DNS discovery (`dns_refresh`) over real sockets: a test resolver's
//! answer changes while a cluster serves, and traffic follows it without a
//! reload. For host names, the origins listen on different loopback
//! addresses (127.0.0.1-4) with one port, as the replicas behind one name
//! would; for SRV names, on 127.0.0.1 with the ports the records give.
//! Runs in its own test binary because it installs a global `metrics`
//! recorder.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use gateway_core::body::empty;
use gateway_upstream::metrics::DNS_FAILURES_TOTAL;
use gateway_upstream::resolve::{
    Resolve, ResolveFuture, Resolved, ResolverHandle, SrvAnswer, SrvFuture, SrvRecord,
};
use gateway_upstream::{Cluster, ClusterConfig, SendOptions, UpstreamErrorKind, Upstreams};
use http::Request;
use http_body_util::{BodyExt, Empty};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use test_support::{Handler, Origin, Reply};
use tokio::sync::Notify;

// === helpers ===

/// Answers whatever the test last set, with no TTL.
#[derive(Debug)]
struct Answers(Mutex<Result<Vec<IpAddr>, String>>);

impl Answers {
    fn new(answer: Result<Vec<IpAddr>, String>) -> Arc<Self> {
        Arc::new(Self(Mutex::new(answer)))
    }

    fn set(&self, answer: Result<Vec<IpAddr>, String>) {
        *self.0.lock().unwrap() = answer;
    }
}

#[derive(Debug, Clone)]
struct TestResolver(Arc<Answers>);

impl Resolve for TestResolver {
    fn resolve<'a>(&'a self, _host: &'a str) -> ResolveFuture<'a> {
        let answer = self.0 .0.lock().unwrap().clone();
        Box::pin(async move { answer.map(|addrs| Resolved { addrs, ttl: None }) })
    }
}

/// SRV answers the test sets; every host they name is local, except
/// those under `down.test`, which do not resolve.
#[derive(Debug)]
struct SrvAnswers(Mutex<Result<Vec<SrvRecord>, String>>);

impl SrvAnswers {
    fn new(answer: Result<Vec<SrvRecord>, String>) -> Arc<Self> {
        Arc::new(Self(Mutex::new(answer)))
    }

    fn set(&self, answer: Result<Vec<SrvRecord>, String>) {
        *self.0.lock().unwrap() = answer;
    }
}

#[derive(Debug, Clone)]
struct SrvResolver(Arc<SrvAnswers>);

impl Resolve for SrvResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a> {
        Box::pin(async move {
            if host.ends_with(".down.test") {
                return Err(format!("`{host}`: NXDOMAIN"));
            }
            Ok(Resolved {
                addrs: vec![IpAddr::from([127, 0, 0, 1])],
                ttl: None,
            })
        })
    }

    fn resolve_srv<'a>(&'a self, _name: &'a str) -> SrvFuture<'a> {
        let answer = self.0 .0.lock().unwrap().clone();
        Box::pin(async move { answer.map(|records| SrvAnswer { records, ttl: None }) })
    }
}

/// An SRV record for an origin: its port, a host name of its own.
fn record(origin: &Origin, priority: u16, weight: u16) -> SrvRecord {
    let port = origin.addr().port();
    SrvRecord {
        priority,
        weight,
        port,
        target: format!("fx-{port}.fx.test"),
    }
}

/// Counts counters by `name{labels}` in the process-wide recorder.
#[derive(Clone, Default)]
struct Counters(Arc<Mutex<HashMap<String, u64>>>);

struct Cell(Counters, String);

impl metrics::CounterFn for Cell {
    fn increment(&self, v: u64) {
        *self.0 .0.lock().unwrap().entry(self.1.clone()).or_default() += v;
    }
    fn absolute(&self, v: u64) {
        self.0 .0.lock().unwrap().insert(self.1.clone(), v);
    }
}

impl Recorder for Counters {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        Counter::from_arc(Arc::new(Cell(self.clone(), name)))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn counters() -> &'static Counters {
    static C: OnceLock<Counters> = OnceLock::new();
    C.get_or_init(|| {
        let c = Counters::default();
        metrics::set_global_recorder(c.clone()).unwrap();
        c
    })
}

fn dns_failures(cluster: &str) -> u64 {
    let key = format!("{DNS_FAILURES_TOTAL}{{cluster={cluster}}}");
    counters().0.lock().unwrap().get(&key).copied().unwrap_or(0)
}

/// Four origins on 127.0.0.1-4, all on one port.
async fn replicas(handler: Handler) -> Vec<Origin> {
    'port: for _ in 0..20 {
        let first = Origin::start(handler.clone()).await;
        let port = first.addr().port();
        let mut all = vec![first];
        for last in 2..=4u8 {
            let addr = SocketAddr::from(([127, 0, 0, last], port));
            match Origin::builder(handler.clone())
                .addr(addr)
                .try_start()
                .await
            {
                Ok(o) => all.push(o),
                Err(_) => continue 'port,
            }
        }
        return all;
    }
    panic!("no port free on 127.0.0.1-4");
}

fn ips(origins: &[&Origin]) -> Vec<IpAddr> {
    origins.iter().map(|o| o.addr().ip()).collect()
}

fn cluster(name: &str, port: u16, answers: &Arc<Answers>) -> (Upstreams, Arc<Cluster>) {
    let mut cfg = ClusterConfig::with_targets([format!("replicas.test:{port}")]);
    cfg.dns_refresh = Some(Duration::from_secs(1));
    cfg.resolver = ResolverHandle::new(TestResolver(answers.clone()));
    cfg.retry.attempts = 1;
    let u = Upstreams::new(BTreeMap::from([(name.to_string(), cfg)])).unwrap();
    let c = u.get(name).unwrap();
    (u, c)
}

fn srv_cluster(
    name: &str,
    target: &str,
    answers: &Arc<SrvAnswers>,
    adjust: impl FnOnce(&mut ClusterConfig),
) -> (Upstreams, Arc<Cluster>) {
    let mut cfg = ClusterConfig::with_targets([target]);
    cfg.dns_refresh = Some(Duration::from_secs(1));
    cfg.resolver = ResolverHandle::new(SrvResolver(answers.clone()));
    cfg.retry.attempts = 1;
    adjust(&mut cfg);
    let u = Upstreams::new(BTreeMap::from([(name.to_string(), cfg)])).unwrap();
    let c = u.get(name).unwrap();
    (u, c)
}

fn target_set(c: &Cluster) -> Vec<String> {
    let mut t: Vec<String> = c.targets_status().into_iter().map(|t| t.address).collect();
    t.sort();
    t
}

fn urls(origins: &[&Origin]) -> Vec<String> {
    let mut u: Vec<String> = origins.iter().map(|o| o.url()).collect();
    u.sort();
    u
}

/// Polls `cond` until it holds; the deadline is generous (refreshes run
/// every second) and only bounds a broken build.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..600 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn get_ok(c: &Cluster, path: &str) {
    let req = Request::get(path).body(empty()).unwrap();
    let res = c.send(req, SendOptions::default()).await.unwrap();
    assert_eq!(res.status(), 200);
    res.into_body().collect().await.unwrap();
}

/// A handler that answers 200 at once, and holds `/hold` until `release`.
fn holding(release: &Arc<Notify>) -> Handler {
    let held = release.clone();
    Handler::status(200).on_path(
        "/hold",
        Handler::new(move |_| {
            let held = held.clone();
            async move {
                held.notified().await;
                let body = Empty::<Bytes>::new().map_err(|e| match e {}).boxed();
                Reply::Response(http::Response::new(body))
            }
        }),
    )
}

// === tests ===

#[tokio::test]
async fn traffic_follows_the_dns_answer_without_a_reload_and_in_flight_requests_finish() {
    counters();
    let release = Arc::new(Notify::new());
    let o = replicas(holding(&release)).await;
    let (old, new) = ([&o[0], &o[1]], [&o[2], &o[3]]);
    let answers = Answers::new(Ok(ips(&old)));
    let (_u, c) = cluster("moving", o[0].addr().port(), &answers);

    eventually("the first answer's targets", || {
        target_set(&c) == urls(&old)
    })
    .await;
    for _ in 0..20 {
        get_ok(&c, "/").await;
    }
    assert!(
        old.iter().all(|o| o.requests() > 0),
        "both old targets served"
    );

    let in_flight = tokio::spawn({
        let c = c.clone();
        async move { get_ok(&c, "/hold").await }
    });
    eventually("the held request reaches an old target", || {
        old.iter().map(|o| o.requests_to("/hold")).sum::<usize>() == 1
    })
    .await;

    answers.set(Ok(ips(&new)));
    eventually("the second answer's targets", || {
        target_set(&c) == urls(&new)
    })
    .await;
    let before: Vec<usize> = old.iter().map(|o| o.requests()).collect();
    for _ in 0..20 {
        get_ok(&c, "/").await;
    }
    let after: Vec<usize> = old.iter().map(|o| o.requests()).collect();
    assert_eq!(before, after, "no new request reached a target that left");
    assert!(
        new.iter().all(|o| o.requests() > 0),
        "both new targets served"
    );

    assert!(!in_flight.is_finished(), "the held request is still open");
    release.notify_one();
    in_flight
        .await
        .expect("the request on the leaving target completed");
}

#[tokio::test]
async fn a_reload_that_changes_other_settings_keeps_the_discovered_targets() {
    counters();
    let o = replicas(Handler::status(200)).await;
    let found = [&o[0], &o[1]];
    let answers = Answers::new(Ok(ips(&found)));
    let (u, c) = cluster("reloaded", o[0].addr().port(), &answers);
    eventually("the answer's targets", || target_set(&c) == urls(&found)).await;

    let mut cfg = c.config().clone();
    cfg.retry.attempts = 2;
    u.reconfigure(BTreeMap::from([("reloaded".to_string(), cfg)]))
        .unwrap();
    let rebuilt = u.get("reloaded").unwrap();
    assert!(!Arc::ptr_eq(&c, &rebuilt), "the cluster was rebuilt");
    assert_eq!(target_set(&rebuilt), urls(&found));
    get_ok(&rebuilt, "/").await;
}

#[tokio::test]
async fn a_failed_or_empty_answer_keeps_the_last_good_targets_and_is_counted() {
    counters();
    let o = replicas(Handler::status(200)).await;
    let good = [&o[0], &o[1]];
    let answers = Answers::new(Ok(ips(&good)));
    let (_u, c) = cluster("failing", o[0].addr().port(), &answers);
    eventually("the good answer's targets", || {
        target_set(&c) == urls(&good)
    })
    .await;

    let failures = dns_failures("failing");
    answers.set(Err("SERVFAIL".into()));
    eventually("a failed refresh is counted", || {
        dns_failures("failing") > failures
    })
    .await;
    assert_eq!(target_set(&c), urls(&good));
    get_ok(&c, "/").await;

    let failures = dns_failures("failing");
    answers.set(Ok(Vec::new()));
    eventually("an empty answer is counted", || {
        dns_failures("failing") > failures
    })
    .await;
    assert_eq!(target_set(&c), urls(&good));
    for _ in 0..10 {
        get_ok(&c, "/").await;
    }
    assert_eq!(o[2].requests() + o[3].requests(), 0);
}

#[tokio::test]
async fn srv_answers_move_traffic_without_a_reload_with_their_weights_and_priorities() {
    counters();
    let release = Arc::new(Notify::new());
    let mut o = Vec::new();
    for _ in 0..4 {
        o.push(Origin::start(holding(&release)).await);
    }
    let (heavy, light, newcomer, backup) = (&o[0], &o[1], &o[2], &o[3]);
    let answers = SrvAnswers::new(Ok(vec![
        record(heavy, 10, 30),
        record(light, 10, 10),
        record(backup, 20, 10),
    ]));
    let (_u, c) = srv_cluster(
        "srv-moving",
        "srv+http://_http._tcp.fx.test",
        &answers,
        |_| {},
    );

    eventually("the lowest priority's targets", || {
        target_set(&c) == urls(&[heavy, light])
    })
    .await;
    for _ in 0..40 {
        get_ok(&c, "/").await;
    }
    let (h, l) = (heavy.requests(), light.requests());
    assert_eq!(h + l, 40);
    assert!(
        (25..=35).contains(&h),
        "weight 30 against 10 takes about three quarters: {h} of 40"
    );
    assert_eq!(backup.requests(), 0, "the backup priority stays idle");

    let in_flight = tokio::spawn({
        let c = c.clone();
        async move {
            // Round robin may pick either; hold on whichever it is.
            get_ok(&c, "/hold").await;
        }
    });
    eventually("the held request reaches a target", || {
        heavy.requests_to("/hold") + light.requests_to("/hold") == 1
    })
    .await;
    let holder = if light.requests_to("/hold") == 1 {
        light
    } else {
        heavy
    };
    let stays = if std::ptr::eq(holder, light) {
        heavy
    } else {
        light
    };

    answers.set(Ok(vec![record(stays, 10, 10), record(newcomer, 10, 10)]));
    eventually("the leaving target replaced by the newcomer", || {
        target_set(&c) == urls(&[stays, newcomer])
    })
    .await;
    let before = holder.requests();
    for _ in 0..20 {
        get_ok(&c, "/").await;
    }
    assert_eq!(
        holder.requests(),
        before,
        "no new request reached the target that left"
    );
    assert!(
        newcomer.requests() > 0,
        "the new target serves without a reload"
    );
    assert!(!in_flight.is_finished(), "the held request is still open");
    release.notify_one();
    in_flight
        .await
        .expect("the request on the leaving target completed");

    let failures = dns_failures("srv-moving");
    answers.set(Err("SERVFAIL".into()));
    eventually("a failed SRV lookup is counted", || {
        dns_failures("srv-moving") > failures
    })
    .await;
    let failures = dns_failures("srv-moving");
    answers.set(Ok(Vec::new()));
    eventually("an empty SRV answer is counted", || {
        dns_failures("srv-moving") > failures
    })
    .await;
    assert_eq!(
        target_set(&c),
        urls(&[stays, newcomer]),
        "the last good set stays"
    );
    get_ok(&c, "/").await;

    let mut gone = record(heavy, 10, 10);
    gone.target = "fx.down.test".into();
    answers.set(Ok(vec![gone, record(backup, 20, 10)]));
    eventually("the backup priority when no lower host resolves", || {
        target_set(&c) == urls(&[backup])
    })
    .await;
    get_ok(&c, "/").await;
    assert!(backup.requests() > 0);
}

#[tokio::test]
async fn an_https_srv_instance_is_verified_under_the_host_its_record_names() {
    counters();
    let origin = Origin::builder(Handler::status(200)).tls().start().await;
    let certs = origin.certs().unwrap().clone();
    let port = origin.addr().port();
    // Every host resolves to 127.0.0.1; the certificate is for `localhost`
    // (and 127.0.0.1), so only the name TLS presents can make it fail.
    let named = |host: &str| SrvRecord {
        priority: 0,
        weight: 1,
        port,
        target: host.into(),
    };
    let answers = SrvAnswers::new(Ok(vec![named("localhost")]));
    let (_u, c) = srv_cluster(
        "srv-tls",
        "srv+https://_https._tcp.fx.test",
        &answers,
        |cfg| cfg.tls.ca_file = Some(certs.ca_file()),
    );
    let address = format!("https://127.0.0.1:{port}");
    eventually("the instance", || target_set(&c) == [address.clone()]).await;
    get_ok(&c, "/").await;

    answers.set(Ok(vec![named("elsewhere.fx.test")]));
    let mut refused = None;
    for _ in 0..600 {
        let req = Request::get("/").body(empty()).unwrap();
        if let Err(e) = c.send(req, SendOptions::default()).await {
            refused = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = refused.expect("the same address under another name is refused");
    assert_eq!(err.kind(), UpstreamErrorKind::Tls, "{err}");
    assert_eq!(target_set(&c), [address]);
}

#[tokio::test]
async fn a_reload_keeps_the_instances_an_srv_name_found() {
    counters();
    let origin = Origin::start(Handler::status(200)).await;
    let answers = SrvAnswers::new(Ok(vec![record(&origin, 0, 1)]));
    let (u, c) = srv_cluster(
        "srv-reloaded",
        "srv+http://_http._tcp.fx.test",
        &answers,
        |_| {},
    );
    eventually("the instance", || target_set(&c) == urls(&[&origin])).await;

    let mut cfg = c.config().clone();
    cfg.retry.attempts = 2;
    u.reconfigure(BTreeMap::from([("srv-reloaded".to_string(), cfg)]))
        .unwrap();
    let rebuilt = u.get("srv-reloaded").unwrap();
    assert!(!Arc::ptr_eq(&c, &rebuilt), "the cluster was rebuilt");
    assert_eq!(
        target_set(&rebuilt),
        urls(&[&origin]),
        "serving at once, not waiting for a lookup"
    );
    get_ok(&rebuilt, "/").await;
}

#[tokio::test]
async fn an_srv_cluster_with_no_instance_yet_asks_again_soon() {
    counters();
    let origin = Origin::start(Handler::status(200)).await;
    let answers = SrvAnswers::new(Err("SERVFAIL".into()));
    let (_u, c) = srv_cluster(
        "srv-late",
        "srv+http://_http._tcp.fx.test",
        &answers,
        |cfg| cfg.dns_refresh = Some(Duration::from_secs(3600)),
    );
    eventually("the first lookup failed", || dns_failures("srv-late") > 0).await;
    let req = Request::get("/").body(empty()).unwrap();
    let err = c.send(req, SendOptions::default()).await.unwrap_err();
    assert_eq!(err.kind(), UpstreamErrorKind::NoHealthyTargets, "{err}");
    assert!(err.to_string().contains("has no target yet"), "{err}");

    // Well within the hour that dns_refresh allows between good answers.
    answers.set(Ok(vec![record(&origin, 0, 1)]));
    eventually("the instance once the name answers", || {
        target_set(&c) == urls(&[&origin])
    })
    .await;
    get_ok(&c, "/").await;
}
