//! [`Upstreams`]: the registry of clusters the proxy looks up per request.
//!
//! The current set of clusters is an immutable map behind an `ArcSwap`:
//! lookups are lock-free and a reconfigure replaces the whole map in one
//! step. Requests already running keep the `Arc<Cluster>` they started with,
//! so nothing in flight is lost. A reconfigure is two steps: [`Upstreams::plan`]
//! builds every new cluster with no side effects (all or nothing), keeps
//! clusters whose config did not change as they are, and carries over
//! targets (pool, health, ejection) whose address and client settings did
//! not change; [`Upstreams::commit`] starts the new clusters, swaps the map
//! and stops the health checks of replaced and removed clusters. A gateway
//! reload plans clusters with everything else and commits only when all of
//! it built.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use gateway_core::{Body, ConfigIssue};
use http::{Request, Response};
use parking_lot::Mutex;

use crate::cluster::{Cluster, ClusterStatus, SendOptions};
use crate::config::ClusterConfig;
use crate::error::UpstreamError;

/// The cluster map, as seen by one reader.
pub type ClusterMap = BTreeMap<String, Arc<Cluster>>;

/// One problem in one cluster's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterIssue {
    /// The cluster name.
    pub cluster: String,
    /// The problem, with a path relative to the cluster.
    pub issue: ConfigIssue,
}

impl fmt::Display for ClusterIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "clusters.{}.{}: {}",
            self.cluster, self.issue.path, self.issue.message
        )
    }
}

/// Clusters could not be built; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct BuildError {
    /// Every problem found, across all clusters.
    pub issues: Vec<ClusterIssue>,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid upstream clusters:")?;
        for i in &self.issues {
            write!(f, "\n  {i}")?;
        }
        Ok(())
    }
}

/// Clusters built by [`Upstreams::plan`] and not yet in place.
pub struct ClusterPlan {
    clusters: Arc<ClusterMap>,
    /// Clusters built new (not carried over): started on commit.
    fresh: Vec<String>,
}

impl ClusterPlan {
    /// The cluster map this plan puts in place.
    pub fn clusters(&self) -> &Arc<ClusterMap> {
        &self.clusters
    }
}

impl fmt::Debug for ClusterPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterPlan")
            .field("clusters", &self.clusters.keys().collect::<Vec<_>>())
            .field("fresh", &self.fresh)
            .finish()
    }
}

/// The registry of upstream clusters.
pub struct Upstreams {
    current: ArcSwap<ClusterMap>,
    // Serialises reconfigures so two cannot interleave their builds.
    writer: Mutex<()>,
}

impl fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstreams")
            .field("clusters", &self.current.load().keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for Upstreams {
    fn default() -> Self {
        Self {
            current: ArcSwap::from_pointee(ClusterMap::new()),
            writer: Mutex::new(()),
        }
    }
}

impl Upstreams {
    /// Builds every cluster. Call inside a Tokio runtime (health checks are
    /// background tasks).
    pub fn new(configs: BTreeMap<String, ClusterConfig>) -> Result<Self, BuildError> {
        let u = Self::default();
        u.reconfigure(configs)?;
        Ok(u)
    }

    /// The cluster called `name`, if configured.
    pub fn get(&self, name: &str) -> Option<Arc<Cluster>> {
        self.current.load().get(name).cloned()
    }

    /// The whole current map (for the admin API and metrics).
    pub fn snapshot(&self) -> Arc<ClusterMap> {
        self.current.load_full()
    }

    /// Status of every cluster by name, for the admin API (serializes to JSON).
    pub fn status(&self) -> BTreeMap<String, ClusterStatus> {
        self.current
            .load()
            .iter()
            .map(|(name, c)| (name.clone(), c.status()))
            .collect()
    }

    /// Sends `req` to cluster `name`; `unknown_upstream` if there is none.
    pub async fn send(
        &self,
        name: &str,
        req: Request<Body>,
        opts: SendOptions,
    ) -> Result<Response<Body>, UpstreamError> {
        match self.get(name) {
            Some(c) => c.send(req, opts).await,
            None => Err(UpstreamError::unknown_cluster(name)),
        }
    }

    /// Replaces the clusters with `configs`: [`Self::plan`], then
    /// [`Self::commit`]. All or nothing: on error the old clusters stay in
    /// place and every problem is reported.
    pub fn reconfigure(&self, configs: BTreeMap<String, ClusterConfig>) -> Result<(), BuildError> {
        let _writer = self.writer.lock();
        let plan = self.plan(configs)?;
        self.commit_locked(plan);
        Ok(())
    }

    /// Builds the clusters `configs` describes without changing anything:
    /// clusters whose config did not change are kept as they are, the
    /// others are built (reusing unchanged targets, reading TLS files) but
    /// not started. Every problem across all clusters is reported.
    pub fn plan(
        &self,
        configs: BTreeMap<String, ClusterConfig>,
    ) -> Result<ClusterPlan, BuildError> {
        let old = self.current.load_full();
        let mut next = ClusterMap::new();
        let mut fresh = Vec::new();
        let mut issues = Vec::new();
        for (name, config) in configs {
            let previous = old.get(&name);
            if let Some(prev) = previous.filter(|p| *p.config() == config) {
                next.insert(name, prev.clone());
                continue;
            }
            match Cluster::build(&name, config, previous.map(|p| p.as_ref())) {
                Ok(c) => {
                    fresh.push(name.clone());
                    next.insert(name, Arc::new(c));
                }
                Err(found) => issues.extend(found.into_iter().map(|issue| ClusterIssue {
                    cluster: name.clone(),
                    issue,
                })),
            }
        }
        if !issues.is_empty() {
            return Err(BuildError { issues });
        }
        Ok(ClusterPlan {
            clusters: Arc::new(next),
            fresh,
        })
    }

    /// Checks that `configs` builds (addresses, TLS files), as a reload
    /// would, with nothing running: for `gatehouse check`.
    pub fn check(configs: BTreeMap<String, ClusterConfig>) -> Result<(), BuildError> {
        Self::default().plan(configs).map(drop)
    }

    /// Puts a plan in place: starts its new clusters, swaps the map, and
    /// stops the clusters it replaced or removed. Requests that hold a
    /// stopped cluster finish on it.
    pub fn commit(&self, plan: ClusterPlan) {
        let _writer = self.writer.lock();
        self.commit_locked(plan);
    }

    fn commit_locked(&self, plan: ClusterPlan) {
        for name in &plan.fresh {
            plan.clusters[name].start();
        }
        let old = self.current.swap(plan.clusters);
        let now = self.current.load();
        for (name, c) in old.iter() {
            if !now.get(name).is_some_and(|n| Arc::ptr_eq(n, c)) {
                c.stop();
                tracing::info!(cluster = %name, "upstream cluster replaced or removed");
            }
        }
    }

    /// Stops every background task (health checks). Requests still work
    /// against the last known health state; use on process shutdown.
    pub fn shutdown(&self) {
        for c in self.current.load().values() {
            c.stop();
        }
    }
}
