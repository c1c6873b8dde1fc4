//! Address lists in the config: `[ip_rules]`, a route's `ip_rules` and
//! `[gateway] trusted_proxies`. Each entry is a CIDR block
//! (`10.0.0.0/8`, `2001:db8::/32`) or a single address (`192.0.2.7`).

use gateway_core::config_issue::{finish, ConfigIssue};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Allow and deny lists of client addresses (`[ip_rules]`, or a route's
/// `ip_rules`). A denied address is refused even when it is also allowed;
/// when `allow` is not empty, every address it does not hold is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpRulesConfig {
    /// Addresses allowed; empty allows every address not denied.
    pub allow: Vec<String>,
    /// Addresses refused, whatever `allow` says.
    pub deny: Vec<String>,
}

impl IpRulesConfig {
    /// Whether neither list has an entry.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Every entry that is not a CIDR block or an address.
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = cidr_issues("allow", &self.allow);
        issues.extend(cidr_issues("deny", &self.deny));
        finish(issues)
    }
}

/// Reads one entry: a CIDR block with no host bits set, or one address
/// (a /32 or /128). IPv4-mapped IPv6 blocks are refused: write the IPv4
/// block, which also matches mapped peers.
pub fn parse_cidr(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    let net = match entry.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => match entry.parse::<std::net::IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => {
                return Err(format!(
                    "`{entry}` is not a CIDR block or an IP address (write e.g. `10.0.0.0/8`, `2001:db8::/32` or `192.0.2.7`)"
                ))
            }
        },
    };
    if net.network() != net.addr() {
        return Err(format!(
            "`{entry}` has host bits set: did you mean `{}`?",
            net.trunc()
        ));
    }
    if let IpNet::V6(v6) = net {
        if v6.addr().to_ipv4_mapped().is_some() && v6.prefix_len() >= 96 {
            return Err(format!(
                "`{entry}` is an IPv4-mapped IPv6 block: write the IPv4 block instead (it also matches mapped addresses)"
            ));
        }
    }
    Ok(net)
}

/// Issues for the entries of list `key` that [`parse_cidr`] refuses, each
/// at `key[i]`.
pub fn cidr_issues(key: &str, entries: &[String]) -> Vec<ConfigIssue> {
    entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            parse_cidr(e)
                .err()
                .map(|m| ConfigIssue::new(format!("{key}[{i}]"), m))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_as_blocks_or_addresses() {
        for (entry, want) in [
            ("10.0.0.0/8", Ok("10.0.0.0/8")),
            ("192.0.2.7", Ok("192.0.2.7/32")),
            ("2001:db8::/32", Ok("2001:db8::/32")),
            ("::1", Ok("::1/128")),
            (" 10.1.0.0/16 ", Ok("10.1.0.0/16")),
            (
                "10.0.0.1/8",
                Err("has host bits set: did you mean `10.0.0.0/8`?"),
            ),
            ("10.0.0.0/33", Err("is not a CIDR block or an IP address")),
            ("example.com", Err("is not a CIDR block or an IP address")),
            ("::ffff:10.0.0.0/104", Err("IPv4-mapped")),
        ] {
            match (parse_cidr(entry), want) {
                (Ok(net), Ok(w)) => assert_eq!(net.to_string(), w, "{entry}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{entry}: {e}"),
                (got, want) => panic!("{entry}: got {got:?}, want {want:?}"),
            }
        }
    }
}
