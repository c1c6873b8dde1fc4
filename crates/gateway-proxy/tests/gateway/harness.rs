//! A gateway started in-process from a config file in a temp dir, with
//! listeners on free ports.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gateway_proxy::{Running, StartOptions};

pub const TOKEN: &str = "test-admin-token";

pub struct TestGateway {
    pub running: Option<Running>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    _dir: tempfile::TempDir,
}

/// The preamble every test config starts with: free ports, quiet logs.
pub fn base(extra: &str) -> String {
    base_with("", extra)
}

/// Like [`base`], with extra lines in `[gateway]`.
pub fn base_with(gateway: &str, extra: &str) -> String {
    format!(
        r#"
[gateway]
watch_config = false
{gateway}

[[listeners]]
bind = "127.0.0.1:0"

[admin]
bind = "127.0.0.1:0"

[telemetry]
access_log = "off"

{extra}
"#
    )
}

impl TestGateway {
    pub async fn start(config: &str) -> Self {
        Self::start_adjusted(config, |_| {}).await
    }

    /// Like [`Self::start`], with a last change to the loaded config that
    /// the file cannot express (a test resolver for a cluster, say). A
    /// reload from the file drops the change.
    pub async fn start_adjusted(
        config: &str,
        adjust: impl FnOnce(&mut gateway_config::LoadedConfig),
    ) -> Self {
        let config = with_engine(config);
        let config = config.as_str();
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("gatehouse.toml");
        // Each gateway keeps its state (the key store) in its own temp dir.
        let data_dir = format!("data_dir = \"{}\"", dir.path().join("data").display());
        let config = if config.contains("[storage]") {
            config.replacen("[storage]", &format!("[storage]\n{data_dir}"), 1)
        } else {
            format!("{config}\n[storage]\n{data_dir}\n")
        };
        std::fs::write(&config_path, config).unwrap();
        let mut loaded = gateway_config::load_file(&config_path).unwrap();
        adjust(&mut loaded);
        let running = gateway_proxy::start(
            loaded,
            StartOptions {
                config_path: Some(config_path.clone()),
                admin_token: Some(TOKEN.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        Self {
            addr: running.listeners[0],
            admin: running.admin,
            running: Some(running),
            config_path,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub fn gateway(&self) -> &gateway_proxy::Gateway {
        &self.running.as_ref().unwrap().gateway
    }

    pub async fn shutdown(&mut self, grace: Duration) -> bool {
        self.running.take().unwrap().shutdown(grace).await
    }

    /// GET an admin endpoint with the token; returns the JSON body.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        client()
            .get(self.admin_url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        client()
            .get(self.admin_url("/metrics"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Creates a key through the admin API (`body` as `POST /v1/keys`
    /// takes it); returns the answer: `{key, secret}`.
    pub async fn create_key(&self, body: serde_json::Value) -> serde_json::Value {
        let res = client()
            .post(self.admin_url("/v1/keys"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        res.json().await.unwrap()
    }
}

/// `config` with its access log written to `path` (as JSON lines).
pub fn with_access_log(config: &str, path: &std::path::Path) -> String {
    config.replace(
        "access_log = \"off\"",
        &format!("access_log = \"{}\"", path.display()),
    )
}

/// The HTTP/1.1 engine every test gateway runs: `GATEHOUSE_TEST_HTTP1_ENGINE`
/// (`native` or `hyper`) when set, so the whole suite runs on either;
/// otherwise the config's default. A test that sets `http1_engine` itself
/// keeps its choice.
fn with_engine(config: &str) -> String {
    let Ok(engine) = std::env::var("GATEHOUSE_TEST_HTTP1_ENGINE") else {
        return config.to_string();
    };
    if config.contains("http1_engine") {
        return config.to_string();
    }
    let line = format!("http1_engine = \"{engine}\"");
    if config.contains("[gateway]") {
        config.replacen("[gateway]", &format!("[gateway]\n{line}"), 1)
    } else {
        format!("[gateway]\n{line}\n{config}")
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A complete origin response body.
pub fn body(bytes: impl Into<bytes::Bytes>) -> test_support::origin::OriginBody {
    use http_body_util::BodyExt;
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A JSON response for an origin handler.
pub fn reply(status: u16, body_text: impl Into<bytes::Bytes>) -> test_support::origin::Reply {
    test_support::origin::Reply::Response(
        http::Response::builder()
            .status(status)
            .body(body(body_text))
            .unwrap(),
    )
}
