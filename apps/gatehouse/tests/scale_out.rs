//! Scale-out, end to end: three real `gatehouse serve` processes on loopback
//! sharing one PostgreSQL database and one Redis.
//!
//! Each fleet gets a fresh database and its own Redis key prefix, and
//! reaches both through a [`TcpProxy`], so a test can take a store away from
//! the nodes (`cut`) and give it back (`restore`) without touching the
//! machine's shared servers.
//!
//! Needs `GATEHOUSE_TEST_POSTGRES_URL` and `GATEHOUSE_TEST_REDIS_URL` (CI
//! sets both); without them every test prints why it skips and passes.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use sqlx::Connection as _;
use test_support::origin::{Handler, Origin, Reply};
use test_support::tcp_proxy::TcpProxy;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");
const TOKEN: &str = "scale-out-token";

struct Env {
    postgres: url::Url,
    redis: SocketAddr,
}

fn env(test: &str) -> Option<Env> {
    let (Ok(pg), Ok(redis)) = (
        std::env::var("GATEHOUSE_TEST_POSTGRES_URL"),
        std::env::var("GATEHOUSE_TEST_REDIS_URL"),
    ) else {
        eprintln!(
            "skipping {test}: GATEHOUSE_TEST_POSTGRES_URL and GATEHOUSE_TEST_REDIS_URL must both be set"
        );
        return None;
    };
    let postgres = url::Url::parse(&pg).expect("GATEHOUSE_TEST_POSTGRES_URL is a URL");
    let redis = url::Url::parse(&redis).expect("GATEHOUSE_TEST_REDIS_URL is a URL");
    let redis = (
        redis.host_str().unwrap_or("127.0.0.1"),
        redis.port().unwrap_or(6379),
    )
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap();
    Some(Env { postgres, redis })
}

fn socket_of(url: &url::Url, default_port: u16) -> SocketAddr {
    (
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(default_port),
    )
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap()
}

/// One PostgreSQL database and one Redis prefix, reached through proxies.
struct Stores {
    admin_url: url::Url,
    database: String,
    node_database_url: String,
    redis_url: String,
    prefix: String,
    postgres: TcpProxy,
    redis: TcpProxy,
}

impl Stores {
    async fn create(env: &Env) -> Stores {
        let suffix: u64 = rand::random();
        let database = format!("gh_scale_{:x}", suffix);
        let mut admin = sqlx::PgConnection::connect(env.postgres.as_str())
            .await
            .expect("connect to GATEHOUSE_TEST_POSTGRES_URL");
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.ok();
        let postgres = TcpProxy::start(socket_of(&env.postgres, 5432)).await;
        let redis = TcpProxy::start(env.redis).await;
        let mut node_url = env.postgres.clone();
        node_url.set_host(Some("127.0.0.1")).unwrap();
        node_url.set_port(Some(postgres.addr().port())).unwrap();
        node_url.set_path(&database);
        Stores {
            admin_url: env.postgres.clone(),
            database,
            node_database_url: node_url.to_string(),
            redis_url: format!("redis://{}", redis.addr()),
            prefix: format!("gh-test-{suffix:x}:"),
            postgres,
            redis,
        }
    }

    async fn drop_database(&self) {
        if let Ok(mut admin) = sqlx::PgConnection::connect(self.admin_url.as_str()).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.database
            ))
            .execute(&mut admin)
            .await;
        }
    }
}

