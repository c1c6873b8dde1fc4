//! Service discovery: targets given by host name are re-resolved while the
//! cluster runs (`dns_refresh`), and SRV targets are looked up and their
//! hosts resolved (`crate::srv`), so addresses join and leave without a
//! config reload.
//!
//! Resolution goes through the [`crate::resolve::Resolve`] trait: the
//! gateway uses the system's DNS configuration through hickory
//! ([`crate::resolve::SystemResolver`]); tests inject their own answers
//! through [`ClusterConfig::resolver`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::config::{ClusterConfig, TargetAddr, TargetSpec};
use crate::members::Members;
use crate::resolve::MIN_DNS_REFRESH;
use crate::target::Target;
use crate::{health, metrics, srv};

/// Whether the cluster has targets to re-resolve: `dns_refresh` is set and
/// at least one target is a host name or an SRV name.
pub(crate) fn enabled(config: &ClusterConfig) -> bool {
    config.dns_refresh.is_some()
        && config
            .targets
            .iter()
            .any(|t| match TargetSpec::parse(&t.address) {
                Ok(TargetSpec::Addr(a)) => a.host.parse::<IpAddr>().is_err(),
                Ok(TargetSpec::Srv(_)) => true,
                Err(_) => false,
            })
}

/// The refresh task of one cluster. `health` holds the stop token of each
/// current target's health check, by target key.
pub(crate) fn spawn(
    name: Arc<str>,
    config: ClusterConfig,
    members: Arc<ArcSwap<Members>>,
    mut health: HashMap<String, CancellationToken>,
    cancel: CancellationToken,
) {
    let Some(interval) = config.dns_refresh else {
        return;
    };
    tokio::spawn(async move {
        loop {
            let wait = match resolve_all(&name, &config).await {
                Ok((addrs, ttl)) => {
                    apply(&name, &config, &members, &mut health, &cancel, addrs);
                    next_refresh(ttl, interval)
                }
                Err(why) => {
                    metrics::dns_failure(&name);
                    tracing::warn!(cluster = %name, error = %why, "upstream DNS refresh failed; keeping the last good targets");
                    // A cluster with nothing to serve (SRV targets not yet
                    // found) asks again soon rather than after a whole interval.
                    if members.load().targets.is_empty() {
                        MIN_DNS_REFRESH
                    } else {
                        interval
                    }
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    });
}

/// How long until the next refresh: the answer's TTL, but never shorter
/// than [`MIN_DNS_REFRESH`] nor longer than the configured interval.
fn next_refresh(ttl: Option<Duration>, interval: Duration) -> Duration {
    ttl.map_or(interval, |t| {
        t.clamp(MIN_DNS_REFRESH, interval.max(MIN_DNS_REFRESH))
    })
}

/// A resolved target: the host name it came from (an SRV record's host
/// for SRV targets), its address, its weight.
type Discovered = (String, TargetAddr, u32);

/// Resolves every target: the full new set with weights, and the shortest
/// TTL seen. Any failure or empty answer fails the whole refresh, so a
/// partial answer never shrinks the cluster (within one SRV name, hosts
/// that do not resolve are left out; see `crate::srv`).
async fn resolve_all(
    name: &str,
    config: &ClusterConfig,
) -> Result<(Vec<Discovered>, Option<Duration>), String> {
    let mut out: Vec<Discovered> = Vec::new();
    let mut ttl: Option<Duration> = None;
    for t in &config.targets {
        let addr = match TargetSpec::parse(&t.address)? {
            TargetSpec::Addr(addr) => addr,
            TargetSpec::Srv(srv) => {
                let found = srv::discover(&*config.resolver.0, &srv.name).await?;
                for why in &found.unresolved {
                    tracing::warn!(cluster = name, target = %srv, error = %why, "a host named by an SRV record did not resolve; left out");
                }
                shorten(&mut ttl, found.ttl);
                for i in found.instances {
                    let resolved = TargetAddr {
                        scheme: srv.scheme,
                        host: i.ip.to_string(),
                        port: i.port,
                    };
                    add(&mut out, &i.host, resolved, i.weight);
                }
                continue;
            }
        };
        if addr.host.parse::<IpAddr>().is_ok() {
            add(&mut out, &addr.host.clone(), addr, t.weight);
            continue;
        }
        let answer = config.resolver.0.resolve(&addr.host).await?;
        if answer.addrs.is_empty() {
            return Err(format!("`{}` resolved to no address", addr.host));
        }
        shorten(&mut ttl, answer.ttl);
        for ip in answer.addrs {
            let resolved = TargetAddr {
                scheme: addr.scheme,
                host: ip.to_string(),
                port: addr.port,
            };
            add(&mut out, &addr.host, resolved, t.weight);
        }
    }
    tracing::debug!(
        cluster = name,
        targets = out.len(),
        "upstream DNS refresh resolved"
    );
    Ok((out, ttl))
}

/// Adds a target unless its address is already there (two names may
/// resolve to one address).
fn add(out: &mut Vec<Discovered>, host: &str, addr: TargetAddr, weight: u32) {
    if !out.iter().any(|(_, a, _)| *a == addr) {
        out.push((host.to_string(), addr, weight));
    }
}

fn shorten(ttl: &mut Option<Duration>, answer: Option<Duration>) {
    if let Some(t) = answer {
        *ttl = Some(ttl.map_or(t, |m| m.min(t)));
    }
}

/// The targets a rebuilt cluster starts with when the one it replaces had
/// discovered them: same names and same client settings, so every
/// discovered target fits the new config as it is. `None`: start from the
/// configured names.
pub(crate) fn carried_over(
    config: &ClusterConfig,
    previous: &ClusterConfig,
    members: &Members,
) -> Option<(Vec<Arc<Target>>, Vec<u32>)> {
    let fits = config.targets == previous.targets
        && Target::client_settings(config) == Target::client_settings(previous);
    (fits && enabled(config) && enabled(previous))
        .then(|| (members.targets.clone(), members.weights.clone()))
}

/// The client settings of a resolved target: an https target keeps
/// presenting and verifying its host name, not the IP it resolved to.
pub(crate) fn target_config(config: &ClusterConfig, host: &str) -> ClusterConfig {
    let mut cfg = config.clone();
    if cfg.tls.server_name.is_none() && host.parse::<IpAddr>().is_err() {
        cfg.tls.server_name = Some(host.to_string());
    }
    cfg
}

/// Swaps in the new set when it differs, keeping targets (pool, health,
/// ejection) that stay. A leaving target is only no longer picked: requests
/// on it finish and its pool goes with the last of them.
fn apply(
    name: &Arc<str>,
    config: &ClusterConfig,
    members: &ArcSwap<Members>,
    health: &mut HashMap<String, CancellationToken>,
    cancel: &CancellationToken,
    addrs: Vec<Discovered>,
) {
    let current = members.load_full();
    let mut targets = Vec::with_capacity(addrs.len());
    let mut weights = Vec::with_capacity(addrs.len());
    for (host, addr, weight) in addrs {
        let cfg = match addr.scheme {
            crate::config::Scheme::Https => target_config(config, &host),
            crate::config::Scheme::Http => config.clone(),
        };
        let key = Target::key_for(&addr, &cfg);
        let target = match current.targets.iter().find(|t| t.key() == key) {
            Some(t) => t.clone(),
            None => match Target::build(name.clone(), addr, &cfg) {
                Ok(t) => Arc::new(t),
                Err(issue) => {
                    tracing::warn!(cluster = %name, error = %issue.message, "cannot build a discovered upstream target; skipped");
                    continue;
                }
            },
        };
        targets.push(target);
        weights.push(weight);
    }
    if targets.is_empty() {
        return;
    }
    let same = targets.len() == current.targets.len()
        && targets
            .iter()
            .zip(&current.targets)
            .all(|(a, b)| Arc::ptr_eq(a, b))
        && weights == current.weights;
    if same {
        return;
    }
    let added: Vec<String> = targets
        .iter()
        .filter(|t| !current.targets.iter().any(|c| Arc::ptr_eq(c, t)))
        .map(|t| t.display.clone())
        .collect();
    let removed: Vec<String> = current
        .targets
        .iter()
        .filter(|c| !targets.iter().any(|t| Arc::ptr_eq(c, t)))
        .map(|t| t.display.clone())
        .collect();
    let now = tokio::time::Instant::now();
    for t in &targets {
        if !health.contains_key(t.key()) {
            let token = cancel.child_token();
            metrics::healthy(name, &t.display, t.is_available(now));
            if let Some(hc) = &config.health_check {
                health::spawn(name.clone(), t.clone(), hc.clone(), token.clone());
            }
            health.insert(t.key().to_string(), token);
        }
    }
    health.retain(|key, token| {
        let stays = targets.iter().any(|t| t.key() == key);
        if !stays {
            token.cancel();
        }
        stays
    });
    members.store(Arc::new(Members::new(config, targets, weights)));
    metrics::dns_targets(name, members.load().targets.len());
    tracing::info!(cluster = %name, ?added, ?removed, "upstream targets changed after DNS refresh");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ttl_is_respected_within_the_bounds() {
        let every = Duration::from_secs(30);
        assert_eq!(next_refresh(None, every), every);
        assert_eq!(
            next_refresh(Some(Duration::from_secs(5)), every),
            Duration::from_secs(5)
        );
        assert_eq!(next_refresh(Some(Duration::from_secs(300)), every), every);
        assert_eq!(next_refresh(Some(Duration::ZERO), every), MIN_DNS_REFRESH);
    }
}
