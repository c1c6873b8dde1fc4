//! The route table: which route a request belongs to.
//!
//! Routes are compiled from config into matchers and sorted once by
//! specificity, so a lookup is a scan that stops at the first match.
//!
//! **Precedence** (most specific wins; documented in `docs/config.md`):
//! 1. host: an exact host beats a wildcard (`*.example.com`), a longer
//!    wildcard suffix beats a shorter one, and any wildcard beats a route
//!    with no hosts;
//! 2. path: an exact path beats a template, a template beats a prefix;
//!    among templates, more literal segments win, then more segments; among
//!    prefixes, the longer prefix wins;
//! 3. a route that lists methods beats one that matches any method;
//! 4. a route with more header conditions wins;
//! 5. otherwise, the route written first in the file wins.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gateway_config::{HeaderRules, PathMatch, RouteAuthConfig, RouteConfig};
use gateway_keys::auth::PreparedAuth;

use crate::cidr::IpRules;
use crate::cors::Cors;
use crate::headers::AddedFields;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    /// The route's name (unique).
    pub name: Arc<str>,
    /// The cluster requests are sent to.
    pub cluster: Arc<str>,
    /// The route's tags.
    pub tags: Vec<String>,
    /// The path the route matches as a template (`/v1/fx/{*rest}`, or
    /// `/api/*` for a prefix): a trace's `http.route`.
    pub http_route: Arc<str>,
    path: PathMatcher,
    methods: Vec<Method>,
    headers: Vec<(HeaderName, HeaderValue)>,
    strip_prefix: Option<String>,
    rewrite: Option<String>,
    /// Whether the client's `Host` goes upstream.
    pub preserve_host: bool,
    /// Time to wait for upstream response headers.
    pub timeout: Duration,
    /// Largest accepted request body.
    pub max_body: u64,
    /// Request header changes.
    pub request_headers: CompiledRules,
    /// Response header changes.
    pub response_headers: CompiledRules,
    /// Response caching, when the route enables it.
    pub cache: Option<Arc<gateway_config::RouteCacheConfig>>,
    /// Authentication, when the route requires it: prepared by the build
    /// step (see [`auth_config`]), so no file is read and nothing is
    /// looked up by name on the request path.
    pub auth: Option<PreparedAuth>,
    /// Client addresses allowed and denied on this route, prepared.
    pub ip_rules: Option<Arc<IpRules>>,
    /// Cross-origin policy, prepared.
    pub cors: Option<Arc<Cors>>,
    /// Required client certificate (mutual TLS).
    pub client_cert: Option<gateway_config::RouteClientCertConfig>,
    /// Whether `auth` takes the client certificate as a credential: its
    /// names then go to the authentication stage.
    pub auth_by_cert: bool,
    /// This route's request count and latency metrics.
    pub metrics: crate::telemetry::RequestMetrics,
    /// The console history's series for this route and its cluster.
    pub history: gateway_console::SeriesCache,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    Exact(String),
    /// The suffix including its leading dot: `.example.com`.
    Wildcard(String),
}

