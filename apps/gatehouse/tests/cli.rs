//! The `gatehouse` binary as an operator uses it: `check`, `serve` with
//! signals, and `up`.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use test_support::origin::{Handler, Origin};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

struct Served {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(
    addr: SocketAddr,
    admin: SocketAddr,
    origin: &str,
    version: u32,
    data_dir: &std::path::Path,
) -> String {
    let data_dir = data_dir.display();
    format!(
        r#"
[gateway]
watch_config = false
shutdown_grace = "10s"

[[listeners]]
bind = "{addr}"

[admin]
bind = "{admin}"
token = "cli-test-token"

[telemetry]
access_log = "off"

[storage]
data_dir = "{data_dir}"

[clusters.svc]
targets = ["{origin}"]

[[routes]]
name = "svc"
cluster = "svc"
response_headers = {{ set = {{ "x-version" = "{version}" }} }}
"#
    )
}

async fn serve(origin: &str) -> Served {
    serve_with(origin, |text| text).await
}

/// Serves `config_text` changed by `edit`, on ports the OS picks.
async fn serve_with(origin: &str, edit: impl FnOnce(String) -> String) -> Served {
    serve_limited(origin, edit, None).await
}

/// Like [`serve_with`], with the open-files limit (`ulimit -n`) set to
/// `nofile` for the gateway process when given.
async fn serve_limited(
    origin: &str,
    edit: impl FnOnce(String) -> String,
    nofile: Option<u32>,
) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatehouse.toml");
    // Port 0: the OS picks free ports; the gateway logs what it bound.
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    std::fs::write(
        &config,
        edit(config_text(any, any, origin, 1, &dir.path().join("data"))),
    )
    .unwrap();
    let mut command = match nofile {
        Some(n) => {
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                .arg(BIN);
            sh
        }
        None => Command::new(BIN),
    };
    let mut child = command
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (addr, admin) = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines();
        let (mut addr, mut admin) = (None, None);
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let fields = &v["fields"];
            let bound = fields["addr"]
                .as_str()
                .and_then(|a| a.parse::<SocketAddr>().ok());
            if fields["message"] == "listening" {
                addr = addr.or(bound);
            } else if fields["message"] == "admin API listening" {
                admin = bound;
            }
            if addr.is_some() && admin.is_some() {
                break;
            }
        }
        // Keep draining so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        (addr, admin)
    })
    .await
    .unwrap();
    let addr = addr.expect("the gateway logs its listening address");
    let admin = admin.expect("the gateway logs its admin address");
    assert!(
        test_support::wait_for_port(addr, Duration::from_secs(20)).await,
        "gateway listens"
    );
    Served {
        child,
        addr,
        admin,
        _dir: dir,
        config,
    }
}

/// `gatehouse_config_reloads_total{result="ok"}` from the admin API.
async fn reloads(served: &Served) -> u64 {
    let text = reqwest::Client::new()
        .get(format!("http://{}/metrics", served.admin))
        .bearer_auth("cli-test-token")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("gatehouse_config_reloads_total{") && l.contains("result=\"ok\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

async fn get(addr: SocketAddr) -> reqwest::Response {
    reqwest::get(format!("http://{addr}/")).await.unwrap()
}

#[test]
fn check_accepts_good_and_rejects_broken_configs_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        config_text(free_port(), free_port(), "127.0.0.1:9", 1, dir.path()),
    )
    .unwrap();
    let out = Command::new(BIN).arg("check").arg(&good).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 routes, 1 clusters"));

    let bad = dir.path().join("bad.toml");
    let text = config_text(free_port(), free_port(), "127.0.0.1:9", 1, dir.path()).replace(
        "shutdown_grace = \"10s\"",
        "shutdown_grace = \"ten seconds\"",
    );
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(BIN).arg("check").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:4:"), "{err}");

    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "serve refuses to start on a broken file"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml:4:"));
}