/// A `gatehouse serve` child process.
struct Node {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap();
        log.iter()
            .rev()
            .take(30)
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn node_config(stores: &Stores, origin: &str, data_dir: &std::path::Path, plan: &str) -> String {
    format!(
        r#"
[gateway]
watch_config = false
shutdown_grace = "5s"

[[listeners]]
bind = "127.0.0.1:0"

[admin]
bind = "127.0.0.1:0"
token = "{TOKEN}"

[telemetry]
access_log = "off"

[storage]
data_dir = "{data_dir}"
database_url = "{db}"
redis_url = "{redis}"
redis_prefix = "{prefix}"
database_timeout = "1s"
# Three debug-build nodes on a loaded 2-core CI machine can take longer than
# the 50 ms default for a Redis call, and a timeout falls back to per-node
# limits by design; these tests assert fleet-wide counting, so a slow call
# must wait rather than fall back. The outage tests cut connections, which
# fail at once whatever this is.
redis_timeout = "1s"

[plans.shared]
{plan}

[plans.daily]
quota_per_day = {DAILY_QUOTA}

[cache]
max_bytes = "8MiB"

[clusters.api]
targets = ["{origin}"]

[[routes]]
name = "api"
path_prefix = "/api"
cluster = "api"
auth = {{ methods = ["api_key"] }}

[[routes]]
name = "pages"
path_prefix = "/pages"
cluster = "api"
cache = {{}}
"#,
        data_dir = data_dir.display(),
        db = stores.node_database_url,
        redis = stores.redis_url,
        prefix = stores.prefix,
    )
}

async fn start_node(stores: &Stores, origin: &str, plan: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(
        &config,
        node_config(stores, origin, &dir.path().join("data"), plan),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = log.clone();
    // Read the bound addresses from the log, then keep draining it (for
    // failure messages, and so the child never blocks on a full pipe).
    std::thread::spawn(move || {
        let (mut public, mut admin) = (None, None);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if public.is_none() || admin.is_none() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let f = &v["fields"];
                    let addr = f["addr"]
                        .as_str()
                        .and_then(|a| a.parse::<SocketAddr>().ok());
                    match f["message"].as_str() {
                        Some("listening") if public.is_none() => public = addr,
                        Some("admin API listening") => admin = addr,
                        _ => {}
                    }
                    if let (Some(p), Some(a)) = (public, admin) {
                        let _ = tx.send((p, a));
                    }
                }
            }
            sink.lock().unwrap().push(line);
        }
    });
    let (addr, admin) =
        tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
            .await
            .unwrap()
            .unwrap_or_else(|_| {
                panic!(
                    "the node logs its addresses; log:\n{}",
                    log.lock().unwrap().join("\n")
                )
            });
    assert!(test_support::wait_for_port(addr, Duration::from_secs(20)).await);
    Node {
        child,
        addr,
        admin,
        log,
        _dir: dir,
    }
}

struct Fleet {
    nodes: Vec<Node>,
    stores: Stores,
    origin: Origin,
    origin_hits: Arc<AtomicU64>,
}

const DAILY_QUOTA: u64 = 50;
const DEFAULT_PLAN: &str = "rate_per_second = 1000.0\nburst = 1000";