impl HostMatch {
    fn parse(s: &str) -> Self {
        let s = s.to_ascii_lowercase();
        match s.strip_prefix('*') {
            Some(suffix) => HostMatch::Wildcard(suffix.to_string()),
            None => HostMatch::Exact(s),
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(h) => h.eq_ignore_ascii_case(host),
            HostMatch::Wildcard(suffix) => {
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }

    fn rank(&self) -> (u8, usize) {
        match self {
            HostMatch::Exact(_) => (2, 0),
            HostMatch::Wildcard(s) => (1, s.len()),
            HostMatch::Any => (0, 0),
        }
    }
}

#[derive(Debug)]
enum PathMatcher {
    Exact(String),
    Prefix(String),
    Template(Vec<TemplateSegment>),
}

#[derive(Debug)]
enum TemplateSegment {
    Literal(String),
    Param(String),
    Rest(String),
}

impl PathMatcher {
    fn compile(m: PathMatch) -> Self {
        match m {
            PathMatch::Exact(p) => PathMatcher::Exact(p),
            PathMatch::Prefix(p) => PathMatcher::Prefix(p.trim_end_matches('/').to_string()),
            PathMatch::Template(t) => PathMatcher::Template(
                t.trim_start_matches('/')
                    .split('/')
                    .map(|seg| {
                        if let Some(name) = seg
                            .strip_prefix("{")
                            .and_then(|s| s.strip_suffix("}"))
                            .filter(|n| n.starts_with("*"))
                        {
                            // Kept with its `*`, as `rewrite` writes it: `{*rest}`.
                            TemplateSegment::Rest(name.to_string())
                        } else if let Some(name) =
                            seg.strip_prefix('{').and_then(|s| s.strip_suffix('}'))
                        {
                            TemplateSegment::Param(name.to_string())
                        } else {
                            TemplateSegment::Literal(seg.to_string())
                        }
                    })
                    .collect(),
            ),
        }
    }

    /// Path precedence: (kind, literal segments, length).
    fn rank(&self) -> (u8, usize, usize) {
        match self {
            PathMatcher::Exact(p) => (3, 0, p.len()),
            PathMatcher::Template(segs) => {
                let literals = segs
                    .iter()
                    .filter(|s| matches!(s, TemplateSegment::Literal(_)))
                    .count();
                (2, literals, segs.len())
            }
            PathMatcher::Prefix(p) => (1, 0, p.len()),
        }
    }

    fn matches(&self, path: &str, params: &mut Vec<(String, String)>) -> bool {
        match self {
            PathMatcher::Exact(p) => p == path,
            PathMatcher::Prefix(p) => {
                // Segment boundary: `/api` matches `/api`, `/api/`, `/api/x`, not `/apix`.
                p.is_empty()
                    || (path.starts_with(p.as_str())
                        && matches!(path.as_bytes().get(p.len()), None | Some(b'/')))
            }
            PathMatcher::Template(segs) => {
                let mut rest = path.strip_prefix('/').unwrap_or(path);
                for (i, seg) in segs.iter().enumerate() {
                    if let TemplateSegment::Rest(name) = seg {
                        params.push((name.clone(), rest.to_string()));
                        return true;
                    }
                    let (head, tail) = match rest.find('/') {
                        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                        None => (rest, None),
                    };
                    match seg {
                        TemplateSegment::Literal(l) if l == head => {}
                        TemplateSegment::Param(name) if !head.is_empty() => {
                            params.push((name.clone(), head.to_string()));
                        }
                        _ => return false,
                    }
                    match tail {
                        Some(t) => rest = t,
                        None => {
                            // The path ended: only a trailing `{*rest}` may remain.
                            return segs[i + 1..]
                                .iter()
                                .all(|s| matches!(s, TemplateSegment::Rest(_)))
                                && {
                                    if let Some(TemplateSegment::Rest(name)) = segs.get(i + 1) {
                                        params.push((name.clone(), String::new()));
                                    }
                                    true
                                };
                        }
                    }
                }
                false
            }
        }
    }
}

/// Header rules compiled to typed names and values.
#[derive(Debug, Default)]
pub struct CompiledRules {
    add: Vec<(HeaderName, HeaderValue)>,
    set: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
    /// The gateway's own fields these rules leave in place.
    added: AddedFields,
}

impl CompiledRules {
    fn compile(rules: &HeaderRules) -> Self {
        let pair = |(k, v): (&String, &String)| {
            Some((
                HeaderName::from_bytes(k.as_bytes()).ok()?,
                HeaderValue::from_str(v).ok()?,
            ))
        };
        let set: Vec<_> = rules.set.iter().filter_map(pair).collect();
        let remove: Vec<_> = rules
            .remove
            .iter()
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        Self {
            add: rules.add.iter().filter_map(pair).collect(),
            added: AddedFields::except(remove.iter().chain(set.iter().map(|(name, _)| name))),
            set,
            remove,
        }
    }

    /// Which of the gateway's own fields (forwarding, request id, trace
    /// context) an upstream request needs before these rules apply.
    pub fn added_fields(&self) -> AddedFields {
        self.added
    }

    /// Applies remove, then set, then add.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// What the build step prepared for one route besides its authentication:
/// nothing here is parsed on the request path.
#[derive(Debug, Default, Clone)]
pub struct RouteControls {
    /// The route's `ip_rules`; `None` when absent or empty.
    pub ip_rules: Option<Arc<IpRules>>,
    /// The route's `cors`.
    pub cors: Option<Arc<Cors>>,
}

/// A successful route lookup.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// The matched route.
    pub route: Arc<Route>,
    /// Template parameters captured from the path.
    pub params: Vec<(String, String)>,
}

impl Route {
    fn compile(cfg: &RouteConfig, auth: Option<PreparedAuth>, controls: RouteControls) -> Self {
        let name: Arc<str> = cfg.name.as_str().into();
        Self {
            metrics: crate::telemetry::RequestMetrics::new(Some(name.clone())),
            history: gateway_console::SeriesCache::default(),
            name,
            cluster: cfg.cluster.as_str().into(),
            tags: cfg.tags.clone(),
            http_route: match cfg.path_match() {
                PathMatch::Exact(p) | PathMatch::Template(p) => p.into(),
                PathMatch::Prefix(p) => format!("{}/*", p.trim_end_matches('/')).into(),
            },
            path: PathMatcher::compile(cfg.path_match()),
            methods: cfg
                .methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            headers: cfg
                .headers
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        HeaderName::from_bytes(k.as_bytes()).ok()?,
                        HeaderValue::from_str(v).ok()?,
                    ))
                })
                .collect(),
            strip_prefix: cfg.strip_prefix.clone(),
            rewrite: cfg.rewrite.clone(),
            preserve_host: cfg.preserve_host,
            timeout: cfg.timeout,
            max_body: cfg.max_body.bytes(),
            request_headers: CompiledRules::compile(&cfg.request_headers),
            response_headers: CompiledRules::compile(&cfg.response_headers),
            cache: cfg.cache.clone().filter(|c| c.enabled).map(Arc::new),
            auth,
            ip_rules: controls.ip_rules,
            cors: controls.cors,
            client_cert: cfg.client_cert.clone(),
            auth_by_cert: cfg.auth.as_ref().is_some_and(|a| {
                a.methods
                    .contains(&gateway_keys::config::AuthMethodKind::ClientCert)
            }),
        }
    }

    /// Whether the upstream path can differ from the request path.
    pub fn rewrites_path(&self) -> bool {
        self.rewrite.is_some() || self.strip_prefix.is_some()
    }

    /// The path to send upstream: `rewrite` with parameters filled in, or
    /// the request path with `strip_prefix` removed (never empty).
    pub fn upstream_path(&self, path: &str, params: &[(String, String)]) -> String {
        if let Some(rewrite) = &self.rewrite {
            let mut out = rewrite.clone();
            for (name, value) in params {
                out = out.replace(&format!("{{{name}}}"), value);
            }
            return out;
        }
        if let Some(prefix) = &self.strip_prefix {
            if let Some(rest) = path.strip_prefix(prefix.trim_end_matches('/')) {
                return if rest.starts_with('/') {
                    rest.to_string()
                } else {
                    format!("/{rest}")
                };
            }
        }
        path.to_string()
    }
}

