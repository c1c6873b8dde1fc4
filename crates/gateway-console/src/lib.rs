//! The Gatehouse admin console.
//!
//! - [`assets`]: the console's HTML, CSS and JavaScript (with the vendored
//!   uPlot charting library), embedded in the binary and served at `/` and
//!   `/console/...`: no Node, npm or network at build or run time.
//! - [`session`]: sign-in with the admin or viewer token, exchanged for a
//!   session cookie; sign-out.
//! - [`role`]: [`Access`], admin or viewer, and what each may do.
//! - [`access`]: `access::authorize`, the one check every admin endpoint
//!   sits behind (bearer token or session, CSRF and origin checks for
//!   sessions).
//! - [`history`]: the in-process traffic history the charts draw from.
//! - [`launches`]: dark-launch score and verdict over time.
//! - [`routes`]: the console's HTTP endpoints (pages, session, history).
//!
//! The crate knows nothing about the pipeline: the gateway feeds
//! [`History`] from its log stage and mounts the routers on its admin
//! listener.

pub mod access;
pub mod assets;
pub mod history;
pub mod launches;
pub mod role;
pub mod routes;
pub mod session;

pub use access::{Caller, Tokens};
pub use history::{History, SeriesCache};
pub use role::Access;
pub use routes::{history_router, public_router, ConsoleState};
pub use session::Sessions;
