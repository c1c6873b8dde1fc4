use super::*;

const GOOD: &str = r#"
[admin]
bind = "127.0.0.1:9191"
token = "s3cret"

[storage]
database_url = "postgres://app:hunter2@db:5432/gatehouse"

[clusters.fx]
targets = ["127.0.0.1:7001"]

[[routes]]
name = "fx"
path_prefix = "/v1/fx"
strip_prefix = "/v1/fx"
cluster = "fx"
timeout = "5s"
max_body = "1MiB"
"#;

fn check_err(source: &str, expect: &[&str]) {
    let err = load_str(source, "gh.toml").expect_err("config should be rejected");
    let text = err.to_string();
    for needle in expect {
        assert!(
            text.contains(needle),
            "error `{text}` should contain `{needle}`"
        );
    }
}

#[test]
fn good_config_loads_with_defaults() {
    let loaded = load_str(GOOD, "gh.toml").unwrap();
    let c = &loaded.config;
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].bind.to_string(), DEFAULT_LISTEN);
    assert_eq!(c.routes[0].timeout, std::time::Duration::from_secs(5));
    assert_eq!(c.routes[0].max_body.bytes(), 1 << 20);
    assert!(c.routes[0].preserve_host);
    assert_eq!(c.gateway.max_in_flight, DEFAULT_MAX_IN_FLIGHT);
}

#[test]
fn unknown_key_names_line_and_key() {
    let src = GOOD.replace("timeout = \"5s\"", "timeout = \"5s\"\ntimeuot = \"1s\"");
    check_err(
        &src,
        &["gh.toml:18:1: routes[0].timeuot: unknown field `timeuot`"],
    );
}

#[test]
fn bad_duration_names_line() {
    let src = GOOD.replace("timeout = \"5s\"", "timeout = \"5 parsecs\"");
    check_err(
        &src,
        &["gh.toml:17:11: routes[0].timeout:", "expected a duration"],
    );
}

#[test]
fn bad_size_names_line() {
    let src = GOOD.replace("\"1MiB\"", "\"1 furlong\"");
    check_err(
        &src,
        &["gh.toml:18:12: routes[0].max_body:", "unknown unit"],
    );
}

#[test]
fn missing_cluster_names_line_key_and_known_clusters() {
    let src = GOOD.replace("cluster = \"fx\"", "cluster = \"fxx\"");
    check_err(
        &src,
        &["gh.toml:16:1: routes[0].cluster: no cluster named `fxx` (defined clusters: fx)"],
    );
}

#[test]
fn duplicate_routes_are_rejected() {
    let src =
        format!("{GOOD}\n[[routes]]\nname = \"fx2\"\npath_prefix = \"/v1/fx\"\ncluster = \"fx\"\n");
    check_err(
        &src,
        &[
            "gh.toml:21:1: routes[1].name",
            "same requests as routes[0] (`fx`)",
        ],
    );
    let src = format!("{GOOD}\n[[routes]]\nname = \"fx\"\npath = \"/other\"\ncluster = \"fx\"\n");
    check_err(&src, &["routes[1].name: route name `fx` is already used"]);
}

#[test]
fn every_issue_is_reported_at_once() {
    let src = r#"
[clusters.a]
targets = []

[[routes]]
name = "r"
path = "no-slash"
path_prefix = "/x"
methods = ["get"]
hosts = ["bad host"]
cluster = "b"
"#;
    let err = load_str(src, "gh.toml").unwrap_err();
    let paths: Vec<&str> = err.issues().iter().map(|i| i.path.as_str()).collect();
    for want in [
        "routes[0].path",
        "routes[0].methods[0]",
        "routes[0].hosts[0]",
        "routes[0].cluster",
    ] {
        assert!(paths.contains(&want), "missing {want} in {paths:?}");
    }
    assert!(
        paths.iter().any(|p| p.starts_with("clusters.a.")),
        "cluster issues are prefixed: {paths:?}"
    );
    assert!(err.issues().iter().all(|i| i.line > 0), "{err}");
}

#[test]
fn template_and_rewrite_are_checked() {
    let src = GOOD.replace(
        "path_prefix = \"/v1/fx\"\nstrip_prefix = \"/v1/fx\"",
        "path_template = \"/users/{id}/{*rest}\"\nrewrite = \"/u/{uid}\"",
    );
    check_err(&src, &["routes[0].rewrite", "`{uid}` is not a parameter"]);
    let src = GOOD.replace(
        "path_prefix = \"/v1/fx\"\nstrip_prefix = \"/v1/fx\"",
        "path_template = \"/a/{*rest}/b\"",
    );
    check_err(&src, &["must be the last segment"]);
}

