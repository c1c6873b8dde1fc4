//! A fleet of fx services: two instances in-process on one PostgreSQL
//! schema and one Redis prefix (both fresh per test), providers served by a
//! local origin. Needs `GATEHOUSE_TEST_POSTGRES_URL` and
//! `GATEHOUSE_TEST_REDIS_URL` (CI sets both); skipped with a message
//! otherwise.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fx::Format;
use fx_service::{FxService, FxServiceConfig, ProviderConfig, RunningFx};
use test_support::origin::{Handler, Origin};
use test_support::tcp_proxy::TcpProxy;

const DAILY_XML: &str = include_str!("data/eurofxref-daily.xml");
/// The recorded daily file is Friday 2026-10-30.
const FRIDAY: &str = "2026-10-30";
const MONDAY: &str = "2026-11-02";

/// The recorded daily file moved to Monday 2026-11-02: a newer fixing.
fn monday_xml() -> String {
    DAILY_XML.replace(FRIDAY, MONDAY)
}

struct Stores {
    postgres: String,
    redis: String,
}

fn stores(test: &str) -> Option<Stores> {
    match (
        std::env::var("GATEHOUSE_TEST_POSTGRES_URL"),
        std::env::var("GATEHOUSE_TEST_REDIS_URL"),
    ) {
        (Ok(postgres), Ok(redis)) => Some(Stores { postgres, redis }),
        _ => {
            eprintln!(
                "skipping {test}: GATEHOUSE_TEST_POSTGRES_URL and GATEHOUSE_TEST_REDIS_URL must both be set"
            );
            None
        }
    }
}

/// A fresh schema and Redis prefix for one test; the schema is dropped at
/// the end (Redis keys expire on their own).
struct Fleet {
    stores: Stores,
    schema: String,
    prefix: String,
}

impl Fleet {
    async fn new(stores: Stores) -> Fleet {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let schema = format!("gh_fxfleet_{id}");
        let pool = sqlx::PgPool::connect(&stores.postgres)
            .await
            .expect("connect to GATEHOUSE_TEST_POSTGRES_URL");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        Fleet {
            stores,
            schema,
            prefix: format!("gh-test-fxfleet-{id}:"),
        }
    }

    fn config(&self, redis_url: &str, providers: Vec<ProviderConfig>) -> FxServiceConfig {
        FxServiceConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: self.stores.postgres.clone(),
            database_schema: Some(self.schema.clone()),
            import_bundled: false,
            redis_url: Some(redis_url.to_string()),
            redis_prefix: self.prefix.clone(),
            providers,
            ..FxServiceConfig::default()
        }
    }

    async fn start(&self, providers: Vec<ProviderConfig>) -> RunningFx {
        self.start_via(&self.stores.redis, providers).await
    }

    async fn start_via(&self, redis_url: &str, providers: Vec<ProviderConfig>) -> RunningFx {
        FxService::start(self.config(redis_url, providers))
            .await
            .expect("fx service starts")
    }

    async fn drop_schema(self) {
        if let Ok(pool) = sqlx::PgPool::connect(&self.stores.postgres).await {
            let _ = sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema))
                .execute(&pool)
                .await;
            pool.close().await;
        }
    }
}

fn ecb(origin: &Origin, interval: Duration) -> ProviderConfig {
    let mut p = ProviderConfig::new(
        "ecb",
        Format::EcbXml,
        &format!("{}/daily.xml", origin.url()),
    );
    p.interval = interval;
    p.timeout = Duration::from_secs(2);
    p.retries = 0;
    p
}

async fn origin() -> Origin {
    Origin::start(Handler::fixed(
        200,
        &[("content-type", "text/xml")],
        DAILY_XML,
    ))
    .await
}

/// The fixing date `/v1/rates/latest` serves, or `None` (no rates yet).
async fn latest(client: &reqwest::Client, fx: &RunningFx) -> Option<String> {
    let res = client
        .get(format!("http://{}/v1/rates/latest", fx.local_addr()))
        .send()
        .await
        .ok()?;
    if !res.status().is_success() {
        return None;
    }
    let body: serde_json::Value = res.json().await.ok()?;
    body["date"].as_str().map(str::to_string)
}

