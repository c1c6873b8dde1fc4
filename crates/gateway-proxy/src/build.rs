//! A config's build step: everything a config needs in order to serve,
//! built with no side effects.
//!
//! Startup, every reload (SIGHUP, a file change, the admin API) and
//! `gatehouse check` run this same step. It reads what the config points
//! at (TLS files, JWT keys) and builds routes, prepared authentication,
//! clusters and the scope catalog, but starts and changes nothing; so a
//! reload either applies all of it, in one swap (`Gateway::apply`), or, when
//! anything failed to build, none of it.

use std::collections::HashMap;
use std::sync::Arc;

use gateway_config::{ConfigError, Http1Engine, LoadedConfig};
use gateway_core::config_issue::{nested, ConfigIssue};
use gateway_keys::auth::PreparedAuth;
use gateway_keys::service::ScopeCatalog;
use gateway_upstream::config::ClientEngine;
use gateway_upstream::{ClusterPlan, Upstreams};

use crate::cidr::{ClientAddress, IpRules};
use crate::cors::Cors;
use crate::router::{self, RouteControls, RouteTable};

/// A config built and ready to swap in.
pub struct Built {
    /// The validated config.
    pub(crate) loaded: LoadedConfig,
    /// Compiled routes, each with its prepared authentication.
    pub(crate) routes: RouteTable,
    /// Prepared authentication by route name, for the authenticator.
    pub(crate) auth: HashMap<String, PreparedAuth>,
    /// The clusters, built and not started.
    pub(crate) clusters: ClusterPlan,
    /// Scopes that exist, for validating admin requests.
    pub(crate) catalog: ScopeCatalog,
    /// `[ip_rules]`, prepared.
    pub(crate) ip_rules: Option<IpRules>,
    /// `[gateway] trust_forwarded_headers` and `trusted_proxies`, prepared.
    pub(crate) client_address: ClientAddress,
}

/// What a build can start from: the parts of a running gateway whose state
/// carries over (connection pools and health of unchanged targets, JWT
/// verifiers), or nothing at all.
pub(crate) struct Previous<'a> {
    pub(crate) upstreams: &'a Upstreams,
    pub(crate) auth: &'a gateway_keys::auth::Authenticator,
    /// The HTTP/1.1 engine the process runs (a reload does not change it:
    /// it needs a restart); `None` when starting.
    pub(crate) http1_engine: Option<Http1Engine>,
}