#[test]
fn dns_refresh_out_of_range_or_unreadable_names_its_key() {
    let with = |v: &str| {
        GOOD.replace(
            "targets = [\"127.0.0.1:7001\"]",
            &format!("targets = [\"fx.internal:7001\"]\ndns_refresh = {v}"),
        )
    };
    check_err(
        &with("\"100ms\""),
        &["clusters.fx.dns_refresh: must be between 1s and 1h, got 100ms"],
    );
    check_err(&with("\"soon\""), &["clusters.fx.dns_refresh"]);
    assert!(load_str(&with("\"30s\""), "gh.toml").is_ok());
}

#[test]
fn srv_targets_are_checked_under_their_cluster_key() {
    let with = |targets: &str| GOOD.replace("targets = [\"127.0.0.1:7001\"]", targets);
    check_err(
        &with("targets = [\"srv+http://_http._tcp.fx.service.consul:8080\"]\ndns_refresh = \"5s\""),
        &["clusters.fx.targets[0]: `srv+http://_http._tcp.fx.service.consul:8080` has a port"],
    );
    check_err(
        &with("targets = [\"srv+http://fx.service.consul\"]\ndns_refresh = \"5s\""),
        &["clusters.fx.targets[0]: `srv+http://fx.service.consul` does not start with a service label"],
    );
    check_err(
        &with("targets = [\"srv+http://_fx._tcp.service.consul\"]"),
        &["clusters.fx.dns_refresh: required by targets[0]"],
    );
    assert!(load_str(
        &with("targets = [\"srv+https://_fx._tcp.service.consul\"]\ndns_refresh = \"5s\""),
        "gh.toml"
    )
    .is_ok());
}

#[test]
fn syntax_error_names_line() {
    check_err("[[routes]\nname = 1", &["gh.toml:1:"]);
}

#[test]
fn value_of_the_wrong_type_names_its_key() {
    let src = format!("{GOOD}\n[clusters.fx.retry]\nattempts = \"three\"\n");
    check_err(
        &src,
        &["gh.toml:21:12: clusters.fx.retry.attempts: invalid type: string \"three\", expected u32"],
    );
    check_err(
        "[[listeners]]\nbind = 5\n",
        &["gh.toml:2:8: listeners[0].bind: invalid type: integer `5`, expected socket address"],
    );
}

#[test]
fn redacted_json_hides_secrets() {
    let loaded = load_str(GOOD, "gh.toml").unwrap();
    let json = loaded.redacted_json().to_string();
    assert!(!json.contains("s3cret"), "{json}");
    assert!(!json.contains("hunter2"), "{json}");
    assert!(
        json.contains("postgres://app:[redacted]@db:5432/gatehouse"),
        "{json}"
    );
    assert!(json.contains("127.0.0.1:7001"));
}

#[test]
fn otlp_export_is_checked_and_its_headers_never_shown() {
    let src = format!(
        "{GOOD}\n[telemetry.otlp]\nendpoint = \"https://user:pw@otlp.example.com\"\n\
         sample_ratio = 0.25\n[telemetry.otlp.headers]\nx-honeycomb-team = \"hc-key-123\"\n"
    );
    let loaded = load_str(&src, "gh.toml").unwrap();
    let otlp = loaded.config.telemetry.otlp.as_ref().unwrap();
    assert_eq!(otlp.sample_ratio, 0.25);
    let json = loaded.redacted_json().to_string();
    assert!(!json.contains("hc-key-123"), "{json}");
    assert!(!json.contains(":pw@"), "{json}");
    assert!(json.contains("x-honeycomb-team"), "{json}");

    let bad =
        format!("{GOOD}\n[telemetry.otlp]\nendpoint = \"http://c:4318\"\nsample_ratio = 2.0\n");
    let err = load_str(&bad, "gh.toml").unwrap_err().to_string();
    assert!(
        err.contains("telemetry.otlp.sample_ratio: must be between 0.0 and 1.0, got 2"),
        "{err}"
    );
}

#[test]
fn load_file_names_missing_file() {
    let err = load_file(std::path::Path::new("/nonexistent/gh.toml")).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("/nonexistent/gh.toml: cannot read config"));
}

