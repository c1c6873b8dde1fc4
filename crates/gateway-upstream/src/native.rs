//! The native HTTP/1.1 client of a cleartext target, with a keep-alive
//! pool per worker thread.
//!
//! Each exchange runs in the request's own task ([`gateway_http1::client`]);
//! the idle connections wait in a pool owned by the thread that last used
//! them, a thread-local, so checking one out or in takes no lock and
//! touches no memory another core writes. The workers (`[gateway]
//! workers`) each run a single-threaded runtime, where a task never leaves
//! its thread: the pool is the worker's own. On a multi-threaded runtime
//! (the admin API's reads through a cluster) a connection is not kept
//! after its exchange, since nothing there ties a later task, or the
//! sweep, to the thread that holds it.
//!
//! An idle connection is checked before it is handed out: one the
//! upstream closed (or wrote to unasked) while idle is dropped, and a
//! reused connection that still fails before any response byte is
//! replaced by a fresh one once, when the request has no body to lose.
//! Connections idle longer than `pool.idle_timeout` are closed by a sweep
//! task on the worker's runtime, which runs while its pool holds any.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_core::Body;
use gateway_http1::client::{self, Checkin, ClientError, Connection};
use gateway_http1::HeadLimits;
use http::Response;
use rustc_hash::FxHashMap;
use tokio::net::TcpStream;

use crate::config::{ClusterConfig, TargetAddr};
use crate::connector::{ConnStats, OpenConnection};

/// The native client of one target.
#[derive(Debug)]
pub(crate) struct NativeClient {
    /// Identifies the target's connections in the per-thread pools; new
    /// for every built target, so a rebuilt target never gets an old
    /// target's connections.
    id: u64,
    /// `host:port` to connect to.
    authority: String,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    limits: HeadLimits,
    conns: Arc<ConnStats>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl NativeClient {
    pub(crate) fn new(addr: &TargetAddr, cfg: &ClusterConfig, conns: Arc<ConnStats>) -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            authority: addr.authority(),
            connect_timeout: cfg.connect_timeout,
            idle_timeout: cfg.pool.idle_timeout,
            max_idle: cfg.pool.max_idle_per_target,
            limits: HeadLimits::default(),
            conns,
        }
    }

    /// Sends the request `parts` describe, with `body`, on a pooled or new
    /// connection.
    pub(crate) async fn send(
        &self,
        parts: &http::request::Parts,
        body: Body,
    ) -> Result<Response<Body>, NativeError> {
        let outgoing = client::prepare(parts, &body);
        let Some(conn) = checkout(self.id, self.idle_timeout) else {
            let conn = self.connect().await?;
            return client::send_prepared(conn, &outgoing, body, &self.limits, self.home())
                .await
                .map_err(NativeError::Exchange);
        };
        // The upstream may have closed the idle connection just as it was
        // taken; a request without a body goes again on a fresh one, from
        // the same encoded head.
        let resend = http_body::Body::is_end_stream(&body);
        match client::send_prepared(conn, &outgoing, body, &self.limits, self.home()).await {
            Err(e) if resend && e.before_response() => {}
            done => return done.map_err(NativeError::Exchange),
        }
        let conn = self.connect().await?;
        client::send_prepared(
            conn,
            &outgoing,
            gateway_core::body::empty(),
            &self.limits,
            self.home(),
        )
        .await
        .map_err(NativeError::Exchange)
    }

    fn home(&self) -> Home {
        Home {
            id: self.id,
            max_idle: self.max_idle,
            idle_timeout: self.idle_timeout,
        }
    }

    async fn connect(&self) -> Result<Connection, NativeError> {
        let connecting = TcpStream::connect(self.authority.as_str());
        let io = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => return Err(NativeError::Connect(e)),
            Err(_) => return Err(NativeError::ConnectTimeout(self.connect_timeout)),
        };
        let _ = io.set_nodelay(true);
        Ok(Connection::new(io, OpenConnection::new(self.conns.clone())))
    }
}

/// Why a native exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NativeError {
    #[error("{0}")]
    Connect(#[source] std::io::Error),
    #[error("connecting took longer than {}", humantime::format_duration(*.0))]
    ConnectTimeout(Duration),
    #[error("{0}")]
    Exchange(#[source] ClientError),
}

/// Where a connection goes back to: the pool of the thread that finishes
/// the exchange.
struct Home {
    id: u64,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Checkin for Home {
    fn checkin(self, conn: Connection) {
        checkin(&self, conn);
    }
}

struct Idle {
    conn: Connection,
    since: Instant,
}

/// Longest pause between two sweeps of a thread's pool (shorter when a
/// target's `idle_timeout` is).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What each pool entry remembers of its target's settings, for sweeps.
struct Entry {
    idle: Vec<Idle>,
    idle_timeout: Duration,
}

thread_local! {
    /// Keyed by target id, a counter: a fast hash without flood
    /// resistance serves (a lookup at every checkout and checkin).
    static POOL: RefCell<FxHashMap<u64, Entry>> = RefCell::new(FxHashMap::default());
    /// Whether this thread's sweep task runs.
    static SWEEPING: Cell<bool> = const { Cell::new(false) };
}

/// The most recently used idle connection of target `id` that is still
/// usable (warm in the upstream's caches and least likely closed).
fn checkout(id: u64, idle_timeout: Duration) -> Option<Connection> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let entry = pool.get_mut(&id)?;
        let now = Instant::now();
        while let Some(idle) = entry.idle.pop() {
            if now.duration_since(idle.since) < idle_timeout && idle.conn.is_usable() {
                return Some(idle.conn);
            }
        }
        None
    })
}

