//! The admin console in a real browser: `gatehouse up` (in a temp data
//! dir, on free ports) driven through Debian's chromium and chromedriver
//! over WebDriver. Sign-in (wrong, then right), the overview's charts after
//! traffic, a key created (its secret shown once), rotated and revoked
//! (and refused at the gateway), a soft purge, a dark-launch report with
//! its charts, the FX chart of USD/JPY over 2020, and the viewer token
//! changing nothing.
//!
//! Needs `chromium` and `chromium-driver` (`apt-get install chromium
//! chromium-driver`; `.ci/run` installs them): without chromedriver the
//! test fails, saying so. With `GATEHOUSE_CONSOLE_SCREENSHOTS=DIR` it saves
//! a PNG of each page there (how `docs/console/*.png` are made).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");
const ADMIN_TOKEN: &str = "browser-test-admin-token-0123456789";
const VIEWER_TOKEN: &str = "browser-test-viewer-token-0123456789";
const WAIT: Duration = Duration::from_secs(30);

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn find(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// `gatehouse up` on free ports; returns it, the gateway and admin
/// addresses and the demo API key it printed.
fn start_gatehouse(data_dir: &Path) -> (Proc, String, String, String) {
    let (gw, admin) = (free_port(), free_port());
    let mut child = Command::new(BIN)
        .args([
            "up",
            "--listen",
            &format!("127.0.0.1:{gw}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
            "--data-dir",
        ])
        .arg(data_dir)
        .env("GATEHOUSE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("GATEHOUSE_VIEWER_TOKEN", VIEWER_TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("gatehouse starts");
    let stdout = child.stdout.take().unwrap();
    let proc = Proc(child);
    let mut key = None;
    let mut console = false;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.trim_start().starts_with("console") {
            assert!(
                line.contains(&format!("http://127.0.0.1:{admin}/")),
                "{line}"
            );
            console = true;
        }
        if let Some(rest) = line.trim_start().strip_prefix("API key") {
            key = rest.split_whitespace().next().map(str::to_string);
        }
        if line.trim_start().starts_with("config") {
            break;
        }
    }
    // Keep reading, so the server never writes to a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    assert!(console, "`gatehouse up` prints the console's address");
    (
        proc,
        format!("127.0.0.1:{gw}"),
        format!("127.0.0.1:{admin}"),
        key.expect("`gatehouse up` prints a demo API key"),
    )
}

fn start_chromedriver() -> (Proc, u16) {
    let Some(driver) = find("chromedriver") else {
        panic!(
            "chromedriver is not installed: this test drives Debian's chromium through it. \
             Install both with `apt-get install -y chromium chromium-driver` (.ci/run does)."
        );
    };
    assert!(
        find("chromium").is_some(),
        "chromium is not installed: `apt-get install -y chromium chromium-driver`"
    );
    let port = free_port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    (Proc(child), port)
}

async fn browser(port: u16, profile: &Path) -> Client {
    // One TLS provider for the WebDriver client (it speaks plain HTTP here).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let caps = json!({
        "goog:chromeOptions": {
            "binary": find("chromium").unwrap(),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    let caps: serde_json::Map<String, Value> = caps.as_object().unwrap().clone();
    let deadline = Instant::now() + WAIT;
    loop {
        match ClientBuilder::rustls()
            .expect("rustls client")
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot reach chromedriver: {e}"),
        }
    }
}

async fn el(c: &Client, css: &str) -> Element {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("`{css}` never appeared: {e}"))
}

/// Waits until `css` has text containing `needle`.
async fn text_of(c: &Client, css: &str, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if let Ok(t) = e.text().await {
                if t.contains(needle) {
                    return t;
                }
            }
        }
        assert!(Instant::now() < deadline, "`{css}` never said `{needle}`");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fill(c: &Client, css: &str, value: &str) {
    let e = el(c, css).await;
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    el(c, css).await.click().await.unwrap();
}

async fn go(c: &Client, admin: &str, hash: &str) {
    c.goto(&format!("http://{admin}/{hash}")).await.unwrap();
}

async fn screenshot(c: &Client, name: &str) {
    let Some(dir) = std::env::var_os("GATEHOUSE_CONSOLE_SCREENSHOTS") else {
        return;
    };
    // Let charts settle after their data arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let png = c.screenshot().await.unwrap();
    std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
}

/// Runs `fetch` in the page (with the session cookie) and returns the
/// status: what a script on the console's own origin can do.
async fn fetch_status(c: &Client, method: &str, path: &str, body: Value) -> u64 {
    let script = r#"
        const [method, path, body, done] = arguments;
        fetch("/v1/console/session").then(r => r.json()).then(s =>
            fetch(path, { method, headers: { "content-type": "application/json", "x-csrf-token": s.csrf },
                          body: JSON.stringify(body) })
        ).then(r => done(r.status), e => done(String(e)));
    "#;
    let v = c
        .execute_async(script, vec![json!(method), json!(path), body])
        .await
        .unwrap();
    v.as_u64().unwrap_or_else(|| panic!("fetch failed: {v}"))
}

async fn has_data(c: &Client, css: &str) {
    el(c, &format!("{css}[data-has-data=\"true\"] canvas")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let data = tempfile::tempdir().unwrap();
    let profile = tempfile::tempdir().unwrap();
    let (_driver, driver_port) = start_chromedriver();
    let (_gatehouse, gw, admin, demo_key) = start_gatehouse(&data.path().join("data"));
    let http = reqwest::Client::new();
    let c = browser(driver_port, profile.path()).await;

    // --- Sign-in: a wrong token, then the right one. ---
    go(&c, &admin, "").await;
    fill(&c, "#token", "not-the-token").await;
    click(&c, "#sign-in-button").await;
    text_of(&c, "#sign-in-error", "neither").await;
    screenshot(&c, "sign-in").await;

    // Traffic for the charts: misses, then cache hits, and a refusal.
    for i in 0..30 {
        let amount = 100 + i % 3;
        let res = http
            .get(format!(
                "http://{gw}/v1/fx/convert?from=USD&to=JPY&amount={amount}"
            ))
            .bearer_auth(&demo_key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    }
    let res = http
        .get(format!(
            "http://{gw}/v1/fx/convert?from=USD&to=JPY&amount=1"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    fill(&c, "#token", ADMIN_TOKEN).await;
    click(&c, "#sign-in-button").await;
    text_of(&c, "#access-badge", "admin").await;

    // --- Overview: charts with data. ---
    el(&c, "#overview").await;
    has_data(&c, "#chart-requests").await;
    has_data(&c, "#chart-latency").await;
    has_data(&c, "#chart-cache").await;
    text_of(&c, "#overview", "fx-spread-75bps").await;
    screenshot(&c, "overview").await;

    // --- Keys: create; the secret is shown once. ---
    go(&c, &admin, "#/keys").await;
    fill(&c, "#new-owner", "browser-co").await;
    fill(&c, "#new-name", "ci").await;
    click(&c, "#create-key").await;
    let secret = el(&c, "#new-secret")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(secret.len() > 20, "{secret}");
    text_of(&c, "#created", "shown once").await;
    text_of(&c, "#key-list", "browser-co").await;
    screenshot(&c, "keys").await;
    click(&c, "#dismiss-secret").await;
    let key_id = el(&c, "tr[data-consumer=\"browser-co\"]")
        .await
        .attr("data-key-id")
        .await
        .unwrap()
        .unwrap();
    // Never again: not in the list, not on the key's page, not after a reload.
    assert!(!c.source().await.unwrap().contains(&secret));
    let res = http
        .get(format!(
            "http://{gw}/v1/fx/convert?from=EUR&to=USD&amount=5"
        ))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the new key works at the gateway");

    go(&c, &admin, &format!("#/keys/{key_id}")).await;
    el(&c, "#chart-key-requests canvas").await;
    assert!(!c.source().await.unwrap().contains(&secret));
    // --- Rotate with a grace period. ---
    fill(&c, "#rotate-grace", "1h").await;
    click(&c, "#rotate-key").await;
    let successor = el(&c, "#new-secret")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(successor, secret);
    text_of(&c, "#status", "Rotated").await;
    // A client that has not moved to the new key yet: the old key's page
    // names it.
    let res = http
        .get(format!(
            "http://{gw}/v1/fx/convert?from=EUR&to=USD&amount=5"
        ))
        .bearer_auth(&secret)
        .header("user-agent", "billing-batch/2.1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the old key works during its grace");
    go(&c, &admin, "#/keys").await;
    go(&c, &admin, &format!("#/keys/{key_id}")).await;
    text_of(&c, "#grace-use", "billing-batch/2.1").await;
    // --- Revoke with a reason; the gateway refuses the key at once. ---
    fill(&c, "#revoke-reason", "leaked in a test log").await;
    click(&c, "#revoke-key").await;
    text_of(&c, "#page h1", "revoked").await;
    text_of(&c, "#audit", "key.revoke").await;
    screenshot(&c, "key").await;
    let res = http
        .get(format!(
            "http://{gw}/v1/fx/convert?from=EUR&to=USD&amount=5"
        ))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "a revoked key is refused");
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "revoked_api_key");

    // --- Cache: a soft purge. ---
    go(&c, &admin, "#/cache").await;
    el(&c, "#cache-tiles .tile").await;
    c.find(Locator::Css("#purge-kind option[value=\"prefix\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    fill(&c, "#purge-value", &format!("http://{gw}/v1/fx/")).await;
    c.find(Locator::Css("#purge-mode option[value=\"soft\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click(&c, "#purge").await;
    // The USD/JPY conversions above are stored: the purge reaches them.
    text_of(&c, "#purge-result", "marked stale").await;
    let result = c
        .find(Locator::Css("#purge-result"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !result.contains(": 0 stored"),
        "the soft purge reached nothing: {result}"
    );
    screenshot(&c, "cache").await;

    // --- Routes and upstreams. ---
    go(&c, &admin, "#/routes").await;
    text_of(&c, "#upstreams", "fx-candidate").await;
    screenshot(&c, "routes").await;

    // --- Dark launch report with its charts. ---
    // The page draws the report as it is when it loads: wait until the
    // launch has timed pairs. A pair that waited too long for the
    // low-priority shadow thread is compared but not timed, so on a busy
    // machine more traffic is sent until some are.
    let deadline = Instant::now() + WAIT;
    for amount in 200.. {
        let report: Value = http
            .get(format!("http://{admin}/v1/shadow/fx-spread-75bps"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let endpoints = report["assessment"]["endpoints"].as_array();
        if endpoints.is_some_and(|e| e.iter().any(|e| !e["latency"].is_null())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the launch never timed a pair: {}",
            report["assessment"]
        );
        http.get(format!(
            "http://{gw}/v1/fx/convert?from=USD&to=JPY&amount={amount}"
        ))
        .bearer_auth(&demo_key)
        .send()
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    go(&c, &admin, "#/shadow/fx-spread-75bps").await;
    el(&c, "#chart-launch-score canvas").await;
    has_data(&c, "#chart-launch-latency").await;
    text_of(&c, "#diff-browser", "primary").await;
    el(&c, "#diff-browser mark.diff").await;
    screenshot(&c, "dark-launch").await;

    // --- FX: USD/JPY over 2020. ---
    go(&c, &admin, "#/fx").await;
    has_data(&c, "#chart-fx").await;
    let chart = el(&c, "#chart-fx").await;
    assert_eq!(
        chart.attr("data-pair").await.unwrap().as_deref(),
        Some("USD/JPY")
    );
    let points: usize = chart
        .attr("data-points")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert!(points > 200, "a year of business days: {points}");
    // The converter says what the fx API answers, field by field.
    click(&c, "#convert").await;
    let said = text_of(&c, "#convert-result", "at the mid rate").await;
    let answer: Value = http
        .get(format!(
            "http://{gw}/v1/fx/convert?from=USD&to=JPY&amount=100"
        ))
        .bearer_auth(&demo_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mid = &answer["mid"];
    let expected = format!(
        "100 USD = {} JPY at the mid rate {}",
        mid["amount"].as_str().unwrap(),
        mid["rate"].as_str().unwrap()
    );
    assert!(said.contains(&expected), "`{said}` lacks `{expected}`");
    assert!(said.contains("bps") && said.contains(answer["date"].as_str().unwrap()));
    text_of(&c, "#fx-disputed", "fixing of").await;
    let page = el(&c, "#page").await.text().await.unwrap();
    for junk in ["undefined", "NaN", "[object"] {
        assert!(!page.contains(junk), "the FX page shows `{junk}`: {page}");
    }
    screenshot(&c, "fx").await;

    // --- The viewer token: sees everything, changes nothing. ---
    click(&c, "#sign-out").await;
    text_of(&c, "#sign-in-error", "Signed out").await;
    fill(&c, "#token", VIEWER_TOKEN).await;
    click(&c, "#sign-in-button").await;
    text_of(&c, "#access-badge", "viewer").await;
    go(&c, &admin, "#/keys").await;
    text_of(&c, "#key-list", "browser-co").await;
    assert!(!el(&c, "#create-key").await.is_enabled().await.unwrap());
    screenshot(&c, "viewer").await;
    let successor_id = http
        .get(format!("http://{admin}/v1/keys/{key_id}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["successor"]
        .as_str()
        .unwrap()
        .to_string();
    for (method, path, body) in [
        (
            "POST",
            "/v1/keys".to_string(),
            json!({ "owner": "viewer-made" }),
        ),
        (
            "POST",
            format!("/v1/keys/{successor_id}/revoke"),
            json!({ "reason": "x" }),
        ),
        (
            "PATCH",
            format!("/v1/keys/{successor_id}"),
            json!({ "name": "x" }),
        ),
        (
            "POST",
            "/v1/cache/purge".into(),
            json!({ "prefix": format!("http://{gw}/"), "soft": false }),
        ),
        ("POST", "/v1/shadow/fx-spread-75bps/pause".into(), json!({})),
    ] {
        assert_eq!(
            fetch_status(&c, method, &path, body).await,
            403,
            "viewer {method} {path}"
        );
    }
    let res = http
        .get(format!(
            "http://{gw}/v1/fx/convert?from=EUR&to=USD&amount=5"
        ))
        .bearer_auth(&successor)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "the successor still works: the viewer changed nothing"
    );

    c.close().await.unwrap();
}
