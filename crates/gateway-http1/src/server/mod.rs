//! One client connection, driven end to end in one task.
//!
//! The loop: read a request head (strictly, see [`crate::head`]), hand the
//! service an `http::Request<Body>` whose body streams from the same
//! connection, write the response with exact framing, make sure the
//! request body was read to its end (or close), and go again. Pipelined
//! requests wait in the read buffer and are answered in order, one at a
//! time. A request that cannot be framed safely gets its problem+json
//! answer and the connection closes: nothing after an ambiguous head is
//! ever read as a request.
//!
//! Deadlines are not kept here: the caller wraps the stream to see reads
//! and drops this future when one passes. `shutdown` asks for a graceful
//! close: an idle connection closes at once, a busy one after its current
//! response (announced with `Connection: close`).

mod inbound;
mod prefixed;
mod upgrade;

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt as _;
use gateway_core::{Body, BoxError};
use http::header::CONTENT_LENGTH;
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt as _;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::encode::{self, Framing, Persistence};
use crate::framing::RequestBody;
use crate::head::{take_request_head, HeadLimits, RequestHead};
use crate::interim::{self, Relayed};
use crate::splice::{self, SpliceOffer, SpliceSink};
use crate::HeadError;
use inbound::{Continue, Decoder, Inbound, IncomingBody};

pub use prefixed::Prefixed;
pub use upgrade::{Io, OnUpgrade, UpgradeFailed, Upgraded};

/// The request body left unread when a response is done that is still
/// read and dropped to keep the connection; beyond it the connection
/// closes instead.
pub const DRAIN_MAX: u64 = 64 * 1024;

/// How long a closing connection keeps reading (and dropping) what the
/// client still sends, so its last response is not lost to a reset.
const LINGER: Duration = Duration::from_secs(2);
/// How much a closing connection reads before giving up on lingering.
const LINGER_MAX: usize = 256 * 1024;

/// Responses bodies up to this are copied next to their head (or chunk
/// framing) and written with it; larger data frames are written as they
/// are.
const COPY_MAX: usize = 16 * 1024;
/// Written once this much is waiting.
const WRITE_MAX: usize = 64 * 1024;

/// What a connection is served with.
#[derive(Clone, Default)]
pub struct ServerOptions {
    /// Size limits on request heads.
    pub limits: HeadLimits,
    /// Fires for a graceful close.
    pub shutdown: CancellationToken,
    /// Told when reading a request body waits on the client, so the
    /// caller can keep a body-progress deadline.
    pub observer: Option<Arc<dyn BodyObserver>>,
    /// The connection's own socket, when it is plain TCP and its stream
    /// buffers no writes: response bodies that offer it are spliced into
    /// it (see [`crate::splice`]).
    pub splice: Option<SpliceSink>,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("limits", &self.limits)
            .field("observer", &self.observer.is_some())
            .field("splice", &self.splice.is_some())
            .finish_non_exhaustive()
    }
}

/// Follows whether reading a request body waits on the client: `true`
/// when a read of body bytes finds the socket empty, `false` when bytes
/// come, the body ends or fails. A body the service has not asked for yet
/// is not waiting on the client.
pub trait BodyObserver: Send + Sync {
    /// `true`: the body reader waits for the client from now; `false`: no
    /// longer.
    fn body_pending(&self, pending: bool);
}

