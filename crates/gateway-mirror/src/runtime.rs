//! The dark launch's own thread: shadow traffic yields the CPU to live
//! traffic.
//!
//! Mirroring a request costs about as much CPU as proxying it (a second
//! upstream exchange, then the comparison). Run on the gateway's workers,
//! that work competes with live requests as an equal, so a gateway that is
//! CPU-bound loses throughput in proportion to the sample rate. Here it runs
//! on one thread with a current-thread runtime whose nice value is raised:
//! when the machine has idle CPU the shadow thread takes it and every
//! sampled request is mirrored; when live traffic needs the CPU the kernel
//! gives the shadow thread only its small share, its queue fills, and
//! [`MirrorEngine::plan`](crate::MirrorEngine::plan) drops further copies
//! (counted as `queue_full`) instead of slowing clients down.
//!
//! Nice values: 0 is the live traffic's own priority, 19 the lowest. Under
//! the Linux CFS scheduler nice 10 weighs about a tenth of nice 0.
//!
//! A starved shadow thread would also make the candidate look slow (its
//! responses wait for the thread to run), so the runtime carries a
//! [`LagProbe`]: a timer that notices when it fires late. Samples taken
//! while the thread lagged are compared but left out of the latency test.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Default nice value of the shadow thread.
pub const DEFAULT_SHADOW_NICE: i32 = 19;

/// Whether the shadow thread runs under `SCHED_IDLE` by default.
pub const DEFAULT_SHADOW_IDLE: bool = true;

/// A thread running a current-thread tokio runtime at a lowered priority.
/// Dropping it stops the runtime; shadow work still queued is abandoned
/// (no client waits on it).
pub struct ShadowRuntime {
    handle: Handle,
    lag: Arc<LagProbe>,
    nice: i32,
    idle: bool,
    stop: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for ShadowRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShadowRuntime")
            .field("nice", &self.nice)
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

impl ShadowRuntime {
    /// Starts the thread (`gatehouse-shadow`) and sets its nice value
    /// (0–19) and, with `idle`, the `SCHED_IDLE` policy: then it runs only
    /// on CPU no other thread wants, and (unlike nice 19) does not preempt
    /// busy workers for its share, which left their caches cold and cost
    /// live traffic more than the share itself (`docs/performance.md`). A
    /// priority that cannot be set is logged, not fatal: the dark launch
    /// then runs at the live traffic's priority.
    pub fn start(nice: i32, idle: bool) -> io::Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<Handle>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("gatehouse-shadow".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .thread_name("gatehouse-shadow")
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                if let Err(e) = lower_priority(nice) {
                    tracing::warn!(nice, error = %e, "cannot lower the dark-launch thread's priority; shadow traffic runs at the live traffic's priority");
                }
                if idle {
                    if let Err(e) = idle_policy() {
                        tracing::warn!(error = %e, "cannot give the dark-launch thread the SCHED_IDLE policy; it keeps its nice value");
                    }
                }
                let _ = ready_tx.send(Ok(rt.handle().clone()));
                // The runtime runs its spawned tasks while this waits.
                rt.block_on(async {
                    let _ = stop_rx.await;
                });
                rt.shutdown_timeout(Duration::from_millis(100));
            })?;
        let handle = ready_rx
            .recv()
            .map_err(|_| io::Error::other("the dark-launch thread exited while starting"))??;
        let lag = Arc::new(LagProbe::new());
        handle.spawn(lag.clone().run());
        Ok(Self {
            handle,
            lag,
            nice,
            idle,
            stop: Some(stop_tx),
        })
    }

    /// Where shadow tasks are spawned.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The thread's scheduling lag.
    pub fn lag(&self) -> &Arc<LagProbe> {
        &self.lag
    }

    /// The nice value asked for.
    pub fn nice(&self) -> i32 {
        self.nice
    }
}

impl Drop for ShadowRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Notices when the shadow thread waits for the CPU: a timer armed every
/// [`LagProbe::TICK`] that fires more than [`LagProbe::LATE`] late.
#[derive(Debug)]
pub struct LagProbe {
    origin: Instant,
    /// When the last late tick was seen, in µs after `origin` (0: never).
    last_late_us: AtomicU64,
}

impl LagProbe {
    /// How often the probe's timer is armed.
    pub const TICK: Duration = Duration::from_millis(10);
    /// How late a tick must fire to count as lag (timers are ms-granular).
    pub const LATE: Duration = Duration::from_millis(5);

    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
            last_late_us: AtomicU64::new(0),
        }
    }

    /// Records that the thread was seen lagging now.
    pub fn note_lag(&self) {
        let us = self.origin.elapsed().as_micros().max(1) as u64;
        self.last_late_us.store(us, Ordering::Relaxed);
    }

    /// Whether lag was seen at or after `t`, or within one tick before it
    /// (a late tick is only noticed when it finally runs).
    pub fn lagged_since(&self, t: Instant) -> bool {
        let last = self.last_late_us.load(Ordering::Relaxed);
        last != 0 && self.origin + Duration::from_micros(last) + Self::TICK + Self::LATE >= t
    }

    async fn run(self: Arc<Self>) {
        loop {
            let armed = Instant::now();
            tokio::time::sleep(Self::TICK).await;
            if armed.elapsed() > Self::TICK + Self::LATE {
                self.note_lag();
            }
        }
    }
}

