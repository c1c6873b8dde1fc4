//! Address sets built from the config's CIDR lists: IP rules (allow and
//! deny) and the trusted proxies whose `X-Forwarded-For` names the client.
//!
//! Built once by the config's build step; a lookup is one hash probe per
//! distinct prefix length in the list, however many entries it has.

use std::collections::HashSet;
use std::net::IpAddr;

use gateway_config::{parse_cidr, IpRulesConfig};
use gateway_core::config_issue::{finish, ConfigIssue};
use http::HeaderMap;
use ipnet::IpNet;

/// A set of CIDR blocks.
#[derive(Debug, Default, Clone)]
pub struct CidrSet {
    /// (prefix length, network bits) for IPv4, longest prefix first.
    v4: Vec<(u8, HashSet<u32>)>,
    /// The same for IPv6.
    v6: Vec<(u8, HashSet<u128>)>,
}

impl CidrSet {
    /// The set of validated entries; the issues of those that are not
    /// blocks or addresses, at `key[i]`.
    pub fn build(key: &str, entries: &[String]) -> Result<Self, Vec<ConfigIssue>> {
        let mut set = Self::default();
        let mut issues = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            match parse_cidr(entry) {
                Ok(net) => set.insert(net),
                Err(message) => issues.push(ConfigIssue::new(format!("{key}[{i}]"), message)),
            }
        }
        finish(issues).map(|()| set)
    }

    fn insert(&mut self, net: IpNet) {
        match net {
            IpNet::V4(n) => {
                let len = n.prefix_len();
                let bits = u32::from(n.network());
                bucket(&mut self.v4, len).insert(bits);
            }
            IpNet::V6(n) => {
                let len = n.prefix_len();
                let bits = u128::from(n.network());
                bucket(&mut self.v6, len).insert(bits);
            }
        }
    }

    /// Whether no block is in the set.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether `ip` lies in one of the blocks. An IPv4-mapped IPv6 address
    /// (`::ffff:192.0.2.7`, from a dual-stack socket) is its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                self.v4.iter().any(|(len, nets)| {
                    let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
                    nets.contains(&(bits & mask))
                })
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                self.v6.iter().any(|(len, nets)| {
                    let mask = u128::MAX.checked_shl(128 - u32::from(*len)).unwrap_or(0);
                    nets.contains(&(bits & mask))
                })
            }
        }
    }
}

/// The set of networks of one prefix length, added in order.
fn bucket<T>(buckets: &mut Vec<(u8, HashSet<T>)>, len: u8) -> &mut HashSet<T> {
    let at = match buckets.iter().position(|(l, _)| *l == len) {
        Some(at) => at,
        None => {
            buckets.push((len, HashSet::new()));
            buckets.sort_by_key(|b| std::cmp::Reverse(b.0));
            buckets
                .iter()
                .position(|(l, _)| *l == len)
                .expect("just added")
        }
    };
    &mut buckets[at].1
}

/// What the IP rules say about an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVerdict {
    /// Not denied, and allowed (or there is no allow list).
    Allowed,
    /// In the deny list.
    Denied,
    /// Not in the allow list.
    NotAllowed,
}

/// Allow and deny lists, prepared. Deny wins; a non-empty allow list
/// refuses everything it does not hold.
#[derive(Debug, Clone)]
pub struct IpRules {
    allow: CidrSet,
    deny: CidrSet,
}

impl IpRules {
    /// The prepared rules, or `None` when both lists are empty (nothing
    /// to check on the request path).
    pub fn build(cfg: &IpRulesConfig) -> Result<Option<Self>, Vec<ConfigIssue>> {
        let allow = CidrSet::build("allow", &cfg.allow);
        let deny = CidrSet::build("deny", &cfg.deny);
        match (allow, deny) {
            (Ok(allow), Ok(deny)) => {
                Ok((!allow.is_empty() || !deny.is_empty()).then_some(Self { allow, deny }))
            }
            (a, d) => Err(a.err().into_iter().chain(d.err()).flatten().collect()),
        }
    }

    /// The verdict on `ip`.
    pub fn check(&self, ip: IpAddr) -> IpVerdict {
        if self.deny.contains(ip) {
            IpVerdict::Denied
        } else if !self.allow.is_empty() && !self.allow.contains(ip) {
            IpVerdict::NotAllowed
        } else {
            IpVerdict::Allowed
        }
    }
}

/// Which peers' `X-Forwarded-For` is believed, and how far.
#[derive(Debug, Clone, Default)]
pub struct ClientAddress {
    /// `trust_forwarded_headers`: every peer is a proxy (one hop).
    trust_every_peer: bool,
    /// `trusted_proxies`.
    proxies: CidrSet,
}

