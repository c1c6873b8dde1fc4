//! The data plane's threads: one runtime per worker, each with its own
//! socket per public listener.
//!
//! Every worker is an OS thread running a single-threaded tokio runtime
//! that accepts on its own `SO_REUSEPORT` socket and serves those
//! connections to the end, so a request never crosses threads: its
//! connection, its upstream exchange and the upstream keep-alive pool (see
//! `gateway_upstream`'s native client) all stay on one core, and nothing on
//! the hot path is shared but the read-mostly config snapshot.
//!
//! How load spreads: the kernel hashes each new connection to one of the
//! listening sockets, so connections spread evenly over the workers; a
//! worker never takes another's connections (there is no work stealing),
//! so an idle worker cannot slow a busy one down, and a busy worker's
//! connections wait only on each other. Long-lived connections that
//! happen to hash to one worker stay there; on machines where that
//! matters, more workers than cores or a client-side connection pool
//! spread them further.
//!
//! The process's main runtime keeps everything else: the admin API,
//! health checks, key and config reloads, store maintenance.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::server::{self, BoundListener, ServeContext};

/// The running workers.
pub(crate) struct Workers {
    /// One per worker: fires when that worker stopped accepting.
    accepting: Vec<oneshot::Receiver<()>>,
    ctx: Arc<ServeContext>,
}

impl Workers {
    /// Starts `count` workers serving `bound` (each listener bound shared
    /// when `count` > 1). Every socket is bound before any thread starts,
    /// so a failure leaves nothing running.
    pub(crate) fn start(
        count: usize,
        bound: Vec<BoundListener>,
        ctx: Arc<ServeContext>,
    ) -> anyhow::Result<Self> {
        let mut per_worker: Vec<Vec<BoundListener>> = Vec::with_capacity(count);
        for _ in 1..count {
            per_worker.push(
                bound
                    .iter()
                    .map(BoundListener::share)
                    .collect::<Result<_, _>>()?,
            );
        }
        per_worker.insert(0, bound);

        let mut accepting = Vec::with_capacity(count);
        for (i, listeners) in per_worker.into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("gatehouse-w{i}"))
                .build()?;
            let (done, stopped) = oneshot::channel();
            accepting.push(stopped);
            let ctx = ctx.clone();
            std::thread::Builder::new()
                .name(format!("gatehouse-w{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let serving = listeners.into_iter().map(|b| server::serve(b, ctx.clone()));
                        futures_util::future::join_all(serving).await;
                        let _ = done.send(());
                        // The worker's connections live on its runtime:
                        // it runs until they are all done (or the
                        // process ends after the drain's grace).
                        ctx.connections.wait().await;
                    });
                })?;
        }
        Ok(Self { accepting, ctx })
    }

    /// Waits until every worker stopped accepting (after `stop` fired).
    pub(crate) async fn stopped_accepting(&mut self) {
        for stopped in &mut self.accepting {
            let _ = stopped.await;
        }
    }
}

/// A gateway dropped without a shutdown still ends its workers: they stop
/// accepting, close their connections gracefully, and their threads end.
impl Drop for Workers {
    fn drop(&mut self) {
        self.ctx.stop.cancel();
        self.ctx.connections.close();
    }
}

/// How many workers `[gateway] workers` asks for: absent, one per CPU
/// this process may run on (its affinity mask, so `taskset` counts).
pub(crate) fn count(configured: Option<usize>) -> usize {
    configured.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