/// Raises the calling thread's nice value (Linux: nice is per thread).
#[cfg(target_os = "linux")]
fn lower_priority(nice: i32) -> io::Result<()> {
    let tid = rustix::thread::gettid();
    // Never above the process's own priority (a gateway started nicer
    // than `nice` keeps its shadow thread at least as nice).
    let current = rustix::process::getpriority_process(Some(tid)).map_err(io::Error::from)?;
    if current >= nice {
        return Ok(());
    }
    rustix::process::setpriority_process(Some(tid), nice).map_err(io::Error::from)
}

/// Puts the calling thread under `SCHED_IDLE`.
#[cfg(target_os = "linux")]
fn idle_policy() -> io::Result<()> {
    use thread_priority::unix::{
        set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
        ThreadSchedulePolicy,
    };
    set_thread_priority_and_policy(
        thread_native_id(),
        thread_priority::ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
    )
    .map_err(|e| io::Error::other(format!("{e:?}")))
}

#[cfg(not(target_os = "linux"))]
fn idle_policy() -> io::Result<()> {
    Err(io::Error::other("SCHED_IDLE is only set on Linux"))
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: i32) -> io::Result<()> {
    Err(io::Error::other("per-thread priority is only set on Linux"))
}

/// The nice value of the thread that runs `handle`'s tasks (Linux), for
/// tests and diagnostics.
#[cfg(target_os = "linux")]
pub async fn nice_of(handle: &Handle) -> io::Result<i32> {
    handle
        .spawn(async {
            rustix::process::getpriority_process(Some(rustix::thread::gettid()))
                .map_err(io::Error::from)
        })
        .await
        .map_err(io::Error::other)?
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shadow_tasks_run_on_a_thread_with_the_asked_nice_value() {
        let own = || rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let before = own();
        let rt = ShadowRuntime::start(7, false).unwrap();
        assert_eq!(nice_of(rt.handle()).await.unwrap(), 7);
        assert_eq!(
            policy_of(rt.handle()).await,
            normal(NormalThreadSchedulePolicy::Other)
        );
        // The caller's own thread keeps its priority.
        assert_eq!(own(), before);
        let name = rt
            .handle()
            .spawn(async { std::thread::current().name().map(str::to_owned) })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("gatehouse-shadow"));
    }

    use thread_priority::unix::{NormalThreadSchedulePolicy, ThreadSchedulePolicy};

    fn normal(p: NormalThreadSchedulePolicy) -> ThreadSchedulePolicy {
        ThreadSchedulePolicy::Normal(p)
    }

    async fn policy_of(handle: &Handle) -> ThreadSchedulePolicy {
        handle
            .spawn(async { thread_priority::unix::thread_schedule_policy().unwrap() })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_default_thread_runs_under_sched_idle_and_the_caller_does_not() {
        let rt = ShadowRuntime::start(DEFAULT_SHADOW_NICE, DEFAULT_SHADOW_IDLE).unwrap();
        assert_eq!(
            policy_of(rt.handle()).await,
            normal(NormalThreadSchedulePolicy::Idle)
        );
        assert_ne!(
            thread_priority::unix::thread_schedule_policy().unwrap(),
            normal(NormalThreadSchedulePolicy::Idle)
        );
    }

    #[test]
    fn lag_counts_for_samples_that_overlap_it() {
        let p = LagProbe::new();
        let before = Instant::now();
        assert!(!p.lagged_since(before), "no lag seen yet");
        p.note_lag();
        assert!(p.lagged_since(before));
        let long_after = Instant::now() + Duration::from_secs(1);
        assert!(!p.lagged_since(long_after));
    }

    #[test]
    fn a_blocked_shadow_thread_is_noticed() {
        let rt = ShadowRuntime::start(0, false).unwrap();
        let started = Instant::now();
        // Hog the shadow thread the way CPU starvation would.
        drop(
            rt.handle()
                .spawn(async { std::thread::sleep(Duration::from_millis(50)) }),
        );
        for _ in 0..200 {
            if rt.lag().lagged_since(started) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("a shadow thread blocked for 50 ms went unnoticed");
    }

    #[tokio::test]
    async fn dropping_it_stops_the_thread() {
        let rt = ShadowRuntime::start(DEFAULT_SHADOW_NICE, DEFAULT_SHADOW_IDLE).unwrap();
        let h = rt.handle().clone();
        drop(rt);
        // Give the thread a moment to leave `block_on`.
        for _ in 0..100 {
            if h.spawn(async {}).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the shadow runtime still runs tasks after being dropped");
    }
}
