//! Small socket writes queued during one round of a current-thread tokio
//! runtime and sent together, in one `io_uring_enter`.
//!
//! Why: on a core a proxy shares with its upstream, a request written to
//! the sleeping upstream wakes it, and the scheduler lets it preempt the
//! writer as the `send` returns. The upstream answers that one request and
//! sleeps again, so every request costs both sides a pair of context
//! switches and the upstream an `epoll_wait` (measured with `perf sched`:
//! 0.7 preemptions per request; see `docs/performance.md`). Written from
//! one system call, a round's requests reach the upstream before it runs,
//! and it answers them in one go.
//!
//! How: [`queue`] puts the bytes in a per-thread queue and hands back a
//! [`Ticket`]; the first write of a round spawns a flush task, which a
//! current-thread runtime polls after the tasks already ready, so each of
//! them has queued its own write by then. The flush submits one `send(2)`
//! per queued write with `MSG_DONTWAIT` and waits for all of them in the
//! same call, so no write is pending in the kernel once it returns. Each
//! write is tried once: the ticket tells how many bytes went out, and the
//! caller writes the rest (all of it, when nothing went out) through its
//! socket as usual, which is also where any error is reported.
//!
//! The flush wakes a caller only when it has something left to do (a
//! write that did not go out whole, or failed). A caller whose write went
//! out whole is next woken by what it waits for anyway, its answer: one
//! task wake-up per request, as with a plain `send`, instead of one more
//! for the flush.
//!
//! Where it does not apply it costs one check: on a multi-thread runtime
//! (the flush could run on another thread) and where io_uring is
//! unavailable (turned off by `kernel.io_uring_disabled`, or refused by a
//! seccomp filter), [`queue`] returns `None` at once.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use io_uring::{opcode, types, IoUring};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::task::JoinHandle;

/// Writes submitted per `io_uring_enter`; a longer queue takes several.
const RING_ENTRIES: u32 = 256;

/// A [`Shared::sent`] not yet settled by a flush.
const UNSETTLED: usize = usize::MAX;
/// A [`Shared::sent`] whose write was in flight when the ring failed.
const IN_FLIGHT: usize = usize::MAX - 1;

/// What a queued write and its ticket share.
struct Shared {
    /// The bytes the write sent, or [`UNSETTLED`], or [`IN_FLIGHT`].
    sent: AtomicUsize,
    /// The caller, woken when its write did not go out whole.
    waker: AtomicWaker,
}

/// A write queued for this round's flush.
///
/// Dropping it before the flush has run withdraws the write: the socket
/// may be gone by then, and nothing is sent.
pub struct Ticket {
    shared: Arc<Shared>,
    len: usize,
}

impl Ticket {
    /// How many bytes went out, once the flush has run; the caller writes
    /// the rest. `Err` only when the ring failed with the write submitted
    /// but unfinished: the kernel may still send some of it, so the
    /// connection must not carry anything more.
    ///
    /// Until then `Pending`, and the caller is woken when the flush leaves
    /// it something to do, not when its write went out whole: a caller
    /// must also wait on what follows the write (its socket's answer),
    /// and look here again when that wakes it.
    pub fn poll_sent(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if let Some(sent) = self.settled() {
            return Poll::Ready(sent);
        }
        self.shared.waker.register(cx.waker());
        // The flush may have settled it between the look and the register.
        self.settled().map_or(Poll::Pending, Poll::Ready)
    }

    /// Whether the flush has run (and with what), without waiting.
    fn settled(&self) -> Option<std::io::Result<usize>> {
        match self.shared.sent.load(Ordering::Acquire) {
            UNSETTLED => None,
            IN_FLIGHT => Some(Err(std::io::Error::other(
                "io_uring failed with the write in flight",
            ))),
            sent => Some(Ok(sent.min(self.len))),
        }
    }
}

/// A write waiting for the round's flush.
struct Queued {
    fd: RawFd,
    /// Owned here, so the buffer outlives the kernel's use of it whatever
    /// becomes of the caller.
    bytes: Bytes,
    shared: Arc<Shared>,
}

impl Queued {
    /// Whether the caller dropped its ticket: the socket may be gone.
    fn withdrawn(&self) -> bool {
        Arc::strong_count(&self.shared) == 1
    }

    /// Tells the caller what became of its write, waking it if it has
    /// something left to do.
    fn settle(&self, sent: usize) {
        self.shared.sent.store(sent, Ordering::Release);
        if sent != self.bytes.len() {
            self.shared.waker.wake();
        }
    }
}

