//! Listeners: accept connections within the connection limits, terminate
//! TLS, speak HTTP/1.1 (the native engine of `gateway-http1`, or hyper's
//! by `[gateway] http1_engine`) and HTTP/2 on hyper (h2c by prior
//! knowledge, or ALPN over TLS), close connections that stay silent past
//! their deadlines (see [`crate::connection`]), and drain on shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::BytesMut;
use gateway_config::{ClientAuthMode, Http1Engine, ListenerConfig, TlsListenerConfig};
use gateway_http1::splice::{SharedSocket, SpliceSink};
use gateway_http1::{HeadLimits, Prefixed, ServerOptions};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::alarm::Alarm;
use crate::client_cert::ClientCert;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection::{ConnLimits, ConnWatch, Deadlines, Expired, Slot, TrackedBody, Watched};
use crate::gateway::Gateway;
use crate::pipeline::ConnInfo;

type ResponseFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<hyper::Response<TrackedBody>, Infallible>> + Send>,
>;

/// A bound listener, ready to serve. Its socket is registered with a
/// runtime only when served, so each worker's sockets belong to the
/// worker's own runtime.
pub(crate) struct BoundListener {
    pub name: &'static str,
    listener: std::net::TcpListener,
    pub tls: Option<TlsAcceptor>,
    /// Whether the socket was bound with `SO_REUSEPORT`, so more sockets
    /// can share its address ([`BoundListener::share`]).
    shared: bool,
}

/// Pending connections each listening socket queues (the kernel caps it
/// at `net.core.somaxconn`).
const BACKLOG: i32 = 1024;

impl BoundListener {
    /// Binds `cfg`; relative TLS paths are resolved against `base_dir`.
    /// `shared`: bind with `SO_REUSEPORT`, for one socket per worker.
    pub fn bind(cfg: &ListenerConfig, base_dir: &Path, shared: bool) -> anyhow::Result<Self> {
        let tls = match &cfg.tls {
            Some(t) => Some(tls_acceptor(t, base_dir)?),
            None => None,
        };
        let listener = listen(cfg.bind, shared)
            .with_context(|| format!("listener `{}`: cannot bind {}", cfg.name, cfg.bind))?;
        Ok(Self {
            // Listener names live for the process; a handful are leaked once.
            name: Box::leak(cfg.name.clone().into_boxed_str()),
            listener,
            tls,
            shared,
        })
    }

