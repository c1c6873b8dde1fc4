//! client cert: the certificate headers an upstream may trust (the
//! client's own copies removed, the verified values set), and, on a route
//! with `client_cert`, the refusal of connections without an accepted
//! certificate; on a route whose `auth` takes `client_cert`, the
//! certificate's names for the authentication stage. Before
//! authentication: a refused caller costs no credential check.

use gateway_core::{errors, Body, Problem};
use http::Request;

use super::context::{ConnInfo, Routed};
use crate::client_cert;

pub(super) fn forward_and_require(
    req: &mut Request<Body>,
    routed: &Routed,
    conn: &ConnInfo,
) -> Result<(), Problem> {
    let cert = conn.client_cert();
    client_cert::forward(req.headers_mut(), cert);
    // A route that authenticates by certificate gets its names.
    if let (true, Some(cert)) = (routed.route().auth_by_cert, cert) {
        req.extensions_mut().insert(cert.names.clone());
    }
    let Some(rule) = &routed.route().client_cert else {
        return Ok(());
    };
    client_cert::check(rule, cert).map_err(|why| {
        metrics::counter!("gatehouse_client_cert_refused_total", "route" => routed.route().name.to_string())
            .increment(1);
        Problem::new(&errors::CLIENT_CERT_REQUIRED, why)
    })
}