/// Builds `loaded`. Every problem found is reported at once, located in
/// the config file like a validation error (`file:line:col: key: message`).
pub(crate) fn build(
    loaded: LoadedConfig,
    previous: Option<Previous<'_>>,
) -> Result<Built, ConfigError> {
    let config = &loaded.config;
    let mut issues: Vec<ConfigIssue> = Vec::new();

    let mut auth = HashMap::new();
    for (i, route) in config.routes.iter().enumerate() {
        let Some(cfg) = router::auth_config(route) else {
            continue;
        };
        let before = previous
            .as_ref()
            .and_then(|p| p.auth.route_state(&route.name));
        match PreparedAuth::build(&route.name, &cfg, before.as_ref()) {
            Ok(prepared) => {
                auth.insert(route.name.clone(), prepared);
            }
            Err(found) => issues.extend(nested(&format!("routes[{i}].auth"), Err(found))),
        }
    }

    let mut controls: HashMap<String, RouteControls> = HashMap::new();
    for (i, route) in config.routes.iter().enumerate() {
        let mut prepared = RouteControls::default();
        if let Some(rules) = &route.ip_rules {
            match IpRules::build(rules) {
                Ok(rules) => prepared.ip_rules = rules.map(Arc::new),
                Err(found) => issues.extend(nested(&format!("routes[{i}].ip_rules"), Err(found))),
            }
        }
        prepared.cors = route.cors.as_ref().map(|c| Arc::new(Cors::build(c)));
        controls.insert(route.name.clone(), prepared);
    }
    let ip_rules = IpRules::build(&config.ip_rules)
        .map_err(|found| issues.extend(nested("ip_rules", Err(found))))
        .ok()
        .flatten();
    let gateway = &config.gateway;
    let client_address =
        ClientAddress::build(gateway.trust_forwarded_headers, &gateway.trusted_proxies)
            .map_err(|found| issues.extend(nested("gateway", Err(found))))
            .unwrap_or_default();

    // The HTTP/1.1 engine serves upstream connections as well as clients,
    // and stays what the process started with.
    let running = previous.as_ref().and_then(|p| p.http1_engine);
    let engine = match running.unwrap_or(gateway.http1_engine) {
        Http1Engine::Native => ClientEngine::Native,
        Http1Engine::Hyper => ClientEngine::Hyper,
    };
    let cluster_configs = config
        .clusters
        .iter()
        .map(|(name, c)| {
            let mut c = c.clone();
            c.client_engine = engine;
            (name.clone(), c)
        })
        .collect();
    let planned = match &previous {
        Some(p) => p.upstreams.plan(cluster_configs),
        None => Upstreams::default().plan(cluster_configs),
    };
    let clusters = match planned {
        Ok(plan) => Some(plan),
        Err(e) => {
            issues.extend(
                e.issues
                    .into_iter()
                    .map(|i| i.issue.under(&format!("clusters.{}", i.cluster))),
            );
            None
        }
    };

    let (Some(clusters), true) = (clusters, issues.is_empty()) else {
        return Err(loaded.issues_error(issues));
    };

    let routes = RouteTable::new(&config.routes, &auth, &controls);
    let mut catalog = ScopeCatalog::from_routes(
        config
            .routes
            .iter()
            .map(|r| (r.name.as_str(), r.auth.as_ref())),
    );
    catalog
        .tags
        .extend(config.routes.iter().flat_map(|r| r.tags.iter().cloned()));
    Ok(Built {
        loaded,
        routes,
        auth,
        clusters,
        catalog,
        ip_rules,
        client_address,
    })
}

/// Sections of the config that a running gateway cannot change, named as
/// in the file: a reload that changes one warns that it needs a restart.
pub(crate) fn needs_restart(old: &LoadedConfig, new: &LoadedConfig) -> Vec<&'static str> {
    let (a, b) = (&old.config, &new.config);
    let (ga, gb) = (&a.gateway, &b.gateway);
    let (ka, kb) = (&a.keys, &b.keys);
    [
        ("[[listeners]]", a.listeners != b.listeners),
        ("[admin]", a.admin != b.admin),
        ("[telemetry]", a.telemetry != b.telemetry),
        ("[storage]", a.storage != b.storage),
        ("[cache]", a.cache != b.cache),
        (
            "[gateway] header_read_timeout",
            ga.header_read_timeout != gb.header_read_timeout,
        ),
        ("[gateway] idle_timeout", ga.idle_timeout != gb.idle_timeout),
        (
            "[gateway] first_byte_timeout, max_connections, max_connections_per_client",
            ga.first_byte_timeout != gb.first_byte_timeout
                || ga.max_connections != gb.max_connections
                || ga.max_connections_per_client != gb.max_connections_per_client,
        ),
        ("[gateway] watch_config", ga.watch_config != gb.watch_config),
        (
            "[gateway] workers, http1_engine, max_request_line, max_request_head, max_request_headers",
            ga.workers != gb.workers
                || ga.http1_engine != gb.http1_engine
                || ga.max_request_line != gb.max_request_line
                || ga.max_request_head != gb.max_request_head
                || ga.max_request_headers != gb.max_request_headers,
        ),
        (
            "[gateway] shadow_nice, shadow_idle",
            ga.shadow_nice != gb.shadow_nice || ga.shadow_idle != gb.shadow_idle,
        ),
        ("[keys] database", ka.database != kb.database),
        (
            "[keys] reload_interval, flush_interval, sweep_interval",
            ka.reload_interval != kb.reload_interval
                || ka.flush_interval != kb.flush_interval
                || ka.sweep_interval != kb.sweep_interval,
        ),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}

impl Built {
    /// The clusters a built config serves with, for the snapshot.
    pub(crate) fn cluster_map(&self) -> Arc<gateway_upstream::ClusterMap> {
        self.clusters.clusters().clone()
    }
}
