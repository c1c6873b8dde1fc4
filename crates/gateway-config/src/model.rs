//! The config file's structure. Every field is documented here; this is the
//! reference `docs/config.md` is written from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use gateway_cache::{CacheConfig, RouteCacheConfig};
use gateway_core::ByteSize;
pub use gateway_keys::config::{KeysConfig, PlanConfig, RouteAuthConfig};
pub use gateway_mirror::LaunchConfig;
use gateway_mirror::{DEFAULT_SHADOW_IDLE, DEFAULT_SHADOW_NICE};
pub use gateway_upstream::config::ClusterConfig;
use serde::{Deserialize, Serialize};

/// Default address of the public listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default address of the admin listener.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// Default time to wait for in-flight requests on shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Default cap on requests being served at once before shedding load (503).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;
/// Default per-route time to wait for upstream response headers.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default per-route request body limit.
pub const DEFAULT_MAX_BODY: ByteSize = ByteSize::mib(10);
/// Default time a new client connection may stay silent before its first
/// byte (of the TLS handshake or of the first request).
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a client may take to send request headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default idle time after which a client connection is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Shortest accepted client-side deadline (`first_byte_timeout`,
/// `header_read_timeout`, `idle_timeout`): below it, ordinary clients whose
/// request arrives in more than one packet would be cut off.
pub const MIN_CLIENT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest accepted `first_byte_timeout` and `header_read_timeout`: a
/// connection holding a descriptor longer than this without sending a
/// request is an attack, not a client.
pub const MAX_HEAD_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Longest accepted `idle_timeout`.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// Default longest request line (HTTP/1.1 engine): 414 beyond.
pub const DEFAULT_MAX_REQUEST_LINE: ByteSize = ByteSize::kib(8);
/// Default largest request head (HTTP/1.1 engine): 431 beyond.
pub const DEFAULT_MAX_REQUEST_HEAD: ByteSize = ByteSize::kib(64);
/// Default most header fields in a request (HTTP/1.1 engine): 431 beyond.
pub const DEFAULT_MAX_REQUEST_HEADERS: usize = 100;
/// Most worker threads `workers` may ask for.
pub const MAX_WORKERS: usize = 1024;
/// Most header fields `max_request_headers` may allow.
pub const MAX_REQUEST_HEADERS: usize = 256;
/// Longest accepted `shutdown_grace`.
pub const MAX_SHUTDOWN_GRACE: Duration = Duration::from_secs(60 * 60);

/// The whole config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Process-wide gateway settings.
    #[serde(default)]
    pub gateway: GatewaySettings,
    /// Public listeners. When absent, one plain listener on `127.0.0.1:8080`.
    #[serde(default = "default_listeners")]
    pub listeners: Vec<ListenerConfig>,
    /// The admin API listener.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Logs, metrics and tracing.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Where durable and shared state lives.
    #[serde(default)]
    pub storage: StorageConfig,
    /// API keys: rotation, expiry warnings, IP limits (see `docs/keys.md`).
    #[serde(default)]
    pub keys: KeysConfig,
    /// Rate-limit and quota plans by name, referenced by consumers.
    #[serde(default)]
    pub plans: BTreeMap<String, PlanConfig>,
    /// The shared response cache (see `docs/cache.md`); routes opt in.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Upstream clusters by name (see `docs/upstreams.md`).
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterConfig>,
    /// Client addresses allowed and denied on every route, checked before
    /// routing (see `docs/security.md`).
    #[serde(default)]
    pub ip_rules: crate::IpRulesConfig,
    /// Routes, matched by the precedence in `docs/config.md`.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Dark launches: mirror a share of routes' traffic to a candidate
    /// cluster and compare (see `docs/dark-launch.md`).
    #[serde(default)]
    pub dark_launches: Vec<LaunchConfig>,
}

fn default_listeners() -> Vec<ListenerConfig> {
    vec![ListenerConfig::default()]
}

