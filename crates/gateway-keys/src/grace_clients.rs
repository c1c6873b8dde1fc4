//! Who still uses a retiring key: for each key in its grace period, the
//! distinct clients (address and `User-Agent`) that sent it on this node,
//! with how often and when last. This is what an operator needs before the
//! grace period ends: which caller has not moved to the new key yet.
//!
//! Only requests with a retiring key are noted, so keys in normal use cost
//! nothing here. Memory is bounded: [`MAX_CLIENTS_PER_KEY`] clients per
//! key (later ones are only counted, in `others`) and [`MAX_KEYS`] keys;
//! a key leaves the table when it expires or is revoked.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use parking_lot::Mutex;
use serde::Serialize;

use crate::key::KeyId;

/// Distinct clients kept per retiring key.
pub const MAX_CLIENTS_PER_KEY: usize = 32;
/// Retiring keys tracked at most.
pub const MAX_KEYS: usize = 10_000;
/// Longest `User-Agent` kept, in bytes (longer ones are cut at a character
/// boundary).
pub const MAX_USER_AGENT: usize = 200;

/// One client that sent a retiring key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GraceClient {
    /// The client's address as the gateway resolved it (trusted proxies
    /// applied); `None` when it was not known.
    #[schema(value_type = Option<String>)]
    pub ip: Option<IpAddr>,
    /// Its `User-Agent`, if it sent one.
    pub user_agent: Option<String>,
    /// Requests it made with the retiring key.
    pub requests: u64,
    /// Its first and last such request.
    pub first_seen: DateTime<Utc>,
    /// See `first_seen`.
    pub last_seen: DateTime<Utc>,
}

/// The clients of one retiring key, most recent first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GraceClientsReport {
    /// Up to [`MAX_CLIENTS_PER_KEY`] clients.
    pub clients: Vec<GraceClient>,
    /// Requests from clients beyond those.
    pub others: u64,
}

#[derive(Default)]
struct KeyClients {
    clients: Vec<GraceClient>,
    others: u64,
}

/// The table, shared by every request of the node.
#[derive(Default)]
pub struct GraceClients {
    keys: DashMap<KeyId, Mutex<KeyClients>>,
}

impl GraceClients {
    /// Notes a request with the retiring key `id`.
    pub fn note(
        &self,
        id: &KeyId,
        ip: Option<IpAddr>,
        user_agent: Option<&str>,
        at: DateTime<Utc>,
    ) {
        let user_agent = user_agent.map(cut);
        let note = |k: &mut KeyClients| {
            if let Some(c) = k
                .clients
                .iter_mut()
                .find(|c| c.ip == ip && c.user_agent.as_deref() == user_agent)
            {
                c.requests += 1;
                c.last_seen = c.last_seen.max(at);
            } else if k.clients.len() < MAX_CLIENTS_PER_KEY {
                k.clients.push(GraceClient {
                    ip,
                    user_agent: user_agent.map(str::to_string),
                    requests: 1,
                    first_seen: at,
                    last_seen: at,
                });
            } else {
                k.others += 1;
            }
        };
        if let Some(k) = self.keys.get(id) {
            note(&mut k.lock());
            return;
        }
        if self.keys.len() >= MAX_KEYS {
            return;
        }
        note(&mut self.keys.entry(id.clone()).or_default().lock());
    }

    /// The clients of `id`, the most recently seen first.
    pub fn report(&self, id: &KeyId) -> GraceClientsReport {
        let Some(k) = self.keys.get(id) else {
            return GraceClientsReport::default();
        };
        let k = k.lock();
        let mut clients = k.clients.clone();
        clients.sort_by_key(|c| std::cmp::Reverse(c.last_seen));
        GraceClientsReport {
            clients,
            others: k.others,
        }
    }

    /// Drops `id` (its grace period is over).
    pub fn forget(&self, id: &KeyId) {
        self.keys.remove(id);
    }
}

fn cut(s: &str) -> &str {
    if s.len() <= MAX_USER_AGENT {
        return s;
    }
    let mut end = MAX_USER_AGENT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn counts_each_client_once_most_recent_first_and_bounds_the_rest() {
        let t = GraceClients::default();
        let id = KeyId::generate();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        t.note(&id, Some(a), Some("billing-batch/2.1"), at(0));
        t.note(&id, Some(a), Some("billing-batch/2.1"), at(5));
        t.note(&id, Some(a), Some("curl/8.5"), at(3));
        t.note(&id, Some(b), None, at(4));
        let r = t.report(&id);
        let seen: Vec<_> = r
            .clients
            .iter()
            .map(|c| (c.ip, c.user_agent.as_deref(), c.requests))
            .collect();
        assert_eq!(
            seen,
            [
                (Some(a), Some("billing-batch/2.1"), 2),
                (Some(b), None, 1),
                (Some(a), Some("curl/8.5"), 1),
            ]
        );
        assert_eq!(
            (r.clients[0].first_seen, r.clients[0].last_seen),
            (at(0), at(5))
        );
        assert_eq!(r.others, 0);

        for i in 0..MAX_CLIENTS_PER_KEY as u32 + 5 {
            t.note(&id, Some(IpAddr::from([10, 1, 0, i as u8])), None, at(10));
        }
        let r = t.report(&id);
        assert_eq!(r.clients.len(), MAX_CLIENTS_PER_KEY);
        assert_eq!(r.others, 3 + 5);

        t.forget(&id);
        assert_eq!(t.report(&id), GraceClientsReport::default());
    }

    #[test]
    fn a_long_user_agent_is_cut_at_a_character_boundary() {
        let t = GraceClients::default();
        let id = KeyId::generate();
        let long = "é".repeat(MAX_USER_AGENT);
        t.note(&id, None, Some(&long), at(0));
        let kept = t.report(&id).clients[0].user_agent.clone().unwrap();
        assert!(kept.len() <= MAX_USER_AGENT && long.starts_with(&kept));
        assert_eq!(kept.len(), MAX_USER_AGENT);
    }
}
