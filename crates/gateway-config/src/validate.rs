//! Cross-field validation. Returns every issue with its key path from the
//! document root; [`crate::locate`] turns paths into lines. Each section
//! owned by a system (`[keys]`, `[plans.*]`, `[cache]`, `[clusters.*]`,
//! a route's `auth` and `cache`, `[[dark_launches]]`) validates itself
//! with paths relative to its table; this module prefixes them.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use gateway_core::config_issue::{nested, ConfigIssue};
use http::{HeaderName, HeaderValue, Method};

use crate::model::{
    Config, HeaderRules, PathMatch, RouteConfig, MAX_HEAD_TIMEOUT, MAX_IDLE_TIMEOUT,
    MAX_REQUEST_HEADERS, MAX_SHUTDOWN_GRACE, MAX_WORKERS, MIN_CLIENT_TIMEOUT,
};

pub(crate) fn validate(config: &Config) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    let mut push = |path: String, message: String| issues.push(ConfigIssue::new(path, message));

    if config.listeners.is_empty() {
        push(
            "listeners".into(),
            "at least one listener is required".into(),
        );
    }
    let mut names = HashMap::new();
    let mut binds = HashMap::new();
    for (i, l) in config.listeners.iter().enumerate() {
        if let Some(prev) = names.insert(l.name.clone(), i) {
            push(
                format!("listeners[{i}].name"),
                format!(
                    "listener name `{}` is already used by listeners[{prev}]",
                    l.name
                ),
            );
        }
        if let Some(tls) = &l.tls {
            if tls.client_auth.is_some() && tls.client_ca.is_none() {
                push(
                    format!("listeners[{i}].tls.client_auth"),
                    "needs `client_ca`, the CAs that sign client certificates".into(),
                );
            }
        }
        // Port 0 asks the OS for a free port, so it never collides.
        if l.bind.port() == 0 {
            continue;
        }
        if let Some(prev) = binds.insert(l.bind, i) {
            push(
                format!("listeners[{i}].bind"),
                format!("address {} is already bound by listeners[{prev}]", l.bind),
            );
        }
        if l.bind == config.admin.bind {
            push(
                format!("listeners[{i}].bind"),
                format!("address {} is also the admin listener's address", l.bind),
            );
        }
    }
    if let Some(c) = &config.admin.fx_cluster {
        if !config.clusters.contains_key(c) {
            push("admin.fx_cluster".into(), format!("no cluster named `{c}`"));
        }
    }
    if config.admin.viewer_token.is_some() && config.admin.viewer_token == config.admin.token {
        // The same token cannot mean both "everything" and "read only".
        push(
            "admin.viewer_token".into(),
            "must differ from `admin.token`".into(),
        );
    }
    if let Some(url) = &config.storage.database_url {
        if !["postgres://", "postgresql://", "sqlite:"]
            .iter()
            .any(|p| url.starts_with(p))
        {
            push(
                "storage.database_url".into(),
                "must start with postgres://, postgresql:// or sqlite:".into(),
            );
        }
    }
    if let Some(url) = &config.storage.redis_url {
        if !url.starts_with("redis://") && !url.starts_with("rediss://") {
            push(
                "storage.redis_url".into(),
                "must start with redis:// or rediss://".into(),
            );
        }
    }
    if config.storage.redis_timeout.is_zero() {
        push(
            "storage.redis_timeout".into(),
            "must be greater than zero".into(),
        );
    }
    if config.storage.database_timeout.is_zero() {
        push(
            "storage.database_timeout".into(),
            "must be greater than zero".into(),
        );
    }
    if !(0..=19).contains(&config.gateway.shadow_nice) {
        push(
            "gateway.shadow_nice".into(),
            format!(
                "must be between 0 and 19 (got {}): a gateway cannot give shadow traffic a higher priority than live traffic",
                config.gateway.shadow_nice
            ),
        );
    }
    if config.gateway.max_in_flight == 0 {
        push("gateway.max_in_flight".into(), "must be at least 1".into());
    }
    let g = &config.gateway;
    for (key, value, max) in [
        ("first_byte_timeout", g.first_byte_timeout, MAX_HEAD_TIMEOUT),
        (
            "header_read_timeout",
            g.header_read_timeout,
            MAX_HEAD_TIMEOUT,
        ),
        ("idle_timeout", g.idle_timeout, MAX_IDLE_TIMEOUT),
    ] {
        if let Some(message) = check_between(value, MIN_CLIENT_TIMEOUT, max) {
            push(format!("gateway.{key}"), message);
        }
    }
    if !(256..=64 * 1024).contains(&g.max_request_line.bytes()) {
        push(
            "gateway.max_request_line".into(),
            format!(
                "must be between 256 B and 64 KiB (got {} bytes)",
                g.max_request_line.bytes()
            ),
        );
    }
    if !(1024..=1024 * 1024).contains(&g.max_request_head.bytes()) {
        push(
            "gateway.max_request_head".into(),
            format!(
                "must be between 1 KiB and 1 MiB (got {} bytes)",
                g.max_request_head.bytes()
            ),
        );
    } else if g.max_request_head.bytes() < g.max_request_line.bytes() {
        push(
            "gateway.max_request_head".into(),
            format!(
                "must be at least gateway.max_request_line ({} < {} bytes)",
                g.max_request_head.bytes(),
                g.max_request_line.bytes()
            ),
        );
    }
    if let Some(n) = g.workers {
        if !(1..=MAX_WORKERS).contains(&n) {
            push(
                "gateway.workers".into(),
                format!("must be between 1 and {MAX_WORKERS} (got {n})"),
            );
        }
    }
    if !(1..=MAX_REQUEST_HEADERS).contains(&g.max_request_headers) {
        push(
            "gateway.max_request_headers".into(),
            format!(
                "must be between 1 and {MAX_REQUEST_HEADERS} (got {})",
                g.max_request_headers
            ),
        );
    }
    if g.shutdown_grace > MAX_SHUTDOWN_GRACE {
        push(
            "gateway.shutdown_grace".into(),
            format!(
                "must be at most {} (got {})",
                humantime::format_duration(MAX_SHUTDOWN_GRACE),
                humantime::format_duration(g.shutdown_grace)
            ),
        );
    }
    if g.max_connections == Some(0) {
        push(
            "gateway.max_connections".into(),
            "must be at least 1".into(),
        );
    }
    match (g.max_connections_per_client, g.max_connections) {
        (Some(0), _) => push(
            "gateway.max_connections_per_client".into(),
            "must be at least 1".into(),
        ),
        (Some(per), Some(all)) if per > all => push(
            "gateway.max_connections_per_client".into(),
            format!("must not exceed gateway.max_connections ({per} > {all})"),
        ),
        _ => {}
    }

    for e in crate::cidr_issues("gateway.trusted_proxies", &g.trusted_proxies) {
        push(e.path, e.message);
    }

    let mut sections = nested("ip_rules", config.ip_rules.validate());
    sections.extend(nested(
        "keys",
        config.keys.validate_with_plans(&config.plans),
    ));
    for (name, plan) in &config.plans {
        sections.extend(nested(&format!("plans.{name}"), plan.validate()));
    }
    sections.extend(nested("cache", config.cache.validate()));
    if let Some(otlp) = &config.telemetry.otlp {
        sections.extend(nested("telemetry.otlp", otlp.validate()));
    }
    for e in sections {
        push(e.path, e.message);
    }
    for (name, cluster) in &config.clusters {
        if !is_identifier(name) {
            push(
                format!("clusters.{name}"),
                "cluster names may only contain letters, digits, `-` and `_`".into(),
            );
        }
        for e in nested(&format!("clusters.{name}"), cluster.validate()) {
            push(e.path, e.message);
        }
    }

    let mut route_names: HashMap<&str, usize> = HashMap::new();
    let mut signatures: HashMap<RouteSignature, usize> = HashMap::new();
    for (i, route) in config.routes.iter().enumerate() {
        let at = |key: &str| format!("routes[{i}].{key}");
        if !is_identifier(&route.name.replace('.', "_")) {
            push(
                at("name"),
                "route names may only contain letters, digits, `.`, `-` and `_`".into(),
            );
        }
        if let Some(prev) = route_names.insert(route.name.as_str(), i) {
            push(
                at("name"),
                format!(
                    "route name `{}` is already used by routes[{prev}]",
                    route.name
                ),
            );
        }
        if !config.clusters.contains_key(&route.cluster) {
            let known: Vec<&str> = config.clusters.keys().map(String::as_str).collect();
            push(
                at("cluster"),
                format!(
                    "no cluster named `{}` (defined clusters: {})",
                    route.cluster,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        let given = [
            route.path.is_some(),
            route.path_prefix.is_some(),
            route.path_template.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given > 1 {
            push(
                at("path"),
                "give at most one of `path`, `path_prefix` and `path_template`".into(),
            );
        }
        let mut template_params = BTreeSet::new();
        for (key, value) in [
            ("path", &route.path),
            ("path_prefix", &route.path_prefix),
            ("strip_prefix", &route.strip_prefix),
            ("rewrite", &route.rewrite),
        ] {
            if let Some(v) = value {
                if !v.starts_with('/') {
                    push(at(key), format!("`{v}` must start with `/`"));
                }
            }
        }
        if let Some(t) = &route.path_template {
            match parse_template_params(t) {
                Ok(params) => template_params = params,
                Err(e) => push(at("path_template"), e),
            }
        }
        if let Some(rewrite) = &route.rewrite {
            for param in placeholders(rewrite) {
                if !template_params.contains(&param) {
                    push(
                        at("rewrite"),
                        format!("`{{{param}}}` is not a parameter of this route's path_template"),
                    );
                }
            }
        }
        if let (Some(strip), PathMatch::Prefix(prefix)) = (&route.strip_prefix, route.path_match())
        {
            if !prefix.starts_with(strip.as_str()) {
                push(
                    at("strip_prefix"),
                    format!("`{strip}` is not a prefix of the route's path_prefix `{prefix}`"),
                );
            }
        }
        for (j, m) in route.methods.iter().enumerate() {
            if Method::from_bytes(m.as_bytes()).is_err() || m.to_ascii_uppercase() != *m {
                push(
                    format!("routes[{i}].methods[{j}]"),
                    format!("`{m}` is not an HTTP method (write methods in upper case, e.g. GET)"),
                );
            }
        }
        for (j, h) in route.hosts.iter().enumerate() {
            if let Err(e) = check_host(h) {
                push(format!("routes[{i}].hosts[{j}]"), e);
            }
        }
        for (name, value) in &route.headers {
            check_header(
                &mut push,
                &at(&format!("headers.{name}")),
                name,
                Some(value),
            );
        }
        check_rules(&mut push, &at("request_headers"), &route.request_headers);
        check_rules(&mut push, &at("response_headers"), &route.response_headers);
        let listener_asks_for_certs = config
            .listeners
            .iter()
            .any(|l| l.tls.as_ref().is_some_and(|t| t.client_ca.is_some()));
        if let Some(auth) = &route.auth {
            for e in nested(&at("auth"), auth.validate()) {
                push(e.path, e.message);
            }
            if auth
                .methods
                .contains(&gateway_keys::config::AuthMethodKind::ClientCert)
                && !listener_asks_for_certs
            {
                push(
                    format!("{}.methods", at("auth")),
                    "`client_cert` needs a listener that asks for client certificates: set \
                     `tls.client_ca` on a listener"
                        .into(),
                );
            }
        }
        if let Some(rules) = &route.ip_rules {
            for e in nested(&at("ip_rules"), rules.validate()) {
                push(e.path, e.message);
            }
        }
        if let Some(rule) = &route.client_cert {
            for e in nested(&at("client_cert"), rule.validate()) {
                push(e.path, e.message);
            }
            if !listener_asks_for_certs {
                push(
                    at("client_cert"),
                    "no listener asks for client certificates: set `tls.client_ca` on a listener"
                        .into(),
                );
            }
        }
        if let Some(cors) = &route.cors {
            for e in nested(&at("cors"), cors.validate()) {
                push(e.path, e.message);
            }
        }
        if let Some(cache) = &route.cache {
            for e in nested(&at("cache"), cache.validate()) {
                push(e.path, e.message);
            }
        }
        if route.timeout.is_zero() {
            push(at("timeout"), "must be greater than zero".into());
        }
        if route.max_body.bytes() == 0 {
            push(at("max_body"), "must be greater than zero".into());
        }
        if let Some(prev) = signatures.insert(RouteSignature::of(route), i) {
            push(
                at("name"),
                format!(
                    "route `{}` matches exactly the same requests as routes[{prev}] (`{}`)",
                    route.name, config.routes[prev].name
                ),
            );
        }
    }
    let mut launch_names = HashMap::new();
    for (i, launch) in config.dark_launches.iter().enumerate() {
        let at = |key: &str| format!("dark_launches[{i}].{key}");
        for e in nested(&format!("dark_launches[{i}]"), launch.validate()) {
            push(e.path, e.message);
        }
        if let Some(prev) = launch_names.insert(launch.name.as_str(), i) {
            push(
                at("name"),
                format!(
                    "launch name `{}` is already used by dark_launches[{prev}]",
                    launch.name
                ),
            );
        }
        for (j, r) in launch.routes.iter().enumerate() {
            if !route_names.contains_key(r.as_str()) {
                push(
                    format!("dark_launches[{i}].routes[{j}]"),
                    format!("no route named `{r}`"),
                );
            }
        }
        for (key, cluster) in [
            ("candidate", Some(&launch.candidate)),
            ("secondary", launch.secondary.as_ref()),
        ] {
            if let Some(c) = cluster {
                if !config.clusters.contains_key(c) {
                    push(at(key), format!("no cluster named `{c}`"));
                }
            }
        }
    }
    issues
}

/// `None` when `min <= value <= max`, else what is wrong with it.
fn check_between(value: Duration, min: Duration, max: Duration) -> Option<String> {
    let show = |d: Duration| humantime::format_duration(d).to_string();
    if value < min {
        Some(format!(
            "must be at least {} (got {}): shorter deadlines cut off ordinary clients",
            show(min),
            show(value)
        ))
    } else if value > max {
        Some(format!(
            "must be at most {} (got {})",
            show(max),
            show(value)
        ))
    } else {
        None
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn check_host(host: &str) -> Result<(), String> {
    let bare = host.strip_prefix("*.").unwrap_or(host);
    let ok = !bare.is_empty()
        && bare.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{host}` is not a host name (exact like `api.example.com`, or `*.example.com`)"
        ))
    }
}

fn check_header(
    push: &mut impl FnMut(String, String),
    path: &str,
    name: &str,
    value: Option<&String>,
) {
    if HeaderName::from_bytes(name.as_bytes()).is_err() {
        push(
            path.to_string(),
            format!("`{name}` is not a valid header name"),
        );
    }
    if let Some(v) = value {
        if HeaderValue::from_str(v).is_err() {
            push(
                path.to_string(),
                format!("`{v}` is not a valid header value"),
            );
        }
    }
}

fn check_rules(push: &mut impl FnMut(String, String), path: &str, rules: &HeaderRules) {
    for (name, value) in &rules.add {
        check_header(push, &format!("{path}.add.{name}"), name, Some(value));
    }
    for (name, value) in &rules.set {
        check_header(push, &format!("{path}.set.{name}"), name, Some(value));
    }
    for (j, name) in rules.remove.iter().enumerate() {
        check_header(push, &format!("{path}.remove[{j}]"), name, None);
    }
}

/// Names of `{param}` placeholders in `s` (a `{*rest}` yields `*rest`).
fn placeholders(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push(rest[open + 1..open + close].to_string());
        rest = &rest[open + close + 1..];
    }
    out
}

/// Checks a path template and returns its parameter names.
pub(crate) fn parse_template_params(t: &str) -> Result<BTreeSet<String>, String> {
    if !t.starts_with('/') {
        return Err(format!("`{t}` must start with `/`"));
    }
    let segments: Vec<&str> = t[1..].split('/').collect();
    let mut params = BTreeSet::new();
    for (i, seg) in segments.iter().enumerate() {
        let is_param = seg.starts_with('{') && seg.ends_with('}');
        if !is_param {
            if seg.contains('{') || seg.contains('}') {
                return Err(format!(
                    "segment `{seg}` of `{t}`: a parameter must be a whole segment, like `{{id}}`"
                ));
            }
            continue;
        }
        let name = &seg[1..seg.len() - 1];
        let bare = name.strip_prefix('*').unwrap_or(name);
        if bare.is_empty() || !bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`{seg}` in `{t}` is not a valid parameter name"));
        }
        if name.starts_with('*') && i + 1 != segments.len() {
            return Err(format!("`{seg}` in `{t}` must be the last segment"));
        }
        if !params.insert(name.to_string()) {
            return Err(format!("parameter `{seg}` appears twice in `{t}`"));
        }
    }
    Ok(params)
}

/// What a route matches; two routes with the same signature are duplicates.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RouteSignature {
    hosts: BTreeSet<String>,
    path: PathMatch,
    methods: BTreeSet<String>,
    headers: Vec<(String, String)>,
}

impl RouteSignature {
    fn of(route: &RouteConfig) -> Self {
        Self {
            hosts: route.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            path: route.path_match(),
            methods: route.methods.iter().cloned().collect(),
            headers: route
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
        }
    }
}