/// A route's authentication settings as they are prepared: the route's
/// own, with its tags added (route tags are scopes keys can be limited to).
pub fn auth_config(cfg: &RouteConfig) -> Option<RouteAuthConfig> {
    let mut auth = cfg.auth.clone()?;
    for tag in &cfg.tags {
        if !auth.tags.contains(tag) {
            auth.tags.push(tag.clone());
        }
    }
    Some(auth)
}

#[derive(Debug)]
struct Entry {
    host: HostMatch,
    route: Arc<Route>,
}

/// All routes, in precedence order.
#[derive(Debug, Default)]
pub struct RouteTable {
    entries: Vec<Entry>,
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    /// Compiles validated route configs; `auth` holds the prepared
    /// authentication of the routes that require it, `controls` the rest
    /// of what the build step prepared, both by route name.
    pub fn new(
        configs: &[RouteConfig],
        auth: &HashMap<String, PreparedAuth>,
        controls: &HashMap<String, RouteControls>,
    ) -> Self {
        let mut entries = Vec::new();
        let mut routes = Vec::new();
        for (order, cfg) in configs.iter().enumerate() {
            let route = Arc::new(Route::compile(
                cfg,
                auth.get(&cfg.name).cloned(),
                controls.get(&cfg.name).cloned().unwrap_or_default(),
            ));
            routes.push(route.clone());
            let hosts: Vec<HostMatch> = if cfg.hosts.is_empty() {
                vec![HostMatch::Any]
            } else {
                cfg.hosts.iter().map(|h| HostMatch::parse(h)).collect()
            };
            for host in hosts {
                entries.push((
                    order,
                    Entry {
                        host,
                        route: route.clone(),
                    },
                ));
            }
        }
        // Stable sort on descending specificity keeps file order for ties.
        entries.sort_by(|(oa, a), (ob, b)| {
            let key = |e: &Entry| {
                (
                    e.host.rank(),
                    e.route.path.rank(),
                    !e.route.methods.is_empty(),
                    e.route.headers.len(),
                )
            };
            key(b).cmp(&key(a)).then(oa.cmp(ob))
        });
        Self {
            entries: entries.into_iter().map(|(_, e)| e).collect(),
            routes,
        }
    }