fn checkin(home: &Home, conn: Connection) {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let single_threaded =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::CurrentThread);
    if !single_threaded {
        return;
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let entry = pool.entry(home.id).or_insert_with(|| Entry {
            idle: Vec::new(),
            idle_timeout: home.idle_timeout,
        });
        if entry.idle.len() < home.max_idle {
            entry.idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    });
    if !SWEEPING.get() {
        SWEEPING.set(true);
        // A single-threaded runtime: the task runs on this thread.
        tokio::spawn(sweep());
    }
}

/// Closes this thread's connections that have been idle too long, for as
/// long as the pool holds any.
async fn sweep() {
    // Also when the runtime drops the task: a later runtime on this
    // thread arms its own.
    struct Disarm;
    impl Drop for Disarm {
        fn drop(&mut self) {
            let _ = SWEEPING.try_with(|s| s.set(false));
        }
    }
    let _disarm = Disarm;
    loop {
        let pause = POOL.with(|pool| {
            pool.borrow()
                .values()
                .map(|e| e.idle_timeout)
                .min()
                .map(|t| t.min(SWEEP_EVERY))
        });
        let Some(pause) = pause else { break };
        tokio::time::sleep(pause).await;
        let now = Instant::now();
        let empty = POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            pool.retain(|_, entry| {
                let timeout = entry.idle_timeout;
                entry
                    .idle
                    .retain(|idle| now.duration_since(idle.since) < timeout);
                !entry.idle.is_empty()
            });
            pool.is_empty()
        });
        if empty {
            break;
        }
    }
}

/// Idle connections of target `id` in this thread's pool (for tests).
#[cfg(test)]
pub(crate) fn idle_here(id: u64) -> usize {
    POOL.with(|pool| pool.borrow().get(&id).map_or(0, |e| e.idle.len()))
}

#[cfg(test)]
impl NativeClient {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use http::Request;
    use http_body_util::BodyExt as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    /// An upstream answering every request head with `200 ok`, keeping
    /// the connection or, with `close_after_each`, closing it right after
    /// the response without saying so (as an upstream whose idle timeout
    /// just passed does). Counts accepted connections.
    async fn upstream(close_after_each: bool) -> (TargetAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut io, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while let Ok(n @ 1..) = io.read(&mut chunk).await {
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if io.write_all(answer).await.is_err() || close_after_each {
                                return;
                            }
                        }
                    }
                });
            }
        });
        let addr = TargetAddr::parse(&format!("127.0.0.1:{port}")).unwrap();
        (addr, accepted)
    }

    fn client(addr: &TargetAddr) -> NativeClient {
        let cfg = ClusterConfig::with_targets([addr.authority()]);
        NativeClient::new(addr, &cfg, ConnStats::new("c".into(), addr.to_string()))
    }

    fn get() -> http::request::Parts {
        Request::get("/")
            .header("host", "up.test")
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    async fn ok(client: &NativeClient) {
        let res = client
            .send(&get(), gateway_core::body::empty())
            .await
            .expect("a response");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "ok");
    }

    #[tokio::test]
    async fn sequential_requests_share_one_pooled_connection() {
        let (addr, accepted) = upstream(false).await;
        let client = client(&addr);
        for _ in 0..5 {
            ok(&client).await;
            assert_eq!(idle_here(client.id()), 1);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(client.conns.open(), 1);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_while_idle_is_replaced_not_failed() {
        let (addr, accepted) = upstream(true).await;
        let client = client(&addr);
        for _ in 0..5 {
            ok(&client).await;
            // Let the upstream's close arrive (or not): both must work.
            tokio::task::yield_now().await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn an_idle_connection_past_its_timeout_is_not_reused() {
        let (addr, accepted) = upstream(false).await;
        let mut cfg = ClusterConfig::with_targets([addr.authority()]);
        cfg.pool.idle_timeout = Duration::from_millis(1);
        let client = NativeClient::new(&addr, &cfg, ConnStats::new("c".into(), addr.to_string()));
        ok(&client).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        ok(&client).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(client.conns.open(), 1, "the expired connection was closed");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = TargetAddr::parse(&listener.local_addr().unwrap().to_string()).unwrap();
        drop(listener);
        let err = client(&addr)
            .send(&get(), gateway_core::body::empty())
            .await
            .unwrap_err();
        assert!(matches!(err, NativeError::Connect(_)), "{err:?}");
    }
}