/// Serves HTTP/1.x on `io` until the client closes, `shutdown` fires, an
/// error ends it, or the connection is upgraded. `read_ahead` holds bytes
/// already read from `io` (they are the start of the first request).
pub async fn serve_connection<S, F, Fut, B>(
    io: S,
    read_ahead: BytesMut,
    opts: ServerOptions,
    mut service: F,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    F: FnMut(Request<Body>) -> Fut,
    Fut: Future<Output = Response<B>>,
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let (read, mut write) = tokio::io::split(io);
    let inbound = Arc::new(Mutex::new(Inbound {
        io: read,
        buf: read_ahead,
        decoder: Decoder::Done,
        generation: 0,
        cont: Continue::No,
        body_read: 0,
        driver: None,
        body: None,
        observer: opts.observer.clone(),
        pending: false,
    }));
    let mut out = BytesMut::with_capacity(8 * 1024);
    let relayed = Relayed::default();
    // One wait on the shutdown token for the connection's life: made and
    // registered per idle spell, it would cost a registration and a
    // removal on the token's list at every request.
    let mut shutdown = pin!(opts.shutdown.clone().cancelled_owned());
    loop {
        let head = match read_head(&inbound, &opts, shutdown.as_mut()).await {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(()),
            Err(Failed::Io(e)) => return Err(e),
            Err(Failed::Refused(refused)) => {
                tracing::debug!(error = %refused, "request refused by the HTTP/1.1 engine");
                refuse(&mut write, &mut out, &refused).await?;
                linger(&inbound, &mut write).await;
                return Ok(());
            }
        };
        let exchange = Exchange::of(&head);
        let (req, upgrade_tx) = request(head, &inbound);
        // 1xx responses go to HTTP/1.1 clients only (RFC 9110 15.2).
        let to_client = exchange.version == Version::HTTP_11;
        relayed.lock().clear();
        // Pinned in this connection's own state: the service's future is
        // large (a whole pipeline), and `call` polls it through the pin, so
        // it is neither copied again nor allocated per request.
        let fut = pin!(interim::relaying(relayed.clone(), service(req)));
        let res = call(&inbound, &mut write, &mut out, (&relayed, to_client), fut).await?;
        let (parts, mut body) = res.into_parts();

        // From here on no 100 Continue is sent: the final answer goes first.
        let continue_skipped = {
            let mut inb = inbound.lock();
            let skipped = inb.cont != Continue::No;
            if skipped {
                inb.cont = Continue::No;
                if let Some(w) = inb.body.take() {
                    w.wake();
                }
            }
            skipped
        };
        let upgrading = parts.status == StatusCode::SWITCHING_PROTOCOLS && upgrade_tx.is_some();
        let (framing, with_body) = response_framing(&exchange, &parts, &body);
        let drainable = {
            let inb = inbound.lock();
            match inb.decoder {
                Decoder::Done => true,
                Decoder::Length(n) => !continue_skipped && n <= DRAIN_MAX,
                Decoder::Chunked(_) | Decoder::Failed => false,
            }
        };
        let keep = exchange.keep_alive
            && !opts.shutdown.is_cancelled()
            && framing != Framing::Close
            && drainable
            && !upgrading;
        let persistence = if upgrading {
            Persistence::Default
        } else if !keep {
            Persistence::Close
        } else if exchange.version == Version::HTTP_10 {
            Persistence::KeepAlive
        } else {
            Persistence::Default
        };
        if upgrading {
            // The upgrade's own `Connection: upgrade` goes out as is.
            write_upgrade_head(&mut out, &parts);
        } else {
            encode::response_head(&mut out, parts.status, &parts.headers, framing, persistence);
        }
        let splice = match (&opts.splice, framing) {
            (Some(sink), Framing::Length(_)) => parts
                .extensions
                .get::<SpliceOffer>()
                .map(|offer| (offer, sink)),
            _ => None,
        };
        let complete = if with_body {
            write_body(&mut write, &mut out, &mut body, framing, splice).await?
        } else {
            write.write_all(&out).await?;
            write.flush().await?;
            out.clear();
            true
        };
        drop(body);

        if let (true, Some(tx)) = (upgrading, upgrade_tx) {
            let Ok(inb) = Arc::try_unwrap(inbound).map(Mutex::into_inner) else {
                // A request body still holds the read side: no hand-over.
                return Ok(());
            };
            let io = inb.io.unsplit(write);
            let _ = tx.send(upgrade::prefix(inb.buf.freeze(), Box::new(io)));
            return Ok(());
        }
        if !(keep && complete) {
            if complete {
                let _ = write.shutdown().await;
                linger(&inbound, &mut write).await;
            }
            return Ok(());
        }
        if !drain(&inbound).await {
            return Ok(());
        }
    }
}

/// What the driver remembers of a request while answering it.
struct Exchange {
    version: Version,
    head: bool,
    keep_alive: bool,
}

impl Exchange {
    fn of(head: &RequestHead) -> Self {
        Self {
            version: head.version,
            head: head.method == Method::HEAD,
            keep_alive: head.keep_alive,
        }
    }
}

