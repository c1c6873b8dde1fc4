//! The targets of a cluster at one moment: what a request picks from.
//! Replaced whole when service discovery changes the set (`discovery.rs`);
//! a request keeps the snapshot it started with (`cluster.rs`).

use std::sync::Arc;

use crate::balancer::Balancer;
use crate::config::ClusterConfig;
use crate::target::Target;

/// The targets of a cluster at one moment, with their weights and the
/// balancer over them (whose indexes are positions in `targets`).
#[derive(Debug)]
pub(crate) struct Members {
    pub(crate) targets: Vec<Arc<Target>>,
    pub(crate) weights: Vec<u32>,
    pub(crate) balancer: Balancer,
}

impl Members {
    pub(crate) fn new(
        config: &ClusterConfig,
        targets: Vec<Arc<Target>>,
        weights: Vec<u32>,
    ) -> Self {
        let names: Vec<String> = targets.iter().map(|t| t.display.clone()).collect();
        Self {
            balancer: Balancer::new(config.load_balancing, &names, &weights),
            targets,
            weights,
        }
    }
}