#[test]
fn shipped_examples_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(e) = load_file(&path) {
                panic!("{e}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 2, "examples/ holds the commented configs");
}

#[test]
fn shadow_nice_defaults_to_background_and_is_range_checked() {
    let c = load_str(GOOD, "gh.toml").unwrap().config;
    assert_eq!(c.gateway.shadow_nice, gateway_mirror::DEFAULT_SHADOW_NICE);
    check_err(
        &format!("[gateway]\nshadow_nice = -5\n{GOOD}"),
        &["gateway.shadow_nice", "between 0 and 19 (got -5)"],
    );
    check_err(
        &format!("[gateway]\nshadow_nice = 20\n{GOOD}"),
        &["gateway.shadow_nice", "(got 20)"],
    );
    assert!(c.gateway.shadow_idle, "SCHED_IDLE by default");
    let off = load_str(
        &format!("[gateway]\nshadow_idle = false\n{GOOD}"),
        "gh.toml",
    )
    .unwrap();
    assert!(!off.config.gateway.shadow_idle);
    check_err(
        &format!("[gateway]\nshadow_idle = \"yes\"\n{GOOD}"),
        &["gh.toml:2:", "expected a boolean"],
    );
}

/// A zero or absurd client deadline is refused where it is written: `0s`
/// would close every request whose head arrives in two packets.
#[test]
fn zero_or_absurd_client_timeouts_are_refused_with_their_line() {
    let src = format!(
        "[gateway]\nheader_read_timeout = \"0s\"\nidle_timeout = \"500ms\"\nfirst_byte_timeout = \"2h\"\nshutdown_grace = \"300years\"\nmax_connections = 0\n{GOOD}"
    );
    check_err(
        &src,
        &[
            "gh.toml:2:1: gateway.header_read_timeout: must be at least 1s (got 0s)",
            "gh.toml:3:1: gateway.idle_timeout: must be at least 1s (got 500ms)",
            "gh.toml:4:1: gateway.first_byte_timeout: must be at most 10m (got 2h)",
            "gh.toml:5:1: gateway.shutdown_grace: must be at most 1h",
            "gh.toml:6:1: gateway.max_connections: must be at least 1",
        ],
    );
    let src = format!("[gateway]\nmax_connections = 10\nmax_connections_per_client = 20\n{GOOD}");
    check_err(
        &src,
        &["gh.toml:3:1: gateway.max_connections_per_client: must not exceed gateway.max_connections (20 > 10)"],
    );
    let src = format!("[gateway]\nheader_read_timeout = \"1s\"\nidle_timeout = \"24h\"\n{GOOD}");
    load_str(&src, "gh.toml").expect("the bounds themselves are accepted");
}

/// The HTTP/1.1 engine's switch and limits are checked where they are
/// written; an unknown engine names the two there are.
#[test]
fn http1_engine_and_head_limits_are_validated() {
    let src = format!(
        "[gateway]\nmax_request_line = \"100B\"\nmax_request_head = \"2MiB\"\nmax_request_headers = 0\n{GOOD}"
    );
    check_err(
        &src,
        &[
            "gh.toml:2:1: gateway.max_request_line: must be between 256 B and 64 KiB (got 100 bytes)",
            "gh.toml:3:1: gateway.max_request_head: must be between 1 KiB and 1 MiB (got 2097152 bytes)",
            "gh.toml:4:1: gateway.max_request_headers: must be between 1 and 256 (got 0)",
        ],
    );
    let src =
        format!("[gateway]\nmax_request_line = \"16KiB\"\nmax_request_head = \"8KiB\"\n{GOOD}");
    check_err(
        &src,
        &["gh.toml:3:1: gateway.max_request_head: must be at least gateway.max_request_line (8192 < 16384 bytes)"],
    );
    let err = load_str(
        &format!("[gateway]\nhttp1_engine = \"nginx\"\n{GOOD}"),
        "gh.toml",
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("gh.toml:2:"), "{text}");
    assert!(
        text.contains("`native`") && text.contains("`hyper`"),
        "{text}"
    );
    let loaded = load_str(
        &format!("[gateway]\nhttp1_engine = \"hyper\"\n{GOOD}"),
        "gh.toml",
    )
    .unwrap();
    assert_eq!(
        loaded.config.gateway.http1_engine,
        crate::Http1Engine::Hyper
    );
    let loaded = load_str(GOOD, "gh.toml").unwrap();
    assert_eq!(
        loaded.config.gateway.http1_engine,
        crate::Http1Engine::Native
    );
}

/// `workers` is a count of threads: zero or an absurd number is refused
/// where it is written; absent means one per CPU.
#[test]
fn workers_are_validated() {
    check_err(
        &format!("[gateway]\nworkers = 0\n{GOOD}"),
        &["gh.toml:2:1: gateway.workers: must be between 1 and 1024 (got 0)"],
    );
    check_err(
        &format!("[gateway]\nworkers = 5000\n{GOOD}"),
        &["gh.toml:2:1: gateway.workers: must be between 1 and 1024 (got 5000)"],
    );
    let loaded = load_str(&format!("[gateway]\nworkers = 3\n{GOOD}"), "gh.toml").unwrap();
    assert_eq!(loaded.config.gateway.workers, Some(3));
    assert_eq!(
        load_str(GOOD, "gh.toml").unwrap().config.gateway.workers,
        None
    );
}

#[test]
fn each_section_reports_its_issues_once_under_its_own_path() {
    let source = format!(
        "{GOOD}\n[keys]\ndefault_plan = \"gold\"\n\n[plans.basic]\nrate_per_second = 5\nburst = 0\n\n[cache]\nmax_variants = 0\n"
    );
    let err = load_str(&source, "gh.toml").expect_err("config should be rejected");
    let paths: Vec<&str> = err.issues().iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "keys.default_plan",
            "plans.basic.burst",
            "cache.max_variants"
        ],
        "{err}"
    );
    assert!(err.issues().iter().all(|i| i.line > 0), "{err}");
}