/// One thread's queue and ring.
#[derive(Default)]
struct Batch {
    queue: Vec<Queued>,
    /// The flushing round's writes and their outcomes: kept between
    /// rounds so a round allocates nothing once the thread has warmed up.
    flushing: Vec<Queued>,
    outcomes: Vec<Option<usize>>,
    /// The flush spawned for the current round, until it has run.
    flush: Option<JoinHandle<()>>,
    /// `None` until first used; `Some(None)` where io_uring is unavailable.
    ring: Option<Option<IoUring>>,
    /// How many writes each flush sent, for the tests.
    #[cfg(test)]
    flushed: Vec<usize>,
}

thread_local! {
    static BATCH: RefCell<Batch> = RefCell::new(Batch::default());
}

/// Queues `bytes` for `socket`, to go out with this round's flush. `None`
/// where batching does not apply (nothing is sent; the caller writes).
pub fn queue(socket: &impl AsRawFd, bytes: Bytes) -> Option<Ticket> {
    let on_current_thread = Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::CurrentThread);
    if !on_current_thread || bytes.is_empty() || bytes.len() >= IN_FLIGHT {
        return None;
    }
    BATCH.with(|batch| {
        let mut batch = batch.borrow_mut();
        if !batch.available() {
            return None;
        }
        let shared = Arc::new(Shared {
            sent: AtomicUsize::new(UNSETTLED),
            waker: AtomicWaker::new(),
        });
        let ticket = Ticket {
            shared: shared.clone(),
            len: bytes.len(),
        };
        batch.queue.push(Queued {
            fd: socket.as_raw_fd(),
            bytes,
            shared,
        });
        // A flush that was dropped unpolled (its runtime shut down) is
        // finished too: the next round spawns its own.
        if batch.flush.as_ref().is_none_or(JoinHandle::is_finished) {
            batch.flush = Some(tokio::spawn(async {
                BATCH.with(|b| b.borrow_mut().flush())
            }));
        }
        Some(ticket)
    })
}

impl Batch {
    /// Whether this thread can batch: opens the ring on first use.
    fn available(&mut self) -> bool {
        self.ring
            .get_or_insert_with(|| IoUring::new(RING_ENTRIES).ok())
            .is_some()
    }

    /// Sends every queued write whose caller still waits, and tells each
    /// caller how many of its bytes went out.
    fn flush(&mut self) {
        // The queue starts the next round empty but with its capacity.
        std::mem::swap(&mut self.queue, &mut self.flushing);
        let queue = &mut self.flushing;
        queue.retain(|q| !q.withdrawn());
        #[cfg(test)]
        self.flushed.push(queue.len());
        let Some(Some(ring)) = self.ring.as_mut() else {
            for q in queue.drain(..) {
                q.settle(0); // nothing sent: the caller writes it all
            }
            return;
        };
        // Per write: the bytes it sent (0 when it failed: the caller's own
        // write meets the error), `None` until its completion is seen.
        let sent = &mut self.outcomes;
        sent.clear();
        sent.resize(queue.len(), None);
        let failed = (0..)
            .step_by(RING_ENTRIES as usize)
            .zip(queue.chunks(RING_ENTRIES as usize))
            .any(|(start, chunk)| submit(ring, chunk, start, sent).is_err());
        if failed {
            // The kernel may still hold the buffers of writes whose
            // completion was not seen: they are leaked rather than freed
            // under it, their callers get an error (the kernel may yet
            // send them, so nothing else may follow on those sockets), and
            // this thread stops batching.
            self.ring = Some(None);
            for (q, n) in queue.drain(..).zip(sent.iter().copied()) {
                match n {
                    Some(n) => q.settle(n),
                    None => {
                        q.settle(IN_FLIGHT);
                        std::mem::forget(q.bytes);
                    }
                }
            }
            return;
        }
        for (q, n) in queue.drain(..).zip(sent.iter().copied()) {
            q.settle(n.unwrap_or(0));
        }
    }
}

