//! The deployment kit under `deploy/`: the Grafana dashboard and the
//! Prometheus alert rules name only metrics a gateway exports on
//! `/metrics`, and both files are well formed.

use std::collections::BTreeSet;
use std::time::Duration;

use test_support::origin::{Handler, Origin};

use crate::harness::{base_with, client, TestGateway};

const DASHBOARD: &str = include_str!("../../../../deploy/grafana/gatehouse.json");
const ALERTS: &str = include_str!("../../../../deploy/prometheus/gatehouse-alerts.yaml");

/// The suffixes the Prometheus exporter adds to a histogram's name.
const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];

/// Every `gatehouse_*` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("gatehouse_") {
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..len].trim_end_matches('_').to_string());
        rest = &tail[len..];
    }
    names
}

/// The metric names in a Prometheus text exposition.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// The names in `wanted` that `exported` lacks; a histogram's base name is
/// present when its series (`_bucket`, `_sum`, `_count`) are.
fn missing(wanted: &BTreeSet<String>, exported: &BTreeSet<String>) -> Vec<String> {
    wanted
        .iter()
        .filter(|name| {
            !exported.contains(*name)
                && !HISTOGRAM_SUFFIXES
                    .iter()
                    .any(|s| exported.contains(&format!("{name}{s}")))
        })
        .cloned()
        .collect()
}

#[test]
fn kit_metric_names_are_read_from_queries_and_checked_against_the_exposition() {
    let names = metric_names(
        r#"sum(rate(gatehouse_requests_total{status=~"5.."}[5m])) / histogram_quantile(0.99, gatehouse_request_duration_seconds_bucket)"#,
    );
    assert_eq!(
        names.iter().map(String::as_str).collect::<Vec<_>>(),
        [
            "gatehouse_request_duration_seconds_bucket",
            "gatehouse_requests_total"
        ]
    );
    let exported = exported_names(
        "# TYPE gatehouse_requests_total counter\ngatehouse_requests_total{route=\"a\"} 1\ngatehouse_request_duration_seconds_bucket{le=\"0.1\"} 1\ngatehouse_request_duration_seconds_sum 0.2\n",
    );
    let wanted: BTreeSet<String> = [
        "gatehouse_requests_total",
        "gatehouse_request_duration_seconds",
        "gatehouse_request_duration_seconds_bucket",
        "gatehouse_no_such_metric",
    ]
    .map(String::from)
    .into();
    assert_eq!(missing(&wanted, &exported), ["gatehouse_no_such_metric"]);
}

#[test]
fn dashboard_is_an_importable_grafana_dashboard_on_a_datasource_variable() {
    let dashboard: serde_json::Value =
        serde_json::from_str(DASHBOARD).expect("deploy/grafana/gatehouse.json is JSON");
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a `datasource` variable of type datasource"
    );
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: duplicate id"
        );
        assert!(panel["gridPos"]["w"].is_u64(), "{title}: gridPos");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            assert!(
                !metric_names(expr).is_empty(),
                "{title}: `{expr}` names no metric"
            );
            assert!(balanced(expr), "{title}: unbalanced brackets in `{expr}`");
            queries += 1;
        }
    }
    assert!(queries >= 20, "{queries} queries");
}

/// The alerting rules, as `(name, lines)` of each `- alert:` item.
fn alert_rules(text: &str) -> Vec<(String, Vec<&str>)> {
    let mut rules: Vec<(String, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.trim_start().strip_prefix("- alert: ") {
            rules.push((name.trim().to_string(), Vec::new()));
        } else if line.trim_start().starts_with("- name: ") {
            // A new group ends the previous group's last rule.
            rules.push((String::new(), Vec::new()));
        } else if let Some((_, lines)) = rules.last_mut() {
            lines.push(line);
        }
    }
    rules.retain(|(name, _)| !name.is_empty());
    rules
}

/// The rule's `expr`, inline or as a `|` block of more indented lines.
fn expr(lines: &[&str]) -> String {
    let Some(at) = lines
        .iter()
        .position(|l| l.trim_start().starts_with("expr:"))
    else {
        return String::new();
    };
    let inline = lines[at].trim_start()["expr:".len()..].trim();
    if inline != "|" {
        return inline.to_string();
    }
    let indent = |l: &str| l.len() - l.trim_start().len();
    let key_indent = indent(lines[at]);
    lines[at + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent(l) > key_indent)
        .map(|l| l.trim())
        .collect::<Vec<_>>()
        .join(" ")
}

fn balanced(expr: &str) -> bool {
    let mut open = Vec::new();
    for c in expr.chars() {
        match c {
            '(' | '[' | '{' => open.push(c),
            ')' | ']' | '}' => {
                let want = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if open.pop() != Some(want) {
                    return false;
                }
            }
            _ => {}
        }
    }
    open.is_empty()
}