#[test]
fn a_control_character_is_named_with_its_line() {
    // Found by the config fuzz target: the TOML parser reports a control
    // character in a comment with an empty message.
    check_err(
        "[gateway]\n# a comment\u{0} with a NUL\n",
        &["gh.toml:2:12: ", "U+0000", "control character"],
    );
    for src in ["# a\u{1}b\n", "[gateway]\nmax_in_flight = 1 # \u{7f}\n"] {
        let err = load_str(src, "gh.toml").unwrap_err();
        assert!(
            err.issues().iter().all(|i| !i.message.trim().is_empty()),
            "{err:?}"
        );
    }
}

#[test]
fn bad_cidrs_are_named_with_their_line() {
    check_err(
        r#"
[gateway]
trusted_proxies = ["10.0.0.0/8", "lb.internal"]

[ip_rules]
deny = ["192.0.2.1/24"]

[clusters.c]
targets = ["127.0.0.1:7001"]

[[routes]]
name = "r"
cluster = "c"
ip_rules = { allow = ["10.0.0.0/33"] }
"#,
        &[
            "gh.toml:3:34: gateway.trusted_proxies[1]: `lb.internal` is not a CIDR block or an IP address",
            "gh.toml:6:9: ip_rules.deny[0]: `192.0.2.1/24` has host bits set: did you mean `192.0.2.0/24`?",
            "gh.toml:14:23: routes[0].ip_rules.allow[0]: `10.0.0.0/33` is not a CIDR block",
        ],
    );
}

#[test]
fn client_cert_authentication_needs_a_listener_asking_for_certs_and_no_scopes() {
    let route = "auth = { methods = [\"client_cert\"] }\n";
    check_err(
        &format!("{GOOD}{route}"),
        &["routes[0].auth.methods: `client_cert` needs a listener that asks for client certificates"],
    );
    check_err(
        &format!("{GOOD}auth = {{ methods = [\"client_cert\"], required_scopes = [\"fx:read\"] }}\n"),
        &["routes[0].auth.required_scopes: a route with `client_cert` in `methods` cannot require scopes"],
    );
    check_err(
        &format!("{GOOD}auth = {{ methods = [\"client_cert\"], client_cert_consumer = \"ou\" }}\n"),
        &["client_cert_consumer", "unknown variant `ou`"],
    );
    let with_listener = format!(
        "[[listeners]]\nbind = \"127.0.0.1:8443\"\ntls = {{ cert = \"c.pem\", key = \"k.pem\", client_ca = \"ca.pem\" }}\n{GOOD}auth = {{ methods = [\"client_cert\", \"api_key\"], client_cert_consumer = \"san:URI\" }}\n"
    );
    let loaded = load_str(&with_listener, "gh.toml").unwrap();
    let auth = loaded.config.routes[0].auth.as_ref().unwrap();
    assert_eq!(
        auth.client_cert_consumer,
        gateway_keys::config::CertConsumerField::SanUri
    );
}
