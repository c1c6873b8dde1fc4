//! How one SRV answer (RFC 2782) becomes targets: which records count, the
//! balancing weight each gets, and the addresses of the host each names.
//! Called by the refresh task (`discovery.rs`) for every SRV target.
//!
//! - Only the lowest priority value whose hosts resolve is used: the
//!   records of a higher value serve only when no host of any lower
//!   value resolves (a backup tier, as RFC 2782 intends).
//! - A record's weight becomes the balancing weight of each address of its
//!   host. Weight 0 becomes 1, the smallest balancing weight, so such a
//!   record gets a small share beside weighted ones and an equal share
//!   among other zeros. When the largest weight of the tier is above
//!   [`MAX_WEIGHT`], every weight is scaled down in proportion (at least 1).
//! - A record whose target is `.` ("decidedly not available") is ignored.

use std::net::IpAddr;
use std::time::Duration;

use crate::config::MAX_WEIGHT;
use crate::resolve::{Resolve, SrvRecord};

/// One address found through an SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Instance {
    /// The host the record names (what TLS presents and verifies).
    pub(crate) host: String,
    pub(crate) ip: IpAddr,
    /// The record's port.
    pub(crate) port: u16,
    /// Balancing weight, between 1 and [`MAX_WEIGHT`].
    pub(crate) weight: u32,
}

/// What one SRV name resolved to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Found {
    /// The instances of the tier used, in record order.
    pub(crate) instances: Vec<Instance>,
    /// The shortest TTL among the SRV answer and the host answers used.
    pub(crate) ttl: Option<Duration>,
    /// Why hosts of the tier used (or of tiers passed over) were left out.
    pub(crate) unresolved: Vec<String>,
}

/// A record that counts, with its balancing weight.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Weighted {
    host: String,
    port: u16,
    weight: u32,
}

/// Looks up `name`'s SRV records and resolves the hosts of the lowest
/// priority tier that has any host resolving. `Err` when the answer is
/// empty or failed, or when no host of any tier resolves.
pub(crate) async fn discover(resolver: &dyn Resolve, name: &str) -> Result<Found, String> {
    let answer = resolver.resolve_srv(name).await?;
    let tiers = tiers(&answer.records);
    if tiers.is_empty() {
        return Err(format!("`{name}` has no SRV record naming a host"));
    }
    let ttl = answer.ttl;
    let mut unresolved = Vec::new();
    for tier in tiers {
        let mut instances: Vec<Instance> = Vec::new();
        let mut tier_ttl = ttl;
        for record in tier {
            let addrs = match record.host.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => match resolver.resolve(&record.host).await {
                    Ok(answer) if !answer.addrs.is_empty() => {
                        tier_ttl = shortest(tier_ttl, answer.ttl);
                        answer.addrs
                    }
                    Ok(_) => {
                        unresolved.push(format!("`{}` resolved to no address", record.host));
                        continue;
                    }
                    Err(why) => {
                        unresolved.push(why);
                        continue;
                    }
                },
            };
            for ip in addrs {
                if !instances
                    .iter()
                    .any(|i| i.ip == ip && i.port == record.port)
                {
                    instances.push(Instance {
                        host: record.host.clone(),
                        ip,
                        port: record.port,
                        weight: record.weight,
                    });
                }
            }
        }
        if !instances.is_empty() {
            return Ok(Found {
                instances,
                ttl: tier_ttl,
                unresolved,
            });
        }
    }
    Err(format!(
        "no host named by the SRV records of `{name}` resolved: {}",
        unresolved.join("; ")
    ))
}