enum Failed {
    Io(std::io::Error),
    Refused(HeadError),
}

/// Reads the next request head; `None` when the client closed between
/// requests (or mid-head) or `shutdown` fired while idle.
async fn read_head<S: AsyncRead>(
    inbound: &Arc<Mutex<Inbound<S>>>,
    opts: &ServerOptions,
    mut shutdown: Pin<&mut WaitForCancellationFutureOwned>,
) -> Result<Option<RequestHead>, Failed> {
    loop {
        let idle = {
            let mut inb = inbound.lock();
            if !inb.buf.is_empty() {
                if let Some(head) =
                    take_request_head(&mut inb.buf, &opts.limits).map_err(Failed::Refused)?
                {
                    return Ok(Some(head));
                }
            }
            inb.buf.is_empty()
        };
        let fill = std::future::poll_fn(|cx| inbound.lock().poll_fill(cx));
        let read = if idle {
            tokio::select! {
                biased;
                read = fill => read,
                _ = shutdown.as_mut() => return Ok(None),
            }
        } else {
            fill.await
        };
        match read {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(Failed::Io(e)),
        }
    }
}

/// The request the service gets, and the sender of its upgrade if it asks
/// for one.
fn request<S: AsyncRead + AsyncWrite + Send + 'static>(
    head: RequestHead,
    inbound: &Arc<Mutex<Inbound<S>>>,
) -> (
    Request<Body>,
    Option<tokio::sync::oneshot::Sender<Upgraded>>,
) {
    let generation = inbound.lock().begin(head.body, head.expect_continue);
    let body = match head.body {
        RequestBody::None => gateway_core::body::empty(),
        framing => IncomingBody {
            inbound: inbound.clone(),
            generation,
            hint: match framing {
                RequestBody::Length(n) => Some(n),
                _ => None,
            },
            done: false,
        }
        .boxed_unsync(),
    };
    let mut req = Request::new(body);
    *req.method_mut() = head.method;
    *req.uri_mut() = head.uri;
    *req.version_mut() = head.version;
    *req.headers_mut() = head.headers;
    let upgrade_tx = if head.upgrade {
        let (tx, on_upgrade) = upgrade::pending();
        req.extensions_mut().insert(on_upgrade);
        Some(tx)
    } else {
        None
    };
    (req, upgrade_tx)
}