/// Polls `fx` every 5 ms until it serves `date`; the time it took.
async fn until_serving(
    client: &reqwest::Client,
    fx: &RunningFx,
    date: &str,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        if latest(client, fx).await.as_deref() == Some(date) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{} still serves {:?}, not {date}, after {within:?}",
            fx.local_addr(),
            latest(client, fx).await
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `redis://host:port/...` → the socket address behind it.
async fn redis_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:6379")
    };
    tokio::net::lookup_host(host)
        .await
        .expect("resolve the Redis host")
        .next()
        .expect("an address for the Redis host")
}

/// `url` with its host and port replaced by `addr` (credentials and db kept).
fn redis_url_via(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let creds = authority.rfind('@').map(|i| &authority[..=i]).unwrap_or("");
    format!("{scheme}://{creds}{addr}{path}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_rates_reach_the_other_instance_within_a_second() {
    let Some(stores) = stores("new_rates_reach_the_other_instance_within_a_second") else {
        return;
    };
    let fleet = Fleet::new(stores).await;
    let origin = origin().await;
    let client = reqwest::Client::new();
    // B fetches nothing itself; it starts with an empty database.
    let b = fleet.start(vec![]).await;
    assert_eq!(latest(&client, &b).await, None);

    // A scheduled fetch on A (at A's start).
    let a = fleet
        .start(vec![ecb(&origin, Duration::from_secs(3600))])
        .await;
    let mut on_a = None;
    let started = Instant::now();
    let gap = loop {
        let (da, db) = tokio::join!(latest(&client, &a), latest(&client, &b));
        if on_a.is_none() && da.as_deref() == Some(FRIDAY) {
            on_a = Some(Instant::now());
        }
        if db.as_deref() == Some(FRIDAY) {
            break on_a.map(|t| t.elapsed()).unwrap_or_default();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "B never served the fetched fixing"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!(
        "scheduled fetch on A: served by B {} ms after A",
        gap.as_millis()
    );
    assert!(gap < Duration::from_secs(1), "took {gap:?}");
    assert_eq!(origin.requests(), 1);

    // An import on A (`gatehouse fx import` takes the same path).
    let started = Instant::now();
    let report = a
        .ingest_bytes("ecb", Some(Format::EcbXml), monday_xml().as_bytes())
        .await
        .unwrap();
    assert_eq!(report.inserted, 29);
    until_serving(&client, &b, MONDAY, Duration::from_secs(2)).await;
    let took = started.elapsed();
    eprintln!(
        "import on A: served by B {} ms after the import call started",
        took.as_millis()
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(latest(&client, &a).await.as_deref(), Some(MONDAY));

    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    fleet.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_is_fetched_once_per_interval_by_the_whole_fleet() {
    let Some(stores) = stores("a_provider_is_fetched_once_per_interval_by_the_whole_fleet") else {
        return;
    };
    let fleet = Fleet::new(stores).await;
    let origin = origin().await;
    let client = reqwest::Client::new();
    let interval = Duration::from_secs(1);
    let a = fleet.start(vec![ecb(&origin, interval)]).await;
    let b = fleet.start(vec![ecb(&origin, interval)]).await;
    let watch = Instant::now();
    let before = origin.requests();
    tokio::time::sleep(interval * 4).await;
    let fetches = origin.requests() - before;
    let intervals = watch.elapsed().as_secs_f64() / interval.as_secs_f64();
    eprintln!(
        "two instances, interval {interval:?}: {fetches} fetches in {intervals:.1} intervals ({} in all)",
        origin.requests()
    );
    // One instance alone makes one fetch per interval; two without a lease
    // would make twice that. Slack of one for the tick boundaries.
    assert!(
        (fetches as f64) <= intervals + 1.0,
        "{fetches} fetches in {intervals:.1} intervals"
    );
    assert!(
        fetches >= 3,
        "only {fetches} fetches in {intervals:.1} intervals"
    );
    assert_eq!(latest(&client, &a).await.as_deref(), Some(FRIDAY));
    assert_eq!(latest(&client, &b).await.as_deref(), Some(FRIDAY));
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    fleet.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_missed_an_announcement_catches_up_on_resync() {
    let Some(stores) = stores("an_instance_that_missed_an_announcement_catches_up_on_resync")
    else {
        return;
    };
    let fleet = Fleet::new(stores).await;
    let client = reqwest::Client::new();
    // B reaches Redis through a proxy the test can cut.
    let proxy = TcpProxy::start(redis_addr(&fleet.stores.redis).await).await;
    let b = fleet
        .start_via(&redis_url_via(&fleet.stores.redis, proxy.addr()), vec![])
        .await;
    let a = fleet.start(vec![]).await;

    // Connected: B follows A.
    a.ingest_bytes("ecb", Some(Format::EcbXml), DAILY_XML.as_bytes())
        .await
        .unwrap();
    until_serving(&client, &b, FRIDAY, Duration::from_secs(1)).await;

    // Cut off from Redis, B misses the announcement of Monday's fixing.
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.ingest_bytes("ecb", Some(Format::EcbXml), monday_xml().as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        latest(&client, &b).await.as_deref(),
        Some(FRIDAY),
        "B cannot have heard of Monday"
    );

    // Back: the bus re-subscribes, yields a Resync, and B reloads.
    proxy.restore();
    let took = until_serving(&client, &b, MONDAY, Duration::from_secs(5)).await;
    eprintln!(
        "resync: B serves the missed fixing {} ms after Redis is back",
        took.as_millis()
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    fleet.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_full_history_a_peer_rereads_only_the_announced_fixings() {
    let Some(stores) = stores("with_the_full_history_a_peer_rereads_only_the_announced_fixings")
    else {
        return;
    };
    let fleet = Fleet::new(stores).await;
    let client = reqwest::Client::new();
    let mut cfg = fleet.config(&fleet.stores.redis, vec![]);
    cfg.import_bundled = true;
    // A imports the bundled ECB history into the empty schema; B, started
    // after it, loads that history from the database.
    let started = Instant::now();
    let a = FxService::start(cfg.clone()).await.expect("A starts");
    let b = FxService::start(cfg).await.expect("B starts");
    let history = b.engine().table().days().len();
    eprintln!(
        "full history: two instances up in {} ms, {history} fixing days",
        started.elapsed().as_millis()
    );
    assert!(history > 6_000, "{history} days");
    assert_eq!(latest(&client, &b).await.as_deref(), Some(FRIDAY));

    // A new fixing imported on A.
    let started = Instant::now();
    let report = a
        .ingest_bytes("ecb", Some(Format::EcbXml), monday_xml().as_bytes())
        .await
        .unwrap();
    assert_eq!(report.inserted, 29);
    until_serving(&client, &b, MONDAY, Duration::from_secs(5)).await;
    let took = started.elapsed();
    eprintln!(
        "full history: import on A served by B {} ms after the import call started",
        took.as_millis()
    );
    // The report is recorded just after the table is swapped in.
    let waited = Instant::now();
    let reload = loop {
        match b.engine().last_reload() {
            Some(r) if r.version == b.engine().table().version => break r,
            _ if waited.elapsed() > Duration::from_secs(1) => {
                panic!("B serves {MONDAY} but recorded no reload for it")
            }
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    };
    eprintln!("full history: B's reload {reload:?}");
    // B re-read the announced fixing only, not the ~220k rows of history.
    assert_eq!(reload.rows, report.inserted, "{reload:?}");
    assert_eq!(reload.days_changed, 1, "{reload:?}");
    assert_eq!(b.engine().table().days().len(), history + 1);

    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    fleet.drop_schema().await;
}