fn shortest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The records that name a host, grouped by priority (lowest value first),
/// each tier with its balancing weights.
fn tiers(records: &[SrvRecord]) -> Vec<Vec<Weighted>> {
    let mut usable: Vec<&SrvRecord> = records
        .iter()
        .filter(|r| r.target != "." && !r.target.is_empty())
        .collect();
    // Stable: within a tier, the resolver's order stays.
    usable.sort_by_key(|r| r.priority);
    let mut tiers: Vec<Vec<&SrvRecord>> = Vec::new();
    for r in usable {
        match tiers.last_mut() {
            Some(tier) if tier[0].priority == r.priority => tier.push(r),
            _ => tiers.push(vec![r]),
        }
    }
    tiers
        .into_iter()
        .map(|tier| {
            let weights = balancing_weights(&tier.iter().map(|r| r.weight).collect::<Vec<_>>());
            tier.into_iter()
                .zip(weights)
                .map(|(r, weight)| Weighted {
                    host: r.target.clone(),
                    port: r.port,
                    weight,
                })
                .collect()
        })
        .collect()
}

/// SRV weights (0-65535) as balancing weights (1-[`MAX_WEIGHT`]): 0
/// becomes 1; above the maximum, all are scaled down in proportion.
fn balancing_weights(srv: &[u16]) -> Vec<u32> {
    let largest = srv.iter().copied().max().map_or(0, u32::from);
    srv.iter()
        .map(|&w| {
            let w = u32::from(w);
            let scaled = if largest > MAX_WEIGHT {
                (w * MAX_WEIGHT + largest / 2) / largest
            } else {
                w
            };
            scaled.max(1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::resolve::{ResolveFuture, Resolved, SrvAnswer, SrvFuture};

    /// One SRV answer and the host answers, fixed for the test.
    #[derive(Debug)]
    struct Fixed {
        srv: Result<SrvAnswer, String>,
        hosts: HashMap<&'static str, Result<Resolved, String>>,
    }

    impl Resolve for Fixed {
        fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a> {
            let answer = self
                .hosts
                .get(host)
                .cloned()
                .unwrap_or_else(|| Err(format!("`{host}`: NXDOMAIN")));
            Box::pin(async move { answer })
        }

        fn resolve_srv<'a>(&'a self, _name: &'a str) -> SrvFuture<'a> {
            let answer = self.srv.clone();
            Box::pin(async move { answer })
        }
    }

    fn record(priority: u16, weight: u16, port: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port,
            target: target.into(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn host(addrs: &[&str], ttl: Option<u64>) -> Result<Resolved, String> {
        Ok(Resolved {
            addrs: addrs.iter().map(|a| ip(a)).collect(),
            ttl: ttl.map(Duration::from_secs),
        })
    }

    fn resolver(
        records: Vec<SrvRecord>,
        hosts: &[(&'static str, Result<Resolved, String>)],
    ) -> Fixed {
        Fixed {
            srv: Ok(SrvAnswer {
                records,
                ttl: Some(Duration::from_secs(30)),
            }),
            hosts: hosts.iter().cloned().collect(),
        }
    }

    /// `(host, ip, port, weight)` of each instance found.
    async fn found(r: &Fixed) -> Result<Vec<(String, IpAddr, u16, u32)>, String> {
        discover(r, "_http._tcp.fx.test").await.map(|f| {
            f.instances
                .into_iter()
                .map(|i| (i.host, i.ip, i.port, i.weight))
                .collect()
        })
    }

    fn inst(host: &str, addr: &str, port: u16, weight: u32) -> (String, IpAddr, u16, u32) {
        (host.into(), ip(addr), port, weight)
    }

    #[tokio::test]
    async fn the_lowest_priority_is_used_with_ports_and_weights_from_the_records() {
        let r = resolver(
            vec![
                record(20, 5, 9000, "backup.fx.test"),
                record(10, 3, 8080, "a.fx.test"),
                record(10, 1, 8081, "b.fx.test"),
            ],
            &[
                ("a.fx.test", host(&["10.0.0.1", "10.0.0.2"], None)),
                ("b.fx.test", host(&["10.0.0.3"], None)),
                ("backup.fx.test", host(&["10.0.0.9"], None)),
            ],
        );
        assert_eq!(
            found(&r).await.unwrap(),
            [
                inst("a.fx.test", "10.0.0.1", 8080, 3),
                inst("a.fx.test", "10.0.0.2", 8080, 3),
                inst("b.fx.test", "10.0.0.3", 8081, 1),
            ]
        );
    }

    #[tokio::test]
    async fn a_higher_priority_serves_only_when_no_host_of_the_lower_resolves() {
        let records = vec![
            record(10, 1, 80, "a.fx.test"),
            record(10, 1, 80, "b.fx.test"),
            record(20, 1, 80, "backup.fx.test"),
        ];
        let backup = ("backup.fx.test", host(&["10.0.0.9"], None));

        let one_down = resolver(
            records.clone(),
            &[("b.fx.test", host(&["10.0.0.2"], None)), backup.clone()],
        );
        let f = discover(&one_down, "_http._tcp.fx.test").await.unwrap();
        assert_eq!(f.instances.len(), 1);
        assert_eq!(f.instances[0].host, "b.fx.test");
        assert_eq!(f.unresolved, ["`a.fx.test`: NXDOMAIN"]);

        let all_down = resolver(
            records.clone(),
            &[("b.fx.test", host(&[], None)), backup.clone()],
        );
        assert_eq!(
            found(&all_down).await.unwrap(),
            [inst("backup.fx.test", "10.0.0.9", 80, 1)]
        );

        let nothing = resolver(records, &[]);
        let err = found(&nothing).await.unwrap_err();
        assert!(
            err.contains("no host named by the SRV records of `_http._tcp.fx.test` resolved")
                && err.contains("`backup.fx.test`: NXDOMAIN"),
            "{err}"
        );
    }

    #[test]
    fn srv_weights_become_balancing_weights() {
        assert_eq!(balancing_weights(&[0, 0]), [1, 1]);
        assert_eq!(balancing_weights(&[0, 100, 50]), [1, 100, 50]);
        assert_eq!(
            balancing_weights(&[u16::MAX, 32768, 10, 0]),
            [MAX_WEIGHT, 500, 1, 1]
        );
        assert_eq!(balancing_weights(&[2000, 1000]), [1000, 500]);
    }

    #[tokio::test]
    async fn an_empty_or_failed_or_unavailable_answer_is_an_error() {
        let empty = resolver(Vec::new(), &[]);
        assert!(found(&empty).await.unwrap_err().contains("no SRV record"));
        let dot = resolver(vec![record(0, 0, 0, ".")], &[]);
        assert!(found(&dot).await.unwrap_err().contains("no SRV record"));
        let failed = Fixed {
            srv: Err("SERVFAIL".into()),
            hosts: HashMap::new(),
        };
        assert_eq!(found(&failed).await.unwrap_err(), "SERVFAIL");
    }

    #[tokio::test]
    async fn the_shortest_ttl_of_the_answers_used_is_kept() {
        let r = resolver(
            vec![
                record(10, 1, 80, "a.fx.test"),
                record(10, 1, 80, "b.fx.test"),
                record(20, 1, 80, "c.fx.test"),
            ],
            &[
                ("a.fx.test", host(&["10.0.0.1"], Some(60))),
                ("b.fx.test", host(&["10.0.0.2"], Some(5))),
                ("c.fx.test", host(&["10.0.0.3"], Some(1))),
            ],
        );
        let f = discover(&r, "_http._tcp.fx.test").await.unwrap();
        assert_eq!(f.ttl, Some(Duration::from_secs(5)));
    }

    #[tokio::test]
    async fn an_address_listed_twice_is_one_target_and_ip_targets_need_no_lookup() {
        let r = resolver(
            vec![
                record(10, 4, 80, "a.fx.test"),
                record(10, 2, 80, "alias.fx.test"),
                record(10, 1, 81, "10.0.0.7"),
            ],
            &[
                ("a.fx.test", host(&["10.0.0.1"], None)),
                ("alias.fx.test", host(&["10.0.0.1"], None)),
            ],
        );
        assert_eq!(
            found(&r).await.unwrap(),
            [
                inst("a.fx.test", "10.0.0.1", 80, 4),
                inst("10.0.0.7", "10.0.0.7", 81, 1),
            ]
        );
    }
}