/// Runs the service's future; when its request body asks to be read
/// under `Expect: 100-continue`, writes the 100 first, and writes the 1xx
/// heads the upstream exchange relays (`relay`: where they arrive and
/// whether the client gets them) as they come.
async fn call<S, W, Fut, B>(
    inbound: &Arc<Mutex<Inbound<S>>>,
    write: &mut W,
    out: &mut BytesMut,
    relay: (&Relayed, bool),
    fut: Fut,
) -> std::io::Result<Response<B>>
where
    S: AsyncRead,
    W: AsyncWrite + Unpin,
    Fut: Future<Output = Response<B>>,
{
    enum Step<R> {
        Done(R),
        Continue,
        Interim,
    }
    let (relayed, to_client) = relay;
    let mut fut = pin!(fut);
    loop {
        let step = std::future::poll_fn(|cx| {
            if let Poll::Ready(res) = fut.as_mut().poll(cx) {
                return Poll::Ready(Step::Done(res));
            }
            if !relayed.lock().is_empty() {
                return Poll::Ready(Step::Interim);
            }
            let mut inb = inbound.lock();
            if inb.cont == Continue::Wanted {
                return Poll::Ready(Step::Continue);
            }
            inb.driver = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        match step {
            Step::Done(res) => {
                // A 1xx read in the same poll as the final head still goes
                // first; it is written with the final response.
                let heads = std::mem::take(&mut *relayed.lock());
                if to_client {
                    out.clear();
                    for (status, headers) in &heads {
                        encode::interim_head(out, *status, headers);
                    }
                }
                return Ok(res);
            }
            Step::Interim => {
                let heads = std::mem::take(&mut *relayed.lock());
                if to_client {
                    out.clear();
                    for (status, headers) in &heads {
                        encode::interim_head(out, *status, headers);
                    }
                    write.write_all(out).await?;
                    write.flush().await?;
                    out.clear();
                }
            }
            Step::Continue => {
                out.clear();
                out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                write.write_all(out).await?;
                write.flush().await?;
                out.clear();
                let mut inb = inbound.lock();
                inb.cont = Continue::No;
                if let Some(w) = inb.body.take() {
                    w.wake();
                }
            }
        }
    }
}

/// The framing of a response (RFC 9112 6.3) and whether a body follows
/// the head: none for 1xx and 204, the declared length without a body for
/// HEAD and 304, else the declared length, the body's exact size, chunked
/// for HTTP/1.1 clients, or the connection's end for HTTP/1.0 clients.
fn response_framing<B: http_body::Body>(
    exchange: &Exchange,
    parts: &http::response::Parts,
    body: &B,
) -> (Framing, bool) {
    let status = parts.status;
    if status.is_informational() || status == StatusCode::NO_CONTENT {
        return (Framing::None, false);
    }
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if exchange.head || status == StatusCode::NOT_MODIFIED {
        return (declared.map_or(Framing::None, Framing::Length), false);
    }
    let framing = if let Some(n) = declared.or(body.size_hint().exact()) {
        Framing::Length(n)
    } else if exchange.version == Version::HTTP_11 {
        Framing::Chunked
    } else {
        Framing::Close
    };
    (framing, true)
}

/// Writes a 101's head: its fields as they are, `Connection` included.
fn write_upgrade_head(out: &mut BytesMut, parts: &http::response::Parts) {
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(http::header::CONNECTION) {
        out.extend_from_slice(b"connection: upgrade\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes what is in `out` (the head) and the body with `framing`; with
/// `splice`, the body's rest is moved by the kernel once it hands its
/// connection over. `Ok(false)`: the body failed or did not match its
/// length, so the response was cut short and the connection must close.
async fn write_body<W, B>(
    write: &mut W,
    out: &mut BytesMut,
    body: &mut B,
    framing: Framing,
    splice: Option<(&SpliceOffer, &SpliceSink)>,
) -> std::io::Result<bool>
where
    W: AsyncWrite + Unpin,
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    // Bytes still owed under a Content-Length; unbounded otherwise.
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => u64::MAX,
    };
    let bounded = matches!(framing, Framing::Length(_));
    if let Some((offer, _)) = splice {
        offer.request();
    }
    let complete = loop {
        if bounded && left == 0 {
            break true;
        }
        // What is ready now joins what waits to be written; only when the
        // body makes us wait is the buffer written.
        let frame = match body.frame().now_or_never() {
            Some(frame) => frame,
            None => {
                flush_out(write, out).await?;
                write.flush().await?;
                body.frame().await
            }
        };
        let frame = match frame {
            // The body ended: complete unless it owed bytes.
            None => break !bounded,
            Some(Err(e)) => {
                let e: BoxError = e.into();
                tracing::debug!(error = %e, "response body failed; the response is cut short");
                break false;
            }
            Some(Ok(frame)) => frame,
        };
        let mut data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let (Framing::Chunked, Ok(trailers)) = (framing, frame.into_trailers()) {
                    encode::last_chunk(out, Some(&trailers));
                    flush_out(write, out).await?;
                    write.flush().await?;
                    return Ok(true);
                }
                continue;
            }
        };
        if data.is_empty() {
            if let Some((offer, sink)) = splice {
                // The body handed its connection over (see `crate::splice`).
                if let Some(job) = offer.take() {
                    match relay(write, out, offer, job, sink, left).await? {
                        Some(moved) => left -= moved,
                        None => break false,
                    }
                }
            }
            continue;
        }
        if bounded && data.len() as u64 > left {
            data.truncate(left as usize);
            put(write, out, data).await?;
            tracing::debug!("response body longer than its Content-Length; cut short");
            break false;
        }
        if bounded {
            left -= data.len() as u64;
        }
        if framing == Framing::Chunked {
            encode::chunk_start(out, data.len());
            put(write, out, data).await?;
            encode::chunk_end(out);
        } else {
            put(write, out, data).await?;
        }
        if out.len() >= WRITE_MAX {
            flush_out(write, out).await?;
        }
    };
    if complete && framing == Framing::Chunked {
        encode::last_chunk(out, None);
    }
    flush_out(write, out).await?;
    write.flush().await?;
    Ok(complete)
}

/// Writes what waits in `out`, then splices the body's last `left` bytes
/// from `job`'s connection. `Some`: the bytes moved (all of them); `None`:
/// the relay broke off.
async fn relay<W: AsyncWrite + Unpin>(
    write: &mut W,
    out: &mut BytesMut,
    offer: &SpliceOffer,
    mut job: splice::Job,
    sink: &SpliceSink,
    left: u64,
) -> std::io::Result<Option<u64>> {
    if job.left != left {
        // Not this response's body: it reads on as usual.
        offer.give_back(job);
        return Ok(Some(0));
    }
    flush_out(write, out).await?;
    write.flush().await?;
    let (moved, ended) = splice::relay(&mut job, sink).await;
    match ended {
        Ok(()) => {
            offer.done(moved, true, Some(job.conn));
            Ok(Some(moved))
        }
        Err(e) => {
            offer.done(moved, false, None);
            tracing::debug!(error = %e, "spliced response body broke off; the response is cut short");
            Ok(None)
        }
    }
}

/// Appends `data` to `out` (small) or writes `out` then `data` (large).
async fn put<W: AsyncWrite + Unpin>(
    write: &mut W,
    out: &mut BytesMut,
    data: Bytes,
) -> std::io::Result<()> {
    if data.len() <= COPY_MAX {
        out.extend_from_slice(&data);
        Ok(())
    } else {
        flush_out(write, out).await?;
        write.write_all(&data).await
    }
}

async fn flush_out<W: AsyncWrite + Unpin>(
    write: &mut W,
    out: &mut BytesMut,
) -> std::io::Result<()> {
    if !out.is_empty() {
        write.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// Writes the problem+json for a refused head, with `Connection: close`.
async fn refuse<S: AsyncWrite>(
    write: &mut WriteHalf<S>,
    out: &mut BytesMut,
    refused: &HeadError,
) -> std::io::Result<()> {
    let res: Response<Bytes> = refused.problem().into_response();
    let (parts, body) = res.into_parts();
    out.clear();
    encode::response_head(
        out,
        parts.status,
        &parts.headers,
        Framing::Length(body.len() as u64),
        Persistence::Close,
    );
    out.extend_from_slice(&body);
    write.write_all(out).await?;
    write.flush().await?;
    let _ = write.shutdown().await;
    Ok(())
}

/// Reads and drops the rest of the request body, up to [`DRAIN_MAX`];
/// whether the connection can serve another request.
async fn drain<S: AsyncRead>(inbound: &Arc<Mutex<Inbound<S>>>) -> bool {
    // Most requests had no body or read it whole: no timer for them.
    if matches!(inbound.lock().decoder, Decoder::Done) {
        return true;
    }
    let drained = std::future::poll_fn(|cx| {
        let mut inb = inbound.lock();
        loop {
            if inb.body_read > DRAIN_MAX {
                return Poll::Ready(false);
            }
            match inb.poll_body(cx) {
                Poll::Ready(None) => return Poll::Ready(true),
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(_))) => return Poll::Ready(false),
                Poll::Pending => return Poll::Pending,
            }
        }
    });
    tokio::time::timeout(LINGER, drained).await.unwrap_or(false)
}

/// Keeps reading (and dropping) what the client sends for a little while
/// after the last response, so closing with unread bytes does not reset
/// the connection before the client has read that response.
async fn linger<S: AsyncRead + AsyncWrite>(
    inbound: &Arc<Mutex<Inbound<S>>>,
    write: &mut WriteHalf<S>,
) {
    let _ = write.shutdown().await;
    let mut seen = 0usize;
    let drained = std::future::poll_fn(|cx| {
        let mut inb = inbound.lock();
        loop {
            inb.buf.clear();
            match inb.poll_fill(cx) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(n)) => {
                    seen += n;
                    if seen > LINGER_MAX {
                        return Poll::Ready(());
                    }
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    });
    let _ = tokio::time::timeout(LINGER, drained).await;
}
