//! A runnable dark launch on loopback: a primary and a candidate that drifts
//! on one field and is a little slower, 400 mirrored requests, then the
//! report as `gatehouse shadow report` prints it.
//!
//! `cargo run -p gateway-mirror --example demo`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use bytes::Bytes;
use gateway_mirror::{
    render_text, EngineOptions, HttpShadowClient, LaunchConfig, MirrorEngine, ShadowClient,
    ShadowRequest,
};

async fn serve(candidate: bool) -> anyhow::Result<String> {
    let calls = Arc::new(AtomicU64::new(0));
    let app = Router::new().fallback(move |req: Request| {
        let calls = calls.clone();
        async move {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            let id: u64 = req
                .uri()
                .path()
                .rsplit('/')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let mut jpy = 160.25 + id as f64 / 100.0;
            if candidate {
                tokio::time::sleep(Duration::from_millis(3)).await;
                if id % 25 == 0 {
                    jpy += 0.5;
                }
            }
            axum::Json(serde_json::json!({
                "base": "EUR",
                "rates": { "JPY": jpy, "USD": 1.08 },
                "generated_at": format!("2026-11-23T12:00:00.{n:06}Z"),
            }))
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", l.local_addr()?);
    tokio::spawn(async move { axum::serve(l, app).await });
    Ok(url)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let primary = serve(false).await?;
    let candidate = serve(true).await?;
    let client = HttpShadowClient::new()
        .with_cluster("fx-v1", &primary)
        .map_err(anyhow::Error::msg)?
        .with_cluster("fx-v2", &candidate)
        .map_err(anyhow::Error::msg)?;
    let mut launch = LaunchConfig::new("rates-v2", &["rates"], "fx-v2");
    launch.max_rps = 10_000;
    let engine = MirrorEngine::start(
        vec![launch],
        Arc::new(client.clone()),
        None,
        EngineOptions::default(),
    )
    .await?;
    for i in 0..400u64 {
        let (parts, ()) = http::Request::get(format!("/v1/rates/{}", i % 40))
            .header("authorization", "Bearer live-key")
            .body(())?
            .into_parts();
        let plan = engine.plan("rates", &parts, &format!("req-{i}"), None);
        let primary = client
            .send(
                "fx-v1",
                ShadowRequest {
                    method: parts.method.clone(),
                    uri: parts.uri.clone(),
                    headers: parts.headers.clone(),
                    body: Bytes::new(),
                    timeout: Duration::from_secs(5),
                    max_body_bytes: 1 << 20,
                },
            )
            .await;
        if let Some(plan) = plan {
            let _ = plan.submit(Bytes::new(), primary);
        }
    }
    engine.idle().await;
    print!("{}", render_text(&engine.report("rates-v2")?));
    Ok(())
}
