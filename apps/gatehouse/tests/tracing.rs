//! One trace across the gateway and the fx service it fronts: both export
//! to the same collector, and the fx service's server span is a child of
//! the gateway's upstream attempt.

use std::time::Duration;

use gateway_trace::{OtlpConfig, OtlpProtocol};
use test_support::otlp::{OtlpCollector, KIND_CLIENT, KIND_SERVER};

const TRACE: &str = "5c0ffee5c0ffee5c0ffee5c0ffee5c0f";

#[tokio::test]
async fn a_trace_shows_the_gateway_and_the_fx_service_together() {
    let collector = OtlpCollector::http().await;
    let fx = fx_service::FxService::start(fx_service::FxServiceConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: "sqlite::memory:".into(),
        import_bundled: false,
        otlp: Some(OtlpConfig::new(
            collector.endpoint(),
            OtlpProtocol::HttpProtobuf,
        )),
        ..Default::default()
    })
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("gatehouse.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
[gateway]
watch_config = false

[[listeners]]
bind = "127.0.0.1:0"

[admin]
bind = "127.0.0.1:0"

[telemetry]
access_log = "off"

[telemetry.otlp]
endpoint = "{collector}"

[storage]
data_dir = "{data}"

[clusters.fx]
targets = ["{fx}"]

[[routes]]
name = "fx-contract"
path = "/openapi.json"
cluster = "fx"
"#,
            collector = collector.endpoint(),
            data = dir.path().join("data").display(),
            fx = fx.local_addr(),
        ),
    )
    .unwrap();
    let running = gateway_proxy::start(
        gateway_config::load_file(&config_path).unwrap(),
        gateway_proxy::StartOptions {
            config_path: Some(config_path),
            admin_token: Some("test-admin-token".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    let res = reqwest::Client::new()
        .get(format!("http://{}/openapi.json", running.listeners[0]))
        .header("traceparent", format!("00-{TRACE}-b7ad6b7169203331-01"))
        .send()
        .await
        .unwrap();
    let status = res.status();
    assert_eq!(status, 200, "{}", res.text().await.unwrap());

    let spans = collector
        .wait_until(Duration::from_secs(15), |spans| {
            spans.iter().filter(|s| s.trace_id == TRACE).count() >= 3
        })
        .await;
    let trace: Vec<_> = spans.iter().filter(|s| s.trace_id == TRACE).collect();
    let gateway = trace
        .iter()
        .find(|s| s.service == "gatehouse" && s.kind == KIND_SERVER)
        .unwrap_or_else(|| panic!("the gateway's span: {trace:#?}"));
    let attempt = trace
        .iter()
        .find(|s| s.service == "gatehouse" && s.kind == KIND_CLIENT)
        .unwrap_or_else(|| panic!("the upstream attempt: {trace:#?}"));
    let fx_span = trace
        .iter()
        .find(|s| s.service == "gatehouse-fx")
        .unwrap_or_else(|| panic!("the fx service's span: {trace:#?}"));
    assert_eq!(gateway.parent_span_id, "b7ad6b7169203331");
    assert_eq!(attempt.parent_span_id, gateway.span_id);
    assert_eq!(
        fx_span.parent_span_id, attempt.span_id,
        "the fx service continues the attempt's span"
    );
    assert_eq!(fx_span.kind, KIND_SERVER);
    assert_eq!(fx_span.name, "GET /openapi.json");
    assert_eq!(fx_span.attr("http.route"), Some("/openapi.json"));
    assert_eq!(fx_span.attr("http.response.status_code"), Some("200"));
}