    /// The routes in file order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The most specific route matching the request, if any.
    pub fn find(
        &self,
        host: &str,
        path: &str,
        method: &Method,
        headers: &HeaderMap,
    ) -> Option<RouteMatch> {
        self.find_with(host, path, Some(method), headers)
    }

    /// The most specific route matching host, path and headers, whatever
    /// its methods: the route a CORS preflight for a method it does not
    /// list is about, so its policy can say so.
    pub fn find_any_method(
        &self,
        host: &str,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<RouteMatch> {
        self.find_with(host, path, None, headers)
    }

    fn find_with(
        &self,
        host: &str,
        path: &str,
        method: Option<&Method>,
        headers: &HeaderMap,
    ) -> Option<RouteMatch> {
        let mut params = Vec::new();
        for entry in &self.entries {
            let route = &entry.route;
            if !entry.host.matches(host) {
                continue;
            }
            if let Some(method) = method {
                if !route.methods.is_empty() && !route.methods.contains(method) {
                    continue;
                }
            }
            if !route
                .headers
                .iter()
                .all(|(name, value)| headers.get_all(name).iter().any(|v| v == value))
            {
                continue;
            }
            params.clear();
            if route.path.matches(path, &mut params) {
                return Some(RouteMatch {
                    route: route.clone(),
                    params,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(src: &str) -> RouteTable {
        let full = format!("[clusters.c]\ntargets = [\"127.0.0.1:1\"]\n{src}");
        let loaded = gateway_config::load_str(&full, "t.toml").unwrap();
        RouteTable::new(&loaded.config.routes, &HashMap::new(), &HashMap::new())
    }

    /// `check(table, [(host, method, path, expected route or "-")])`.
    fn check(t: &RouteTable, cases: &[(&str, &str, &str, &str)]) {
        for (host, method, path, want) in cases {
            let got = t
                .find(host, path, &method.parse().unwrap(), &HeaderMap::new())
                .map(|m| m.route.name.to_string())
                .unwrap_or_else(|| "-".into());
            assert_eq!(&got, want, "{method} {host}{path}");
        }
    }

    #[test]
    fn the_gateway_builds_only_the_fields_a_route_does_not_replace() {
        let rules = |add: &[&str], set: &[&str], remove: &[&str]| {
            let pairs = |names: &[&str]| {
                names
                    .iter()
                    .map(|n| (n.to_string(), "v".to_string()))
                    .collect()
            };
            let cfg = HeaderRules {
                add: pairs(add),
                set: pairs(set),
                remove: remove.iter().map(|n| n.to_string()).collect(),
            };
            CompiledRules::compile(&cfg).added_fields()
        };
        assert_eq!(rules(&[], &[], &[]), AddedFields::ALL);
        assert_eq!(
            rules(&["x-forwarded-for", "traceparent"], &[], &[]),
            AddedFields::ALL,
            "an added value goes beside the gateway's"
        );
        assert_eq!(
            rules(
                &[],
                &["x-forwarded-proto"],
                &["X-Request-Id", "traceparent", "x-other"]
            ),
            AddedFields {
                forwarded_proto: false,
                request_id: false,
                traceparent: false,
                ..AddedFields::ALL
            }
        );
        assert_eq!(
            rules(
                &[],
                &["x-forwarded-host"],
                &["x-forwarded-for", "x-forwarded-proto"]
            ),
            AddedFields {
                forwarded_for: false,
                forwarded_proto: false,
                forwarded_host: false,
                ..AddedFields::ALL
            }
        );
    }

    #[test]
    fn precedence_most_specific_wins() {
        let t = table(
            r#"
[[routes]]
name = "catch-all"
cluster = "c"
[[routes]]
name = "api-prefix"
path_prefix = "/api"
cluster = "c"
[[routes]]
name = "api-v1-prefix"
path_prefix = "/api/v1"
cluster = "c"
[[routes]]
name = "user-template"
path_template = "/api/v1/users/{id}"
cluster = "c"
[[routes]]
name = "user-me"
path = "/api/v1/users/me"
cluster = "c"
[[routes]]
name = "user-post"
path_template = "/api/v1/users/{id}"
methods = ["POST"]
cluster = "c"
[[routes]]
name = "wild-host"
hosts = ["*.example.com"]
path_prefix = "/api"
cluster = "c"
[[routes]]
name = "exact-host"
hosts = ["shop.example.com"]
cluster = "c"
"#,
        );
        check(
            &t,
            &[
                ("any", "GET", "/", "catch-all"),
                ("any", "GET", "/apix", "catch-all"),
                ("any", "GET", "/api", "api-prefix"),
                ("any", "GET", "/api/x", "api-prefix"),
                ("any", "GET", "/api/v1/orders", "api-v1-prefix"),
                ("any", "GET", "/api/v1/users/42", "user-template"),
                ("any", "POST", "/api/v1/users/42", "user-post"),
                ("any", "GET", "/api/v1/users/me", "user-me"),
                ("any", "GET", "/api/v1/users/42/x", "api-v1-prefix"),
                ("eu.example.com", "GET", "/api/v1/users/42", "wild-host"),
                ("EU.Example.COM", "GET", "/api", "wild-host"),
                ("example.com", "GET", "/api", "api-prefix"),
                ("shop.example.com", "GET", "/api", "exact-host"),
            ],
        );
    }

    #[test]
    fn header_conditions_and_no_match() {
        let t = table(
            r#"
[[routes]]
name = "v1"
path_prefix = "/svc"
cluster = "c"
[[routes]]
name = "v2"
path_prefix = "/svc"
headers = { "x-version" = "2" }
cluster = "c"
"#,
        );
        let mut h = HeaderMap::new();
        h.insert("x-version", HeaderValue::from_static("2"));
        let m = t.find("h", "/svc/a", &Method::GET, &h).unwrap();
        assert_eq!(&*m.route.name, "v2");
        let m = t
            .find("h", "/svc/a", &Method::GET, &HeaderMap::new())
            .unwrap();
        assert_eq!(&*m.route.name, "v1");
        assert!(t
            .find("h", "/other", &Method::GET, &HeaderMap::new())
            .is_none());
    }

    #[test]
    fn strip_prefix_and_rewrite() {
        let t = table(
            r#"
[[routes]]
name = "strip"
path_prefix = "/v1/fx"
strip_prefix = "/v1/fx"
cluster = "c"
[[routes]]
name = "rewrite"
path_template = "/users/{id}/files/{*rest}"
rewrite = "/internal/{id}/{*rest}"
cluster = "c"
"#,
        );
        let m = t
            .find("h", "/v1/fx/rates", &Method::GET, &HeaderMap::new())
            .unwrap();
        assert_eq!(m.route.upstream_path("/v1/fx/rates", &m.params), "/rates");
        assert_eq!(m.route.upstream_path("/v1/fx", &m.params), "/");
        let m = t
            .find(
                "h",
                "/users/7/files/a/b.txt",
                &Method::GET,
                &HeaderMap::new(),
            )
            .unwrap();
        assert_eq!(
            m.route.upstream_path("/users/7/files/a/b.txt", &m.params),
            "/internal/7/a/b.txt"
        );
    }
}
