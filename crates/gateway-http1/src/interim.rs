//! Interim (1xx) responses from an upstream, relayed to the client.
//!
//! The client connection driver runs each request's service future inside
//! `relaying`; an upstream exchange driven in that same task calls
//! [`relay`] when it reads a 1xx head, and the driver writes it to the
//! client before the final response. A task-local rather than a request
//! extension: nothing is allocated per request, and work that left the
//! request's task (a coalesced cache fill, a background refresh) relays
//! nothing, as it should: its 1xx belongs to no client in particular.

use std::future::Future;
use std::sync::Arc;

use http::{HeaderMap, StatusCode};
use parking_lot::Mutex;

/// The 1xx heads read upstream and not yet written to the client; one per
/// client connection.
pub(crate) type Relayed = Arc<Mutex<Vec<(StatusCode, HeaderMap)>>>;

tokio::task_local! {
    static INTERIM: Relayed;
}

/// Runs `fut` with 1xx relaying into `relayed`.
pub(crate) fn relaying<F: Future>(relayed: Relayed, fut: F) -> impl Future<Output = F::Output> {
    INTERIM.scope(relayed, fut)
}

/// Hands a 1xx head (other than 100 and 101, which belong to their own
/// exchange) to the client connection serving this task, if it relays
/// them. Returns whether it was taken.
pub fn relay(status: StatusCode, headers: &HeaderMap) -> bool {
    INTERIM
        .try_with(|relayed| relayed.lock().push((status, headers.clone())))
        .is_ok()
}
