//! ip rules: the client address (see `accept`) against `[ip_rules]`,
//! before routing, so a denied address learns nothing about the routes;
//! then against the route's `ip_rules`, before authentication, so it
//! costs no credential check. Both must let the address through.

use gateway_core::{errors, Problem};
use std::net::IpAddr;

use super::context::{RequestContext, Routed};
use crate::cidr::{IpRules, IpVerdict};
use crate::gateway::Snapshot;

/// `[ip_rules]`: every request, routed or not.
pub(super) fn global(ctx: &RequestContext, snapshot: &Snapshot) -> Result<(), Problem> {
    match &snapshot.ip_rules {
        Some(rules) => check(rules, ctx.client_ip, "global"),
        None => Ok(()),
    }
}

/// The route's `ip_rules`.
pub(super) fn route(ctx: &RequestContext, routed: &Routed) -> Result<(), Problem> {
    match &routed.route().ip_rules {
        Some(rules) => check(rules, ctx.client_ip, "route"),
        None => Ok(()),
    }
}

fn check(rules: &IpRules, ip: IpAddr, scope: &'static str) -> Result<(), Problem> {
    let why = match rules.check(ip) {
        IpVerdict::Allowed => return Ok(()),
        IpVerdict::Denied => "is denied",
        IpVerdict::NotAllowed => "is not in the allow list",
    };
    metrics::counter!("gatehouse_ip_refused_total", "scope" => scope).increment(1);
    let place = if scope == "global" {
        "by the gateway's ip_rules"
    } else {
        "on this route"
    };
    Err(Problem::new(
        &errors::ADDRESS_FORBIDDEN,
        format!("client address {ip} {why} {place}"),
    ))
}