/// Submits one chunk (at most [`RING_ENTRIES`] writes) and waits until
/// every write of it has completed, recording the bytes each one sent.
/// `Err` when the ring failed and some writes may still be in flight.
fn submit(
    ring: &mut IoUring,
    chunk: &[Queued],
    start: usize,
    sent: &mut [Option<usize>],
) -> std::io::Result<()> {
    let flags = (rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL).bits();
    for (i, q) in chunk.iter().enumerate() {
        let len = u32::try_from(q.bytes.len()).unwrap_or(u32::MAX);
        let entry = opcode::Send::new(types::Fd(q.fd), q.bytes.as_ptr(), len)
            .flags(flags as i32)
            .build()
            .user_data((start + i) as u64);
        // SAFETY: the buffer is owned by the queue until `flush` returns,
        // and this function returns `Ok` only once every entry of the
        // chunk has completed (on `Err`, `flush` leaks the buffers), so
        // the kernel is done with each buffer before it can be freed. The
        // ring was empty before the chunk and holds `RING_ENTRIES`.
        #[allow(unsafe_code)]
        let pushed = unsafe { ring.submission().push(&entry) };
        if pushed.is_err() {
            return Err(std::io::ErrorKind::OutOfMemory.into());
        }
    }
    let mut completed = 0;
    while completed < chunk.len() {
        match ring.submit_and_wait(chunk.len() - completed) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        for done in ring.completion() {
            completed += 1;
            let slot = usize::try_from(done.user_data()).unwrap_or(usize::MAX);
            if let Some(cell) = sent.get_mut(slot) {
                *cell = Some(usize::try_from(done.result()).unwrap_or(0));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt as _;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    fn flushed() -> Vec<usize> {
        BATCH.with(|b| std::mem::take(&mut b.borrow_mut().flushed))
    }

    fn assert_available() {
        assert!(
            BATCH.with(|b| b.borrow_mut().available()),
            "io_uring is unavailable on this machine, so writes are not batched"
        );
    }

    /// Waits for the flush by looking again after every other task has
    /// run (the flush does not wake a caller whose write went out whole).
    async fn settled(ticket: &Ticket) -> std::io::Result<usize> {
        loop {
            if let Some(sent) = ticket.settled() {
                return sent;
            }
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_writes_of_one_round_go_out_in_one_flush_each_to_its_socket() {
        assert_available();
        let mut pairs = Vec::new();
        for _ in 0..16 {
            pairs.push(pair().await);
        }
        flushed();
        let tasks: Vec<_> = pairs
            .into_iter()
            .enumerate()
            .map(|(i, (client, server))| {
                tokio::spawn(async move {
                    let ticket = queue(&client, Bytes::from(format!("request {i:02}"))).unwrap();
                    let n = settled(&ticket).await.unwrap();
                    (n, client, server)
                })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let (n, _client, mut server) = task.await.unwrap();
            assert_eq!(n, 10, "write {i} went out whole");
            let mut got = [0u8; 10];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(got, *format!("request {i:02}").as_bytes());
        }
        assert_eq!(flushed(), vec![16], "one flush carried all sixteen writes");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_write_that_went_out_whole_does_not_wake_its_caller() {
        assert_available();
        let (client, mut server) = pair().await;
        let ticket = queue(&client, Bytes::from("whole")).unwrap();
        let woken = Arc::new(WakeCount::default());
        let waker = std::task::Waker::from(woken.clone());
        assert!(ticket
            .poll_sent(&mut Context::from_waker(&waker))
            .is_pending());
        assert_eq!(settled(&ticket).await.unwrap(), 5);
        let mut got = [0u8; 5];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"whole");
        assert_eq!(woken.0.load(Ordering::Relaxed), 0, "the caller was woken");
    }

    #[derive(Default)]
    struct WakeCount(AtomicUsize);

    impl std::task::Wake for WakeCount {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_write_whose_caller_gave_up_is_not_sent() {
        assert_available();
        let (client, mut server) = pair().await;
        flushed();
        // Queued, then withdrawn before the flush runs.
        drop(queue(&client, Bytes::from("late")).unwrap());
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        assert_eq!(flushed(), vec![0], "the flush ran and skipped the write");
        let mut buf = [0u8; 4];
        let read = tokio::time::timeout(Duration::from_millis(100), server.read(&mut buf)).await;
        assert!(read.is_err(), "nothing reached the peer: {read:?}");
    }

    #[test]
    fn a_socket_with_no_room_sends_nothing_wakes_its_caller_and_does_not_stall_the_round() {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let outcome = runtime.block_on(async {
                assert_available();
                let (client, _server) = pair().await;
                // The peer reads nothing: fill the socket until it refuses.
                let chunk = vec![0u8; 64 * 1024];
                while client.try_write(&chunk).is_ok() {}
                let ticket = queue(&client, Bytes::from(chunk)).unwrap();
                // Waits on the ticket alone: only its wake-up ends this.
                std::future::poll_fn(|cx| ticket.poll_sent(cx)).await
            });
            let _ = done.send(outcome.map_err(|e| e.to_string()));
        });
        let outcome = finished
            .recv_timeout(Duration::from_secs(10))
            .expect("the flush waited for room, or did not wake the caller");
        assert_eq!(outcome, Ok(0), "nothing went out; the caller writes it all");
    }

    #[test]
    fn on_a_multi_thread_runtime_nothing_is_queued_and_the_caller_writes() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, mut server) = pair().await;
            assert!(queue(&client, Bytes::from("mine")).is_none());
            let mut buf = [0u8; 4];
            let read =
                tokio::time::timeout(Duration::from_millis(100), server.read(&mut buf)).await;
            assert!(read.is_err(), "nothing reached the peer: {read:?}");
        });
    }
}