/// Process-wide gateway settings (`[gateway]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// Requests served at once before new ones are shed with 503.
    pub max_in_flight: usize,
    /// On SIGTERM, how long in-flight requests may take to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Time a new connection may stay silent: its first byte (of the TLS
    /// handshake, and again of the first request after it) must arrive
    /// within this, or it is closed.
    #[serde(with = "humantime_serde")]
    pub first_byte_timeout: Duration,
    /// Time a client may take to send a whole request head, counted from
    /// its first byte (for TLS, the handshake too).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this long
    /// (HTTP/1.1 keep-alive between requests, HTTP/2 with no open stream).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Client connections open at once over all public listeners; a
    /// connection beyond it is closed at once. Absent: derived from the
    /// open-files limit (`ulimit -n`), keeping a margin of descriptors free
    /// for upstream connections, the admin API and stores. Read at start-up.
    pub max_connections: Option<usize>,
    /// Client connections open at once from one IP address (the peer, not
    /// `X-Forwarded-For`). Absent: a quarter of `max_connections`, or all of
    /// it with `trust_forwarded_headers` (every client then arrives through
    /// the load balancer's few addresses). Read at start-up.
    pub max_connections_per_client: Option<usize>,
    /// Whether to trust `X-Forwarded-For` from clients (only behind a trusted
    /// load balancer); otherwise the peer address starts the chain.
    pub trust_forwarded_headers: bool,
    /// Proxies (CIDR blocks or addresses) whose `X-Forwarded-For` is
    /// believed: from a peer in this list, the client address is the
    /// rightmost `X-Forwarded-For` entry that is not itself in the list.
    /// With `trust_forwarded_headers` every peer is believed for one hop.
    pub trusted_proxies: Vec<String>,
    /// Reload the config when the file changes (SIGHUP always reloads).
    pub watch_config: bool,
    /// Nice value (0–19) of the thread that sends and compares dark-launch
    /// traffic: above 0, mirrored requests yield the CPU to live ones and
    /// are dropped (`queue_full`) when it runs short. 0 competes as an
    /// equal. Read at start-up only.
    pub shadow_nice: i32,
    /// Run that thread under `SCHED_IDLE` (Linux): it gets only CPU that
    /// nothing else wants and does not preempt busy workers. `false`: a
    /// normal thread at `shadow_nice`. Read at start-up only.
    pub shadow_idle: bool,
    /// Which HTTP/1.1 implementation serves client connections: the
    /// native engine (`gateway-http1`) or hyper. HTTP/2 is served by
    /// hyper either way. Read at start-up.
    pub http1_engine: Http1Engine,
    /// Longest request line the native engine reads (414 beyond).
    pub max_request_line: ByteSize,
    /// Largest request head the native engine reads, request line
    /// included (431 beyond).
    pub max_request_head: ByteSize,
    /// Most header fields in a request the native engine reads (431
    /// beyond); at most 256.
    pub max_request_headers: usize,
    /// Worker threads serving the public listeners, each with its own
    /// runtime and its own socket per listener (`SO_REUSEPORT`); absent:
    /// one per CPU the process may run on. Read at start-up.
    pub workers: Option<usize>,
}

/// The HTTP/1.1 implementation of the public listeners.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Http1Engine {
    /// `gateway-http1`: strict framing, no connection task per upstream.
    #[default]
    Native,
    /// hyper's HTTP/1.1 server, for comparison.
    Hyper,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            first_byte_timeout: DEFAULT_FIRST_BYTE_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: None,
            max_connections_per_client: None,
            trust_forwarded_headers: false,
            trusted_proxies: Vec::new(),
            watch_config: true,
            shadow_nice: DEFAULT_SHADOW_NICE,
            shadow_idle: DEFAULT_SHADOW_IDLE,
            http1_engine: Http1Engine::default(),
            max_request_line: DEFAULT_MAX_REQUEST_LINE,
            max_request_head: DEFAULT_MAX_REQUEST_HEAD,
            max_request_headers: DEFAULT_MAX_REQUEST_HEADERS,
            workers: None,
        }
    }
}

/// A public listener (`[[listeners]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// A name for logs and metrics.
    #[serde(default = "default_listener_name")]
    pub name: String,
    /// Socket address to bind, e.g. `"0.0.0.0:8443"`.
    #[serde(default = "default_listen")]
    pub bind: SocketAddr,
    /// TLS termination; absent means plain HTTP/1.1 and h2c.
    #[serde(default)]
    pub tls: Option<TlsListenerConfig>,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            name: default_listener_name(),
            bind: default_listen(),
            tls: None,
        }
    }
}

fn default_listener_name() -> String {
    "public".into()
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("valid default address")
}

/// TLS for a listener. HTTP/2 and HTTP/1.1 are offered through ALPN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerConfig {
    /// PEM certificate chain file (relative paths are relative to the config file).
    pub cert: PathBuf,
    /// PEM private key file.
    pub key: PathBuf,
    /// PEM file of the CAs that sign client certificates: with it, the
    /// listener asks clients for a certificate and verifies it (mutual TLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: `"required"` (default) refuses the handshake
    /// without a valid certificate; `"optional"` serves clients without
    /// one (routes with `client_cert` still refuse them).
    #[serde(default)]
    pub client_auth: Option<crate::ClientAuthMode>,
}

/// The admin API (`[admin]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Socket address of the admin listener; keep it private.
    pub bind: SocketAddr,
    /// Bearer token required on every admin endpoint except `/healthz` and
    /// `/readyz`. `GATEHOUSE_ADMIN_TOKEN` overrides it. Without either, the
    /// admin API refuses to start on a non-loopback address.
    pub token: Option<String>,
    /// Read-only bearer token: with it (on the admin API or signed in to
    /// the console) a caller can read everything and change nothing.
    /// `GATEHOUSE_VIEWER_TOKEN` overrides it. Optional.
    pub viewer_token: Option<String>,
    /// The cluster the console's FX page reads rates from (`GET` on the
    /// fx service's public endpoints only). Default: the cluster named
    /// `fx`, when there is one.
    pub fx_cluster: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            bind: DEFAULT_ADMIN_LISTEN.parse().expect("valid default address"),
            token: None,
            viewer_token: None,
            fx_cluster: None,
        }
    }
}