/// `check` runs the build step a reload runs, so it refuses what a reload
/// would refuse: here a cluster whose CA file does not exist.
#[test]
fn check_refuses_a_config_that_would_not_build() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gatehouse.toml");
    let text = config_text(free_port(), free_port(), "127.0.0.1:9", 1, dir.path())
        + "\n[clusters.secure]\ntargets = [\"https://127.0.0.1:9\"]\ntls = { ca_file = \"/nonexistent/ca.pem\" }\n";
    let line = text.lines().position(|l| l.contains("ca_file")).unwrap() + 1;
    std::fs::write(&file, &text).unwrap();
    let out = Command::new(BIN).arg("check").arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("gatehouse.toml:{line}:"))
            && err.contains("clusters.secure.tls.ca_file"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

/// `check` refuses what `serve` refuses: a config with no admin token (and
/// no `GATEHOUSE_ADMIN_TOKEN`) fails both with the same located message.
#[test]
fn check_refuses_a_config_without_an_admin_token_like_serve() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gatehouse.toml");
    let text = config_text(free_port(), free_port(), "127.0.0.1:9", 1, dir.path())
        .replace("token = \"cli-test-token\"\n", "");
    let line = text.lines().position(|l| l == "[admin]").unwrap() + 1;
    std::fs::write(&file, &text).unwrap();
    let out = Command::new(BIN)
        .arg("check")
        .arg(&file)
        .env_remove("GATEHOUSE_ADMIN_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("gatehouse.toml:{line}:"))
            && err.contains("admin.token: no admin token"),
        "{err}"
    );

    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&file)
        .env_remove("GATEHOUSE_ADMIN_TOKEN")
        .output()
        .unwrap();
    let serve_err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve refuses it too");
    assert!(
        serve_err.contains("admin.token: no admin token"),
        "{serve_err}"
    );

    let out = Command::new(BIN)
        .arg("check")
        .arg(&file)
        .env("GATEHOUSE_ADMIN_TOKEN", "from-the-environment")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the environment supplies the token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A zero client deadline is refused by `check` (and so by `serve` and
/// reloads) at its line, instead of closing every request whose head
/// arrives in two packets.
#[test]
fn check_refuses_a_zero_header_read_timeout_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gatehouse.toml");
    let text = config_text(free_port(), free_port(), "127.0.0.1:9", 1, dir.path()).replace(
        "watch_config = false\n",
        "watch_config = false\nheader_read_timeout = \"0s\"\n",
    );
    let line = text
        .lines()
        .position(|l| l.starts_with("header_read_timeout"))
        .unwrap()
        + 1;
    std::fs::write(&file, &text).unwrap();
    let out = Command::new(BIN).arg("check").arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "gatehouse.toml:{line}:1: gateway.header_read_timeout: must be at least 1s (got 0s)"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn sighup_applies_good_configs_and_rejects_broken_ones() {
    let origin = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let served = serve(&origin.authority()).await;
    assert_eq!(get(served.addr).await.headers()["x-version"], "1");

    let text = std::fs::read_to_string(&served.config).unwrap();
    std::fs::write(
        &served.config,
        text.replace("\"x-version\" = \"1\"", "\"x-version\" = \"2\""),
    )
    .unwrap();
    signal(&served.child, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(served.addr).await.headers()["x-version"] != "2" {
        assert!(Instant::now() < deadline, "SIGHUP reload applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    std::fs::write(&served.config, "this is not toml").unwrap();
    signal(&served.child, "-HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = get(served.addr).await;
    assert_eq!(res.status(), 200, "still serving after a broken reload");
    assert_eq!(res.headers()["x-version"], "2");
}

/// With `watch_config`, reading the file or a SIGHUP never starts a chain
/// of reloads: a SIGHUP reloads once, a read not at all, a real edit once,
/// and rewriting the same text not at all.
#[tokio::test]
async fn watched_config_reloads_once_per_real_change_and_never_on_a_read() {
    let origin = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let served = serve_with(&origin.authority(), |text| {
        text.replace("watch_config = false", "watch_config = true")
    })
    .await;
    let settle = || tokio::time::sleep(Duration::from_millis(1500));
    assert_eq!(reloads(&served).await, 0);

    for _ in 0..5 {
        std::fs::read_to_string(&served.config).unwrap();
    }
    settle().await;
    assert_eq!(
        reloads(&served).await,
        0,
        "reading the file reloads nothing"
    );

    signal(&served.child, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while reloads(&served).await == 0 {
        assert!(Instant::now() < deadline, "SIGHUP reloads");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    settle().await;
    assert_eq!(reloads(&served).await, 1, "one SIGHUP, one reload");

    let text = std::fs::read_to_string(&served.config).unwrap();
    std::fs::write(
        &served.config,
        text.replace("\"x-version\" = \"1\"", "\"x-version\" = \"2\""),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(served.addr).await.headers()["x-version"] != "2" {
        assert!(Instant::now() < deadline, "the edit is applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    settle().await;
    assert_eq!(reloads(&served).await, 2, "one edit, one reload");

    let same = std::fs::read_to_string(&served.config).unwrap();
    std::fs::write(&served.config, same).unwrap();
    settle().await;
    assert_eq!(
        reloads(&served).await,
        2,
        "the same text again reloads nothing"
    );
}

/// A TCP connection to `to` from the loopback address `from` (any
/// 127.0.0.0/8 address reaches the gateway on Linux).
async fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from.parse().unwrap(), 0))?;
    socket.connect(to).await
}

/// One `GET /` on a fresh connection from `from`: the status, or `None`
/// when no answer came within 10 s.
async fn get_from(from: &str, to: SocketAddr) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = connect_from(from, to).await.ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    String::from_utf8_lossy(&out)
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()
}

/// The attack as reported: under a low open-files limit, hundreds of
/// connections that send nothing made every new request fail. With the
/// limits derived from `ulimit -n` (512 here: 128 connections, 32 per
/// address), they cannot take the descriptors, and new clients and the
/// admin API are served while they are held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_cannot_exhaust_descriptors_under_a_low_open_files_limit() {
    let origin = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let served = serve_limited(&origin.authority(), |text| text, Some(512)).await;
    let mut silent = Vec::new();
    for i in 0..600 {
        let from = format!("127.0.1.{}", i % 6 + 1);
        if let Ok(s) = connect_from(&from, served.addr).await {
            silent.push(s);
        }
    }
    assert!(silent.len() > 500, "{} connected", silent.len());
    // Past a second, silent connections may give way to new clients.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..5 {
        assert_eq!(
            get_from("127.0.2.1", served.addr).await,
            Some(200),
            "a new client is served while the silent connections are held"
        );
    }
    let healthz = reqwest::Client::new()
        .get(format!("http://{}/healthz", served.admin))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the admin API answers");
    assert_eq!(healthz.status(), 200);
    assert_eq!(
        reloads(&served).await,
        0,
        "the admin API serves authenticated calls too"
    );
    drop(silent);
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits() {
    let origin =
        Origin::start(Handler::fixed(200, &[], "done").delay(Duration::from_millis(800))).await;
    let mut served = serve(&origin.authority()).await;
    let addr = served.addr;
    let slow = tokio::spawn(async move {
        let res = get(addr).await;
        (res.status().as_u16(), res.text().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&served.child, "-TERM");
    assert_eq!(slow.await.unwrap(), (200, "done".to_string()));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            assert!(status.success(), "clean exit after draining: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "exits after draining");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `request_id` of every line of an access log file (none when the
/// file does not exist).
fn logged_ids(path: &std::path::Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: `{line}`: {e}", path.display()));
            record["request_id"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Sends one request per id (as its `X-Request-Id`), one after another.
async fn requests(addr: SocketAddr, ids: &[String]) {
    let http = reqwest::Client::new();
    for id in ids {
        let res = http
            .get(format!("http://{addr}/"))
            .header("x-request-id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
}

/// Polls `done` every 20 ms for up to ten seconds.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What logrotate does: rename the access log, send SIGUSR1. Lines logged
/// before the signal stay in the renamed file, later ones go to a new file
/// at the configured path, and no line is lost or written twice.
#[tokio::test]
async fn sigusr1_reopens_the_access_log_file_after_logrotate_renames_it() {
    let origin = Origin::start(Handler::fixed(200, &[], "ok")).await;
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("access.log");
    let rotated = logs.path().join("access.log.1");
    let served = serve_with(&origin.authority(), |text| {
        text.replace(
            "access_log = \"off\"",
            &format!("access_log = \"{}\"", log.display()),
        )
    })
    .await;
    let ids = |phase: &str| (0..20).map(|i| format!("{phase}-{i}")).collect::<Vec<_>>();
    let (before, around, after) = (ids("before"), ids("around"), ids("after"));

    requests(served.addr, &before).await;
    wait_for("the first lines", || logged_ids(&log).len() == before.len()).await;
    std::fs::rename(&log, &rotated).unwrap();
    // Until the gateway reopens, lines still go to the renamed file.
    requests(served.addr, &around).await;
    signal(&served.child, "-USR1");
    wait_for("a new access log file", || log.exists()).await;
    requests(served.addr, &after).await;

    let total = before.len() + around.len() + after.len();
    wait_for("every line", || {
        logged_ids(&rotated).len() + logged_ids(&log).len() >= total
    })
    .await;
    let (old_file, new_file) = (logged_ids(&rotated), logged_ids(&log));
    assert!(
        old_file.starts_with(&before),
        "the renamed file keeps its lines: {old_file:?}"
    );
    assert!(
        after.iter().all(|id| new_file.contains(id)),
        "lines after the reopen go to the new file: {new_file:?}"
    );
    let mut every: Vec<String> = old_file.iter().chain(&new_file).cloned().collect();
    every.sort();
    let mut sent: Vec<String> = before.into_iter().chain(around).chain(after).collect();
    sent.sort();
    assert_eq!(
        every, sent,
        "each request logged exactly once across both files"
    );
    assert!(
        !old_file.iter().any(|id| id.starts_with("after-")),
        "nothing after the reopen reaches the renamed file"
    );
}

#[tokio::test]
async fn up_answers_through_the_gateway_and_prints_how_to_use_it() {
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin) = (free_port(), free_port());
    let mut child = Command::new(BIN)
        .args([
            "up",
            "--listen",
            &listen.to_string(),
            "--admin-listen",
            &admin.to_string(),
        ])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let banner = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines() {
            // The fx service imports the bundled ECB history on first start.
            let line = line.unwrap();
            let done = line.contains("/metrics");
            text.push_str(&line);
            text.push('\n');
            if done {
                break;
            }
        }
        text
    })
    .await
    .unwrap();
    let url_after = |label: &str| -> SocketAddr {
        banner
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|url| url.strip_prefix("http://"))
            .and_then(|a| a.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("no `{label}` URL in the banner:\n{banner}"))
    };
    let listen = url_after("gateway");
    let admin = url_after("admin API");
    let token = std::fs::read_to_string(dir.path().join("gatehouse-data/admin-token")).unwrap();
    assert!(banner.contains(token.trim()), "the admin token is printed");

    // The fx service answers through the gateway, with the bundled ECB
    // history: on 2020-03-02 the ECB fixed USD at 1.1122 per EUR.
    let url = format!("http://{listen}/v1/fx/convert?from=EUR&to=USD&amount=100&date=2020-03-02");
    let key = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("API key"))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the banner prints an API key")
        .to_string();
    let http = reqwest::Client::new();
    let res = reqwest::get(&url).await.unwrap();
    assert_eq!(res.status(), 401, "the fx route needs a key");
    let res = http.get(&url).bearer_auth(&key).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("x-request-id"));
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["mid"]["amount"], "111.22", "{body}");
    assert_eq!(body["provenance"]["fixing_date"], "2020-03-02", "{body}");
    // Without a date: the latest bundled fixing, flagged stale but served.
    let latest = http
        .get(format!(
            "http://{listen}/v1/fx/convert?from=USD&to=JPY&amount=100"
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(latest.status(), 200);
    let latest: serde_json::Value = latest.json().await.unwrap();
    assert_eq!(
        latest["provenance"]["fixing_date"], "2026-10-30",
        "{latest}"
    );
    let again = http.get(&url).bearer_auth(&key).send().await.unwrap();
    let status = again.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        status.contains("hit"),
        "the gateway cache serves the repeat: {status}"
    );

    // The dark launch compared those requests with the candidate (75 bps
    // spread): the customer amount differs, the mid amount does not.
    let report_url = format!("http://{admin}/v1/shadow/fx-spread-75bps");
    let mut report = serde_json::Value::Null;
    for _ in 0..100 {
        report = http
            .get(&report_url)
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if report["top_fields"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fields = report["top_fields"].to_string();
    assert!(fields.contains("customer"), "{report}");
    assert!(!fields.contains("mid"), "{report}");

    let res = reqwest::Client::new()
        .get(format!("http://{admin}/v1/upstreams"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn migrate_prepares_a_database_once_and_rejects_bad_urls() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fleet.db");
    let url = format!("sqlite://{}?mode=rwc", db.display());
    for run in 0..2 {
        let out = Command::new(BIN)
            .args(["migrate", "--database-url", &url])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "run {run}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for system in ["keys", "dark launch", "fx"] {
            assert!(
                stdout.contains(&format!("{system}: up to date")),
                "{stdout}"
            );
        }
    }
    assert!(db.exists());

    // A config file names the database too; credentials are never echoed.
    let out = Command::new(BIN)
        .args([
            "migrate",
            "--database-url",
            "postgres://gatehouse:hunter2@127.0.0.1:1/none",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("keys: cannot migrate"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");

    let out = Command::new(BIN).arg("migrate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