impl Fleet {
    async fn start(env: &Env, plan: &str) -> Fleet {
        let stores = Stores::create(env).await;
        // Every origin hit returns a new body, so a test can tell a cached
        // copy from a fresh one.
        let hits = Arc::new(AtomicU64::new(0));
        let counter = hits.clone();
        let origin = Origin::start(Handler::new(move |_req| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let body = Full::new(Bytes::from(format!("version {n}")))
                    .map_err(|never| match never {})
                    .boxed();
                Reply::Response(
                    http::Response::builder()
                        .header("cache-control", "public, max-age=300")
                        .header("surrogate-key", "pages")
                        .body(body)
                        .unwrap(),
                )
            }
        }))
        .await;
        // The first node migrates the new database; the others then start
        // together, as a rolling deploy would.
        let authority = origin.authority();
        let first = start_node(&stores, &authority, plan).await;
        let (b, c) = tokio::join!(
            start_node(&stores, &authority, plan),
            start_node(&stores, &authority, plan)
        );
        let fleet = Fleet {
            nodes: vec![first, b, c],
            stores,
            origin,
            origin_hits: hits,
        };
        // Every node has registered with Redis, so fallback limits divide by 3.
        for node in &fleet.nodes {
            wait_until(Duration::from_secs(10), || async {
                ready(node).await["stores"]["redis"]["nodes"] == 3
            })
            .await
            .unwrap_or_else(|_| panic!("node sees 3 nodes; log:\n{}", node.log_tail()));
        }
        fleet
    }

    async fn stop(self) {
        let Fleet {
            nodes,
            stores,
            origin,
            ..
        } = self;
        drop(nodes);
        drop(origin);
        stores.drop_database().await;
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

async fn ready(node: &Node) -> serde_json::Value {
    match http().get(node.admin_url("/readyz")).send().await {
        Ok(res) => res.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

/// Polls `cond` every 20 ms until it holds; returns how long that took.
async fn wait_until<F, Fut>(limit: Duration, mut cond: F) -> Result<Duration, Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            return Err(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn admin_post(node: &Node, path: &str, body: serde_json::Value) -> reqwest::Response {
    http()
        .post(node.admin_url(path))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn create_key(node: &Node, owner: &str) -> (String, String) {
    create_key_on(node, owner, "shared").await
}

async fn create_key_on(node: &Node, owner: &str, plan: &str) -> (String, String) {
    let res = admin_post(
        node,
        "/v1/keys",
        serde_json::json!({"owner": owner, "plan": plan}),
    )
    .await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let v: serde_json::Value = res.json().await.unwrap();
    (
        v["key"]["id"].as_str().unwrap().to_string(),
        v["secret"].as_str().unwrap().to_string(),
    )
}

async fn status_with_key(node: &Node, key: &str) -> u16 {
    http()
        .get(node.url("/api/orders"))
        .bearer_auth(key)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Whether `node` accepts `key` (counts one use when it does).
async fn node_knows_key(node: &Node, key: &str) -> bool {
    status_with_key(node, key).await != 401
}

async fn page(node: &Node) -> String {
    http()
        .get(node.url("/pages/home"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_changes_and_purges_reach_every_node_within_a_second() {
    let Some(env) = env("key_changes_and_purges_reach_every_node_within_a_second") else {
        return;
    };
    let fleet = Fleet::start(&env, DEFAULT_PLAN).await;
    let [a, b, c] = &fleet.nodes[..] else {
        unreachable!()
    };

    // A key created through A works on B and C.
    let (old_id, old_secret) = create_key(a, "acme").await;
    for node in [b, c] {
        wait_until(Duration::from_secs(1), || async {
            status_with_key(node, &old_secret).await == 200
        })
        .await
        .unwrap_or_else(|t| panic!("new key usable on every node, still refused after {t:?}"));
    }

    // Rotation through A: during the grace window both keys work everywhere.
    let res = admin_post(
        a,
        &format!("/v1/keys/{old_id}/rotate"),
        serde_json::json!({"grace": "1h"}),
    )
    .await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let rotated: serde_json::Value = res.json().await.unwrap();
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    for node in [a, b, c] {
        wait_until(Duration::from_secs(1), || async {
            status_with_key(node, &new_secret).await == 200
        })
        .await
        .unwrap_or_else(|t| panic!("successor usable on every node, refused after {t:?}"));
        assert_eq!(
            status_with_key(node, &old_secret).await,
            200,
            "the old key keeps working during its grace window on every node"
        );
    }

    // Revocation through A: refused on B and C within one second.
    let res = admin_post(
        a,
        &format!("/v1/keys/{old_id}/revoke"),
        serde_json::json!({"reason": "leaked"}),
    )
    .await;
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    let revoked_at = Instant::now();
    for node in [b, c] {
        wait_until(Duration::from_secs(1), || async {
            status_with_key(node, &old_secret).await == 401
        })
        .await
        .unwrap_or_else(|t| panic!("revoked key still accepted after {t:?}"));
    }
    eprintln!("revocation reached B and C in {:?}", revoked_at.elapsed());
    assert!(
        revoked_at.elapsed() < Duration::from_secs(1),
        "revocation reached B and C within a second: {:?}",
        revoked_at.elapsed()
    );
    // The successor is untouched.
    for node in [a, b, c] {
        assert_eq!(status_with_key(node, &new_secret).await, 200);
    }

    // A purge through A removes the object from B and C.
    let cached_b = page(b).await;
    assert_eq!(page(b).await, cached_b, "B serves its cached copy");
    let cached_c = page(c).await;
    assert_eq!(page(c).await, cached_c, "C serves its cached copy");
    let res = admin_post(a, "/v1/cache/purge", serde_json::json!({"tag": "pages"})).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let purged_at = Instant::now();
    for (node, cached) in [(b, &cached_b), (c, &cached_c)] {
        wait_until(Duration::from_secs(1), || async {
            &page(node).await != cached
        })
        .await
        .unwrap_or_else(|t| panic!("purged object still served after {t:?}"));
    }
    eprintln!("purge reached B and C in {:?}", purged_at.elapsed());
    assert!(purged_at.elapsed() < Duration::from_secs(1));
    assert!(fleet.origin_hits.load(Ordering::SeqCst) >= 4);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_global_rate_limit_holds_across_three_nodes() {
    let Some(env) = env("a_global_rate_limit_holds_across_three_nodes") else {
        return;
    };
    const RATE: f64 = 100.0;
    const BURST: u64 = 20;
    let fleet = Fleet::start(
        &env,
        &format!("rate_per_second = {RATE:.1}\nburst = {BURST}"),
    )
    .await;
    let (_, secret) = create_key(&fleet.nodes[0], "busy").await;
    for node in &fleet.nodes {
        wait_until(Duration::from_secs(2), || async {
            status_with_key(node, &secret).await != 401
        })
        .await
        .unwrap();
    }
    // Let the bucket refill after the checks above.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let urls: Vec<String> = fleet.nodes.iter().map(|n| n.url("/api/orders")).collect();
    let client = http();
    let admitted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let run_for = Duration::from_secs(3);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..12 {
        let url = urls[worker % urls.len()].clone();
        let (client, secret) = (client.clone(), secret.clone());
        let (admitted, refused) = (admitted.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < run_for {
                let res = client.get(&url).bearer_auth(&secret).send().await.unwrap();
                match res.status().as_u16() {
                    200 => admitted.fetch_add(1, Ordering::Relaxed),
                    429 => refused.fetch_add(1, Ordering::Relaxed),
                    other => panic!("unexpected status {other}"),
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let admitted = admitted.load(Ordering::Relaxed) as f64;
    let refused = refused.load(Ordering::Relaxed);
    let expected = BURST as f64 + RATE * elapsed;
    assert!(
        refused > admitted as u64,
        "the load exceeds the limit (admitted {admitted}, refused {refused})"
    );
    let error = (admitted - expected).abs() / expected;
    eprintln!(
        "three nodes admitted {admitted} (expected {expected:.0}, {:+.1}%), refused {refused}",
        (admitted - expected) / expected * 100.0
    );
    assert!(
        error <= 0.05,
        "admitted {admitted} of an expected {expected:.0} across three nodes ({:.1}% off)",
        error * 100.0
    );

    // A daily quota is counted once for the fleet: exactly the quota is
    // admitted however the requests are spread.
    let (_, secret) = create_key_on(&fleet.nodes[0], "metered", "daily").await;
    for node in &fleet.nodes {
        wait_until(Duration::from_secs(2), || async {
            node_knows_key(node, &secret).await
        })
        .await
        .unwrap();
    }
    let admitted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for worker in 0..9 {
        let url = urls[worker % urls.len()].clone();
        let (client, secret, admitted) = (client.clone(), secret.clone(), admitted.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let res = client.get(&url).bearer_auth(&secret).send().await.unwrap();
                match res.status().as_u16() {
                    200 => {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    429 => assert_eq!(res.headers()["ratelimit-remaining"], "0"),
                    other => panic!("unexpected status {other}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        admitted.load(Ordering::Relaxed),
        DAILY_QUOTA - 3,
        "90 requests over three nodes against a daily quota of {DAILY_QUOTA} (3 used by the probes); log:\n{}",
        fleet.nodes[0].log_tail()
    );
    fleet.stop().await;
}

async fn metric(node: &Node, name: &str) -> Option<f64> {
    let text = http()
        .get(node.admin_url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_redis_falls_back_to_local_limits_and_recovers() {
    let Some(env) = env("losing_redis_falls_back_to_local_limits_and_recovers") else {
        return;
    };
    // 30/s with a burst of 30 across the fleet: 10 per node without Redis.
    let fleet = Fleet::start(&env, "rate_per_second = 30.0\nburst = 30").await;
    let b = &fleet.nodes[1];
    let (_, secret) = create_key(&fleet.nodes[0], "steady").await;
    wait_until(Duration::from_secs(2), || async {
        status_with_key(b, &secret).await == 200
    })
    .await
    .unwrap();

    fleet.stores.redis.cut();
    let cut_at = Instant::now();
    // Requests keep flowing, limited per node at a third of the plan.
    let mut admitted = 0;
    for _ in 0..25 {
        let t = Instant::now();
        match status_with_key(b, &secret).await {
            200 => admitted += 1,
            429 => {}
            other => panic!("requests keep flowing without Redis, got {other}"),
        }
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "a decision without Redis is quick: {:?}",
            t.elapsed()
        );
    }
    assert!(
        (10..=14).contains(&admitted),
        "node B admits its share (burst 30 / 3 nodes), admitted {admitted}"
    );
    assert!(cut_at.elapsed() < Duration::from_secs(5));
    assert_eq!(
        metric(b, "gatehouse_ratelimit_local_fallback").await,
        Some(1.0)
    );
    wait_until(Duration::from_secs(5), || async {
        ready(b).await["stores"]["redis"]["up"] == false
    })
    .await
    .expect("readiness reports Redis down");

    fleet.stores.redis.restore();
    // The limiter returns to Redis on its own; the next decision shows it.
    wait_until(Duration::from_secs(10), || async {
        status_with_key(b, &secret).await;
        metric(b, "gatehouse_ratelimit_local_fallback").await == Some(0.0)
            && ready(b).await["stores"]["redis"]["up"] == true
    })
    .await
    .unwrap_or_else(|t| panic!("back on shared limits after {t:?}; log:\n{}", b.log_tail()));
    assert_eq!(status_with_key(b, &secret).await, 200);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_postgres_keeps_keys_and_cache_serving() {
    let Some(env) = env("losing_postgres_keeps_keys_and_cache_serving") else {
        return;
    };
    let fleet = Fleet::start(&env, DEFAULT_PLAN).await;
    let (_, secret) = create_key(&fleet.nodes[0], "resilient").await;
    let mut cached = Vec::new();
    for node in &fleet.nodes {
        wait_until(Duration::from_secs(2), || async {
            status_with_key(node, &secret).await == 200
        })
        .await
        .unwrap();
        let body = page(node).await;
        assert_eq!(page(node).await, body);
        cached.push(body);
    }

    fleet.stores.postgres.cut();
    for (node, body) in fleet.nodes.iter().zip(&cached) {
        assert_eq!(
            status_with_key(node, &secret).await,
            200,
            "keys verify from memory"
        );
        assert_eq!(&page(node).await, body, "cached responses still served");
    }
    // Admin writes fail clearly and quickly.
    let t = Instant::now();
    let res = admin_post(
        &fleet.nodes[1],
        "/v1/keys",
        serde_json::json!({"owner": "during-outage", "plan": "shared"}),
    )
    .await;
    assert_eq!(res.status(), 503);
    let problem: serde_json::Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "key_store_unavailable", "{problem}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    wait_until(Duration::from_secs(5), || async {
        ready(&fleet.nodes[1]).await["stores"]["database"]["up"] == false
    })
    .await
    .expect("readiness reports the database down");

    fleet.stores.postgres.restore();
    wait_until(Duration::from_secs(10), || async {
        admin_post(
            &fleet.nodes[1],
            "/v1/keys",
            serde_json::json!({"owner": "after-outage", "plan": "shared"}),
        )
        .await
        .status()
            == 201
    })
    .await
    .expect("admin writes work again once PostgreSQL is back");
    fleet.stop().await;
}