/// Logs, metrics and tracing (`[telemetry]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Where access log lines go: `"stdout"`, `"off"` or a file path.
    pub access_log: String,
    /// `tracing` filter for the process log (`RUST_LOG` overrides it).
    pub log_level: String,
    /// OpenTelemetry trace export (`[telemetry.otlp]`); none by default.
    pub otlp: Option<gateway_trace::OtlpConfig>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            access_log: "stdout".into(),
            log_level: "info".into(),
            otlp: None,
        }
    }
}

/// Where state lives (`[storage]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory for embedded state (the SQLite database).
    pub data_dir: PathBuf,
    /// `postgres://...` for shared durable state; absent means SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// `redis://...` for shared hot state (rate limits, change feeds).
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel, so several gateway fleets can
    /// share one Redis.
    pub redis_prefix: String,
    /// Upper bound on one Redis call on the request path (a rate-limit
    /// decision); past it the node decides locally (see `docs/deployment.md`).
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
    /// How long an admin write waits for a database connection before it
    /// fails with 503.
    #[serde(with = "humantime_serde")]
    pub database_timeout: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("gatehouse-data"),
            database_url: None,
            redis_url: None,
            redis_prefix: "gatehouse:".into(),
            redis_timeout: Duration::from_millis(50),
            database_timeout: Duration::from_secs(2),
        }
    }
}

/// One route (`[[routes]]`): which requests it matches and where they go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique name, used in logs, metrics and scopes.
    pub name: String,
    /// Host names to match: exact (`api.example.com`) or one leading wildcard
    /// label (`*.example.com`). Empty matches any host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Match this exact path.
    #[serde(default)]
    pub path: Option<String>,
    /// Match paths starting with this prefix at a segment boundary
    /// (`/api` matches `/api` and `/api/x`, not `/apix`).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Match a path template: `/users/{id}/orders/{order}`; one segment per
    /// `{name}`, and a final `{*rest}` matches the remainder.
    #[serde(default)]
    pub path_template: Option<String>,
    /// Methods to match; empty matches any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Headers that must be present with exactly these values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The cluster requests are sent to.
    pub cluster: String,
    /// Remove this prefix from the path before forwarding.
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// Replace the path before forwarding; `{name}` inserts a template
    /// parameter, `{*rest}` the remainder.
    #[serde(default)]
    pub rewrite: Option<String>,
    /// Send the client's `Host` header upstream (default) or the target's.
    #[serde(default = "default_true")]
    pub preserve_host: bool,
    /// Time to wait for upstream response headers.
    #[serde(default = "default_route_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Largest request body accepted; larger ones get 413.
    #[serde(default = "default_max_body")]
    pub max_body: ByteSize,
    /// Headers changed on the request before it goes upstream.
    #[serde(default)]
    pub request_headers: HeaderRules,
    /// Headers changed on the response before it goes to the client.
    #[serde(default)]
    pub response_headers: HeaderRules,
    /// Free-form tags, usable in key scopes.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Authentication (API keys, JWT) for this route (see `docs/keys.md`);
    /// absent means the route is open.
    #[serde(default)]
    pub auth: Option<RouteAuthConfig>,
    /// Response caching for this route (see `docs/cache.md`); absent means
    /// responses pass through uncached.
    #[serde(default)]
    pub cache: Option<RouteCacheConfig>,
    /// Client addresses allowed and denied on this route, checked after
    /// the global `[ip_rules]` and before authentication.
    #[serde(default)]
    pub ip_rules: Option<crate::IpRulesConfig>,
    /// Cross-origin requests from browsers: preflights answered by the
    /// gateway, CORS headers on responses (see `docs/security.md`).
    #[serde(default)]
    pub cors: Option<crate::RouteCorsConfig>,
    /// Serve only connections with a verified TLS client certificate
    /// (mutual TLS), optionally only these subjects or names.
    #[serde(default)]
    pub client_cert: Option<crate::RouteClientCertConfig>,
}

fn default_true() -> bool {
    true
}

fn default_route_timeout() -> Duration {
    DEFAULT_ROUTE_TIMEOUT
}

fn default_max_body() -> ByteSize {
    DEFAULT_MAX_BODY
}

/// Header changes, applied in the order remove, set, add.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRules {
    /// Headers to append (kept alongside existing values).
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Headers to set (replacing existing values).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Headers to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

impl HeaderRules {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.set.is_empty() && self.remove.is_empty()
    }
}

/// How a route matches paths.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathMatch {
    /// Exactly this path.
    Exact(String),
    /// This prefix at a segment boundary.
    Prefix(String),
    /// A template with `{param}` segments.
    Template(String),
}

impl RouteConfig {
    /// The route's path matcher (`path_prefix = "/"` when none is given).
    pub fn path_match(&self) -> PathMatch {
        if let Some(p) = &self.path {
            PathMatch::Exact(p.clone())
        } else if let Some(t) = &self.path_template {
            PathMatch::Template(t.clone())
        } else {
            PathMatch::Prefix(self.path_prefix.clone().unwrap_or_else(|| "/".into()))
        }
    }
}