impl ClientAddress {
    /// From `[gateway] trust_forwarded_headers` and `trusted_proxies`.
    pub fn build(trust_every_peer: bool, proxies: &[String]) -> Result<Self, Vec<ConfigIssue>> {
        Ok(Self {
            trust_every_peer,
            proxies: CidrSet::build("trusted_proxies", proxies)?,
        })
    }

    /// The client's address. From a peer that is not a trusted proxy, the
    /// peer. From a trusted proxy, walking `X-Forwarded-For` from the right
    /// (each proxy appends the address it saw), the first address that is
    /// not a trusted proxy: entries to its left were written by the client
    /// and prove nothing. An entry that is not an address ends the walk.
    pub fn resolve(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trust_every_peer && !self.proxies.contains(peer) {
            return peer;
        }
        let mut client = peer;
        let values: Vec<&str> = headers
            .get_all(crate::headers::X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        for entry in values.iter().rev().flat_map(|v| v.rsplit(',')) {
            let Some(ip) = parse_forwarded_entry(entry) else {
                break;
            };
            client = ip;
            if !self.proxies.contains(ip) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port
/// (`192.0.2.7:5678`, `[2001:db8::1]:443`).
fn parse_forwarded_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<std::net::SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn rules(allow: &[&str], deny: &[&str]) -> IpRules {
        let cfg = IpRulesConfig {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        };
        IpRules::build(&cfg).unwrap().unwrap()
    }

    #[test]
    fn deny_wins_and_allow_lists_refuse_the_rest() {
        let r = rules(
            &["10.0.0.0/8", "2001:db8::/32"],
            &["10.9.0.0/16", "10.1.2.3"],
        );
        for (ip, want) in [
            ("10.0.0.1", IpVerdict::Allowed),
            ("10.255.255.255", IpVerdict::Allowed),
            ("::ffff:10.0.0.1", IpVerdict::Allowed),
            ("2001:db8:1::5", IpVerdict::Allowed),
            ("10.9.4.4", IpVerdict::Denied),
            ("10.1.2.3", IpVerdict::Denied),
            ("10.1.2.4", IpVerdict::Allowed),
            ("11.0.0.1", IpVerdict::NotAllowed),
            ("2001:db9::1", IpVerdict::NotAllowed),
        ] {
            assert_eq!(r.check(ip.parse().unwrap()), want, "{ip}");
        }
        let deny_only = rules(&[], &["0.0.0.0/0"]);
        assert_eq!(
            deny_only.check("1.2.3.4".parse().unwrap()),
            IpVerdict::Denied
        );
        assert_eq!(deny_only.check("::1".parse().unwrap()), IpVerdict::Allowed);
    }

    #[test]
    fn empty_rules_prepare_to_nothing_and_bad_entries_are_named() {
        assert!(IpRules::build(&IpRulesConfig::default()).unwrap().is_none());
        let bad = IpRulesConfig {
            allow: vec!["10.0.0.0/8".into(), "nope".into()],
            deny: vec!["10.0.0.1/8".into()],
        };
        let issues = IpRules::build(&bad).unwrap_err();
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["allow[1]", "deny[0]"]);
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let lb: IpAddr = "10.0.0.5".parse().unwrap();
        let stranger: IpAddr = "198.51.100.9".parse().unwrap();
        let trusted = ClientAddress::build(false, &["10.0.0.0/24".into()]).unwrap();
        let h = xff(&["192.0.2.1, 203.0.113.7"]);
        assert_eq!(trusted.resolve(&h, lb).to_string(), "203.0.113.7");
        assert_eq!(trusted.resolve(&h, stranger), stranger);
        // Two trusted hops: the walk passes the inner proxy.
        let h = xff(&["192.0.2.1, 203.0.113.7", "10.0.0.9"]);
        assert_eq!(trusted.resolve(&h, lb).to_string(), "203.0.113.7");
        // Nothing but proxies: the leftmost.
        let h = xff(&["10.0.0.8, 10.0.0.9"]);
        assert_eq!(trusted.resolve(&h, lb).to_string(), "10.0.0.8");
        // Garbage ends the walk at the last good address.
        let h = xff(&["203.0.113.7, garbage"]);
        assert_eq!(trusted.resolve(&h, lb), lb);
        let h = xff(&["[2001:db8::7]:443, 192.0.2.4:5678"]);
        assert_eq!(trusted.resolve(&h, lb).to_string(), "192.0.2.4");
        // Every peer trusted for one hop: the entry it appended.
        let every = ClientAddress::build(true, &[]).unwrap();
        let h = xff(&["192.0.2.1, 203.0.113.7"]);
        assert_eq!(every.resolve(&h, stranger).to_string(), "203.0.113.7");
        assert_eq!(every.resolve(&HeaderMap::new(), stranger), stranger);
        let none = ClientAddress::default();
        assert_eq!(none.resolve(&h, stranger), stranger);
    }
}