#[test]
fn alert_rules_each_have_an_expression_a_severity_and_a_summary() {
    assert!(!ALERTS.contains('\t'), "YAML is indented with spaces");
    assert!(ALERTS.lines().any(|l| l == "groups:"));
    let rules = alert_rules(ALERTS);
    assert!(rules.len() >= 8, "{} rules", rules.len());
    let mut names = BTreeSet::new();
    for (name, lines) in &rules {
        assert!(names.insert(name.clone()), "{name}: duplicate alert");
        let expr = expr(lines);
        assert!(!expr.is_empty(), "{name}: no expr");
        assert!(balanced(&expr), "{name}: unbalanced brackets in `{expr}`");
        let has = |key: &str| lines.iter().any(|l| l.trim_start().starts_with(key));
        for key in ["labels:", "severity: ", "annotations:", "summary: "] {
            assert!(has(key), "{name}: no `{key}`");
        }
    }
    for wanted in [
        "GatehouseHigh5xxRatio",
        "GatehouseNoHealthyUpstream",
        "GatehouseCircuitOpen",
        "GatehouseDown",
        "GatehouseStoreDown",
    ] {
        assert!(names.contains(wanted), "{wanted} is missing");
    }
}

/// Starts a gateway with what the dashboard watches (routes with keys and
/// a plan, a cache, a dark launch, a cluster whose only target is down),
/// sends traffic through each, and checks that every metric the dashboard
/// and the alert rules name is on `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_in_the_dashboard_and_alert_rules_is_exported() {
    let origin = Origin::start(
        Handler::fixed(200, &[("cache-control", "max-age=60")], "ok").on_path(
            "/slow",
            Handler::fixed(200, &[], "slow").delay(Duration::from_millis(400)),
        ),
    )
    .await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = TestGateway::start(&base_with(
        "max_in_flight = 10000",
        &format!(
            r#"
[plans.tiny]
rate_per_second = 0.1
burst = 1

[clusters.api]
targets = ["{origin}"]

[clusters.candidate]
targets = ["{origin}"]

[clusters.down]
targets = ["{dead}"]
retry = {{ attempts = 1 }}
passive = {{ consecutive_failures = 1, base_ejection_time = "30s" }}
circuit_breaker = {{ consecutive_failures = 1, open_for = "30s" }}

[[routes]]
name = "keyed"
path_prefix = "/keyed"
cluster = "api"
auth = {{ methods = ["api_key"] }}

[[routes]]
name = "cached"
path_prefix = "/cached"
cluster = "api"
cache = {{}}

[[routes]]
name = "mirrored"
path_prefix = "/mirrored"
cluster = "api"

[[routes]]
name = "slow"
path = "/slow"
cluster = "api"

[[routes]]
name = "down"
path_prefix = "/down"
cluster = "down"

[[dark_launches]]
name = "candidate"
routes = ["mirrored"]
candidate = "candidate"
sample_percent = 100.0
"#,
            origin = origin.authority(),
        ),
    ))
    .await;
    let http = client();
    let status = |res: reqwest::Response| res.status().as_u16();

    // Keys: a refusal, an admitted request, then the plan's limit.
    assert_eq!(
        status(http.get(gw.url("/keyed/a")).send().await.unwrap()),
        401
    );
    let created = gw
        .create_key(serde_json::json!({"owner": "dashboard", "plan": "tiny"}))
        .await;
    let secret = created["secret"].as_str().unwrap();
    let keyed = http.get(gw.url("/keyed/a")).bearer_auth(secret);
    assert_eq!(
        status(keyed.try_clone().unwrap().send().await.unwrap()),
        200
    );
    assert_eq!(status(keyed.send().await.unwrap()), 429);
    // Cache: a miss, then a hit.
    for _ in 0..2 {
        assert_eq!(
            status(http.get(gw.url("/cached/a")).send().await.unwrap()),
            200
        );
    }
    // Dark launch: compared off the request path.
    assert_eq!(
        status(http.get(gw.url("/mirrored/a")).send().await.unwrap()),
        200
    );
    // A dead target: 502, ejected, circuit open.
    assert_eq!(
        status(http.get(gw.url("/down/a")).send().await.unwrap()),
        502
    );
    // A reload that leaves room for one request at a time, then two at once.
    let running = std::fs::read_to_string(&gw.config_path).unwrap();
    let one_at_a_time = running.replace("max_in_flight = 10000", "max_in_flight = 1");
    assert_ne!(running, one_at_a_time);
    std::fs::write(&gw.config_path, one_at_a_time).unwrap();
    gw.gateway().reload_from_file().await.unwrap();
    let (a, b) = tokio::join!(
        http.get(gw.url("/slow")).send(),
        http.get(gw.url("/slow")).send()
    );
    let mut shed = [status(a.unwrap()), status(b.unwrap())];
    shed.sort();
    assert_eq!(shed, [200, 503], "one of two requests is shed");

    let wanted: BTreeSet<String> = metric_names(DASHBOARD)
        .into_iter()
        .chain(metric_names(ALERTS))
        .collect();
    assert!(wanted.len() >= 15, "{wanted:?}");
    // Dark-launch comparisons and store probes happen off the request
    // path: wait for them, within a bound.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let absent = loop {
        let exposition = gw.metrics().await;
        let absent = missing(&wanted, &exported_names(&exposition));
        if absent.is_empty() || tokio::time::Instant::now() > deadline {
            break absent;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        absent.is_empty(),
        "named in deploy/ but not exported on /metrics: {absent:?}"
    );
}