    /// Another socket on the same address (the bound port, when the
    /// config asked for port 0), for another worker; the kernel spreads
    /// new connections over all of them.
    pub fn share(&self) -> anyhow::Result<Self> {
        anyhow::ensure!(
            self.shared,
            "listener `{}` was not bound to be shared",
            self.name
        );
        let addr = self.local_addr();
        let listener = listen(addr, true)
            .with_context(|| format!("listener `{}`: cannot bind {addr} again", self.name))?;
        Ok(Self {
            name: self.name,
            listener,
            tls: self.tls.clone(),
            shared: true,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }
}

/// A non-blocking listening socket on `addr`.
fn listen(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Builds a TLS acceptor offering HTTP/2 and HTTP/1.1 through ALPN.
pub(crate) fn tls_acceptor(
    cfg: &TlsListenerConfig,
    base_dir: &Path,
) -> anyhow::Result<TlsAcceptor> {
    let cert_path = base_dir.join(&cfg.cert);
    let key_path = base_dir.join(&cfg.key);
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(&cert_path)
            .with_context(|| format!("cannot open TLS certificate {}", cert_path.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("cannot parse TLS certificate {}", cert_path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate found in {}", cert_path.display());
    }
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(&key_path)
            .with_context(|| format!("cannot open TLS key {}", key_path.display()))?,
    ))
    .with_context(|| format!("cannot parse TLS key {}", key_path.display()))?
    .with_context(|| format!("no private key found in {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &cfg.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => builder.with_client_cert_verifier(client_verifier(
            &base_dir.join(ca),
            cfg.client_auth.unwrap_or_default(),
            provider,
        )?),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Verifies client certificates against the CAs in `ca_path` (mutual TLS).
fn client_verifier(
    ca_path: &Path,
    mode: ClientAuthMode,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> anyhow::Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    let pem = std::fs::read(ca_path)
        .with_context(|| format!("cannot open client CA file {}", ca_path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert =
            cert.with_context(|| format!("cannot parse client CA file {}", ca_path.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("unusable CA certificate in {}", ca_path.display()))?;
    }
    if roots.is_empty() {
        anyhow::bail!(
            "no certificate found in client CA file {}",
            ca_path.display()
        );
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match mode {
        ClientAuthMode::Required => builder,
        ClientAuthMode::Optional => builder.allow_unauthenticated(),
    };
    builder
        .build()
        .with_context(|| format!("cannot verify clients with {}", ca_path.display()))
}

/// What every connection of a listener shares.
pub(crate) struct ServeContext {
    pub gateway: Gateway,
    /// Fires on shutdown: accepting stops and connections close gracefully.
    pub stop: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub connections: TaskTracker,
    /// Open client connections against `max_connections` (shared by every
    /// public listener).
    pub limits: Arc<ConnLimits>,
}

/// Shortest and longest pause after a failed `accept` (out of descriptors,
/// out of memory): doubled on each failure in a row, so a listener that
/// cannot accept waits instead of spinning.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How long an idle connection asked to close gracefully (an HTTP/2
/// GOAWAY) may take before it is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Accepts connections until `stop` fires. Each connection runs in its own
/// task, tracked by `ctx.connections`, on the runtime this runs on.
pub(crate) async fn serve(bound: BoundListener, ctx: Arc<ServeContext>) {
    let listener = match TcpListener::from_std(bound.listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listener = bound.name, error = %e, "cannot serve the listener");
            return;
        }
    };
    let snapshot = ctx.gateway.snapshot();
    let settings = &snapshot.config.config.gateway;
    let deadlines = Deadlines::from_settings(settings);
    let engine = Engine {
        http1: settings.http1_engine,
        limits: HeadLimits {
            max_line: usize::try_from(settings.max_request_line.bytes()).unwrap_or(usize::MAX),
            max_head: usize::try_from(settings.max_request_head.bytes()).unwrap_or(usize::MAX),
            max_headers: settings.max_request_headers,
        },
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Request heads and idle connections are timed by `ConnWatch` (see
    // `drive`), not by hyper: its HTTP/1 header timer also runs while a
    // keep-alive connection is idle, which would make `header_read_timeout`
    // close idle connections and leave `idle_timeout` without effect.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(1024);
    let builder = Arc::new(builder);
    let scheme = if bound.tls.is_some() { "https" } else { "http" };
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let (stream, peer) = tokio::select! {
            _ = ctx.stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    pair
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    metrics::counter!("gatehouse_accept_errors_total").increment(1);
                    tracing::warn!(listener = bound.name, error = %e, retry_in = ?backoff, "accept failed");
                    tokio::select! {
                        _ = ctx.stop.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            },
        };
        let permit = match ctx.limits.admit(peer.ip()) {
            Ok(p) => p,
            Err(refused) => {
                // Closed at once: the descriptor comes straight back, and
                // the client learns now rather than after a timeout.
                metrics::counter!("gatehouse_connections_refused_total", "reason" => refused.as_str())
                    .increment(1);
                tracing::debug!(listener = bound.name, peer = %peer, reason = refused.as_str(), "connection refused");
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = ConnInfo::new(peer, bound.name, scheme);
        let builder = builder.clone();
        let tls = bound.tls.clone();
        let task_ctx = ctx.clone();
        ctx.connections.spawn(async move {
            let ctx = task_ctx;
            let slot = permit.slot().clone();
            let evicted = slot.evicted().clone();
            let serve = async {
                match tls {
                    Some(acceptor) => {
                        let Some(tls_stream) =
                            handshake(acceptor, stream, &deadlines, &ctx.stop).await
                        else {
                            return;
                        };
                        // The certificate rustls verified, read once for
                        // every request of the connection.
                        let conn = match tls_stream.get_ref().1.peer_certificates() {
                            Some([leaf, ..]) => conn.with_client_cert(ClientCert::from_der(leaf)),
                            _ => conn,
                        };
                        drive(tls_stream, builder, &ctx, conn, slot, deadlines, engine).await
                    }
                    None => {
                        let stream = SharedSocket::new(stream);
                        drive(stream, builder, &ctx, conn, slot, deadlines, engine).await
                    }
                }
            };
            // An evicted connection has not sent a request: there is
            // nothing to finish, so it is closed at once.
            tokio::select! {
                biased;
                _ = serve => {}
                _ = Alarm::new(evicted.cancelled()) => {}
            }
            drop(permit);
        });
    }
}

/// The TLS handshake: its first byte within `first_byte_timeout`, all of it
/// within `header_read_timeout`. `None`: the connection is closed.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    deadlines: &Deadlines,
    stop: &CancellationToken,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let peer = stream.peer_addr().ok();
    let mut first = [0u8; 1];
    let arrived = tokio::select! {
        _ = stop.cancelled() => return None,
        peeked = tokio::time::timeout(deadlines.first_byte, stream.peek(&mut first)) => peeked,
    };
    match arrived {
        Ok(Ok(n)) if n > 0 => {}
        Ok(_) => return None,
        Err(_) => {
            closed(Expired::FirstByte);
            return None;
        }
    }
    let accepted = tokio::select! {
        _ = stop.cancelled() => return None,
        accepted = tokio::time::timeout(deadlines.head, acceptor.accept(stream)) => accepted,
    };
    match accepted {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(peer = ?peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            closed(Expired::Head);
            None
        }
    }
}

fn closed(why: Expired) {
    metrics::counter!("gatehouse_connections_closed_total", "reason" => why.as_str()).increment(1);
    tracing::debug!(reason = why.as_str(), "client connection closed");
}

/// How client connections speak HTTP/1.1.
#[derive(Debug, Clone, Copy)]
struct Engine {
    http1: Http1Engine,
    limits: HeadLimits,
}

/// A client stream: plain TCP or TLS, as the listener says.
trait ClientStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {
    /// Whether TLS negotiated HTTP/2 (ALPN `h2`).
    fn alpn_h2(&self) -> bool;

    /// The socket response bodies can be spliced into: plain TCP only
    /// (TLS encrypts every byte in user space).
    fn splice_sink(&self) -> Option<SpliceSink>;
}

impl ClientStream for SharedSocket {
    fn alpn_h2(&self) -> bool {
        false
    }

    fn splice_sink(&self) -> Option<SpliceSink> {
        Some(self.sink())
    }
}

impl ClientStream for tokio_rustls::server::TlsStream<TcpStream> {
    fn alpn_h2(&self) -> bool {
        self.get_ref().1.alpn_protocol() == Some(b"h2")
    }

    fn splice_sink(&self) -> Option<SpliceSink> {
        None
    }
}

/// The HTTP/2 connection preface: a plain connection starting with it is
/// HTTP/2 by prior knowledge (h2c).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one connection until it ends, the gateway stops (then it closes
/// gracefully), or one of its deadlines passes: the first byte or a request
/// head late (closed at once: there is nothing to finish), or idle too long
/// (closed gracefully: an HTTP/2 client gets a GOAWAY).
async fn drive<S: ClientStream>(
    stream: S,
    builder: Arc<auto::Builder<TokioExecutor>>,
    ctx: &ServeContext,
    conn: ConnInfo,
    slot: Arc<Slot>,
    deadlines: Deadlines,
    engine: Engine,
) {
    let watch = ConnWatch::new(Some(slot));
    let h2 = stream.alpn_h2();
    let splice = stream.splice_sink();
    let io = Watched::new(stream, watch.clone());
    // The gateway, the connection facts and the watch travel together, so
    // a request clones one `Arc` rather than each of them.
    let shared = Arc::new((ctx.gateway.clone(), conn, watch.clone()));
    // Fires for a graceful close (shutdown, idle).
    let graceful = CancellationToken::new();
    let connection: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = match engine
        .http1
    {
        Http1Engine::Hyper => Box::pin(serve_hyper(io, builder, shared, graceful.clone())),
        Http1Engine::Native if h2 => Box::pin(serve_hyper(io, builder, shared, graceful.clone())),
        Http1Engine::Native => Box::pin(serve_native(
            io,
            builder,
            shared,
            graceful.clone(),
            (engine.limits, splice),
        )),
    };
    watch_deadlines(connection, ctx, &watch, deadlines, &graceful).await;
}

type Shared = Arc<(Gateway, ConnInfo, Arc<ConnWatch>)>;

/// Serves a connection with hyper (HTTP/1.1 or, by its preface, HTTP/2).
async fn serve_hyper<S>(
    io: S,
    builder: Arc<auto::Builder<TokioExecutor>>,
    shared: Shared,
    graceful: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let guard = shared.2.begin(req.version());
        let shared = shared.clone();
        // Boxed so the future's type is nameable: hyper's bounds on an
        // unnamed async block trip rustc's higher-ranked Send inference.
        let fut: ResponseFuture = Box::pin(async move {
            let (gateway, conn, _) = &*shared;
            let req = req.map(gateway_core::body::boxed);
            let res = gateway.handle(req, conn).await;
            Ok::<_, Infallible>(res.map(|body| TrackedBody::new(body, guard)))
        });
        fut
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        _ = graceful.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// Serves a connection with the native HTTP/1.1 engine, or with hyper when
/// it opens with the HTTP/2 preface (h2c by prior knowledge).
async fn serve_native<S>(
    mut io: Watched<S>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    shared: Shared,
    graceful: CancellationToken,
    (limits, splice): (HeadLimits, Option<SpliceSink>),
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tokio::io::AsyncReadExt as _;
    let mut first = BytesMut::with_capacity(8 * 1024);
    // Enough of the first bytes to tell HTTP/2's preface from a request.
    while first.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&first) {
        let read = tokio::select! {
            read = io.read_buf(&mut first) => read,
            _ = graceful.cancelled(), if first.is_empty() => return,
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
    if first.starts_with(H2_PREFACE) {
        let io = Prefixed::new(first.freeze(), io);
        return serve_hyper(io, builder, shared, graceful).await;
    }
    let opts = ServerOptions {
        limits,
        shutdown: graceful,
        observer: Some(shared.2.clone()),
        splice,
    };
    let service = move |req: http::Request<gateway_core::Body>| {
        let guard = shared.2.begin(req.version());
        let shared = shared.clone();
        async move {
            let (gateway, conn, _) = &*shared;
            let res = gateway.handle(req, conn).await;
            res.map(|body| TrackedBody::new(body, guard))
        }
    };
    if let Err(e) = gateway_http1::serve_connection(io, first, opts, service).await {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// Runs `connection` until it ends, the gateway stops (a graceful close),
/// or one of its deadlines passes.
async fn watch_deadlines(
    connection: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ctx: &ServeContext,
    watch: &ConnWatch,
    deadlines: Deadlines,
    graceful: &CancellationToken,
) {
    enum Woke {
        Stop,
        Deadline,
    }
    tokio::pin!(connection);
    let mut closing = false;
    let mut give_up: Option<tokio::time::Instant> = None;
    loop {
        let now = tokio::time::Instant::now();
        let wake = match give_up {
            Some(at) => at,
            None => watch.next_wake(&deadlines, now),
        };
        // Polled only when woken (see `crate::alarm`).
        let alarm = Alarm::new(async move {
            tokio::select! {
                biased;
                _ = ctx.stop.cancelled(), if !closing => Woke::Stop,
                _ = tokio::time::sleep_until(wake) => Woke::Deadline,
            }
        });
        let woke = tokio::select! {
            biased;
            () = connection.as_mut() => return,
            woke = alarm => woke,
        };
        match woke {
            Woke::Stop => {
                closing = true;
                graceful.cancel();
            }
            Woke::Deadline => {
                if give_up.is_some() {
                    return;
                }
                match watch.expired(&deadlines, tokio::time::Instant::now()) {
                    None => {}
                    Some(why @ (Expired::FirstByte | Expired::Head | Expired::BodyProgress)) => {
                        closed(why);
                        return;
                    }
                    Some(why @ Expired::Idle) => {
                        closed(why);
                        if !closing {
                            closing = true;
                            graceful.cancel();
                        }
                        give_up = Some(tokio::time::Instant::now() + IDLE_CLOSE_GRACE);
                    }
                }
            }
        }
    }
}
