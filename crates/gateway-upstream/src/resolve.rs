//! How a host name becomes addresses, and an SRV name becomes hosts, for
//! service discovery: the [`Resolve`] trait, the system resolver behind it
//! (hickory, with the system's DNS configuration) and the bounds on how
//! often it is asked.
//! Kept apart from the refresh task ([`crate::discovery`]) so the config
//! can name a resolver without depending on the cluster.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Shortest wait between two resolutions, whatever the TTL says: a zero
/// TTL must not turn into a query loop.
pub const MIN_DNS_REFRESH: Duration = Duration::from_secs(1);
/// Longest `dns_refresh` accepted.
pub const MAX_DNS_REFRESH: Duration = Duration::from_secs(3600);

/// One answer: the addresses a host name has now, and for how long the
/// resolver says they stay valid, when it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Addresses, in the resolver's order.
    pub addrs: Vec<IpAddr>,
    /// Time to live of the answer; `None` when the source has none.
    pub ttl: Option<Duration>,
}

/// One SRV record (RFC 2782): where one instance of a service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// Lower values are tried first.
    pub priority: u16,
    /// Relative share among records of the same priority; 0 means "only a
    /// very small share".
    pub weight: u16,
    /// TCP port of the service on `target`.
    pub port: u16,
    /// Host name of the instance, without the trailing dot; `"."` says the
    /// service is decidedly not available at this name.
    pub target: String,
}

/// One SRV answer: the records, and for how long the resolver says they
/// stay valid, when it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvAnswer {
    /// Records, in the resolver's order.
    pub records: Vec<SrvRecord>,
    /// Time to live of the answer; `None` when the source has none.
    pub ttl: Option<Duration>,
}

/// The future [`Resolve::resolve`] returns.
pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = Result<Resolved, String>> + Send + 'a>>;

/// The future [`Resolve::resolve_srv`] returns.
pub type SrvFuture<'a> = Pin<Box<dyn Future<Output = Result<SrvAnswer, String>> + Send + 'a>>;

/// Turns names into what service discovery needs. Called by a cluster's
/// refresh task. `Err` (or an empty answer) keeps the cluster's last good
/// set of targets.
pub trait Resolve: Send + Sync + fmt::Debug + 'static {
    /// Resolves `host` (a name, never an IP literal) to its addresses.
    /// Called once per host-name target per refresh, and once per host an
    /// SRV answer names.
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a>;

    /// Looks up the SRV records of `name` (`_service._tcp.domain`). Called
    /// once per SRV target per refresh, before the hosts the records name
    /// are resolved with [`Resolve::resolve`]. The default has no SRV
    /// source and answers `Err`, which keeps the last good set.
    fn resolve_srv<'a>(&'a self, name: &'a str) -> SrvFuture<'a> {
        Box::pin(async move {
            Err(format!(
                "this resolver cannot look up SRV records (`{name}`)"
            ))
        })
    }
}

/// The resolver a cluster uses: shared, compared by identity so two configs
/// with the same resolver are equal (and a reload keeps the cluster).
#[derive(Clone)]
pub struct ResolverHandle(pub Arc<dyn Resolve>);

impl ResolverHandle {
    /// Wraps a resolver.
    pub fn new(resolver: impl Resolve) -> Self {
        Self(Arc::new(resolver))
    }
}

impl Default for ResolverHandle {
    /// The system resolver, one per process.
    fn default() -> Self {
        static SYSTEM: OnceLock<ResolverHandle> = OnceLock::new();
        SYSTEM
            .get_or_init(|| ResolverHandle::new(SystemResolver::default()))
            .clone()
    }
}

impl PartialEq for ResolverHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for ResolverHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// DNS through hickory with the system configuration (`/etc/resolv.conf`,
/// `/etc/hosts`); the answer's TTL is reported. Built on first use.
#[derive(Default)]
pub struct SystemResolver {
    inner: OnceLock<Result<hickory_resolver::TokioResolver, String>>,
}

impl fmt::Debug for SystemResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SystemResolver")
    }
}

impl SystemResolver {
    fn resolver(&self) -> Result<&hickory_resolver::TokioResolver, String> {
        self.inner
            .get_or_init(|| {
                hickory_resolver::TokioResolver::builder_tokio()
                    .map(|b| b.build())
                    .map_err(|e| format!("cannot read the system DNS configuration: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// How long an answer valid until `deadline` still holds.
fn ttl_until(deadline: std::time::Instant) -> Option<Duration> {
    Some(deadline.saturating_duration_since(std::time::Instant::now()))
}

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a> {
        Box::pin(async move {
            let answer = self
                .resolver()?
                .lookup_ip(host)
                .await
                .map_err(|e| format!("resolving `{host}` failed: {e}"))?;
            Ok(Resolved {
                addrs: answer.iter().collect(),
                ttl: ttl_until(answer.valid_until()),
            })
        })
    }

    fn resolve_srv<'a>(&'a self, name: &'a str) -> SrvFuture<'a> {
        Box::pin(async move {
            let answer = self
                .resolver()?
                .srv_lookup(name)
                .await
                .map_err(|e| format!("looking up the SRV records of `{name}` failed: {e}"))?;
            let records = answer
                .iter()
                .map(|srv| {
                    let target = srv.target().to_utf8();
                    SrvRecord {
                        priority: srv.priority(),
                        weight: srv.weight(),
                        port: srv.port(),
                        target: match target.strip_suffix('.') {
                            Some(host) if !host.is_empty() => host.to_string(),
                            _ => target,
                        },
                    }
                })
                .collect();
            Ok(SrvAnswer {
                records,
                ttl: ttl_until(answer.as_lookup().valid_until()),
            })
        })
    }
}
