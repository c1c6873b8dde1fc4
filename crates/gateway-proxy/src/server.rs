//! Listeners: accept connections, terminate TLS, speak HTTP/1.1 and HTTP/2
//! (h2c by prior knowledge, or ALPN over TLS), and drain on shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use gateway_config::{ListenerConfig, TlsListenerConfig};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::gateway::Gateway;

type ResponseFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<hyper::Response<gateway_core::Body>, Infallible>>
            + Send,
    >,
>;
use crate::pipeline::ConnInfo;

/// A bound listener, ready to serve.
pub(crate) struct BoundListener {
    pub name: &'static str,
    pub listener: TcpListener,
    pub tls: Option<TlsAcceptor>,
}

impl BoundListener {
    /// Binds `cfg`; relative TLS paths are resolved against `base_dir`.
    pub async fn bind(cfg: &ListenerConfig, base_dir: &Path) -> anyhow::Result<Self> {
        let tls = match &cfg.tls {
            Some(t) => Some(tls_acceptor(t, base_dir)?),
            None => None,
        };
        let listener = TcpListener::bind(cfg.bind)
            .await
            .with_context(|| format!("listener `{}`: cannot bind {}", cfg.name, cfg.bind))?;
        Ok(Self {
            // Listener names live for the process; a handful are leaked once.
            name: Box::leak(cfg.name.clone().into_boxed_str()),
            listener,
            tls,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }
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
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until `stop` fires, then hands every open connection
/// to `graceful` so the caller can wait for them to finish.
pub(crate) async fn serve(
    bound: BoundListener,
    gateway: Gateway,
    stop: CancellationToken,
    graceful: Arc<GracefulShutdown>,
) {
    let snapshot = gateway.snapshot();
    let settings = &snapshot.config.config.gateway;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(1024);
    let builder = Arc::new(builder);
    let scheme = if bound.tls.is_some() { "https" } else { "http" };
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = bound.listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = bound.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn = ConnInfo::new(peer, bound.name, scheme);
        let gateway = gateway.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = bound.tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls_stream) => {
                        serve_connection(TokioIo::new(tls_stream), builder, gateway, conn, watcher)
                            .await
                    }
                    Err(e) => tracing::debug!(peer = %peer, error = %e, "TLS handshake failed"),
                },
                None => {
                    serve_connection(TokioIo::new(stream), builder, gateway, conn, watcher).await
                }
            }
        });
    }
}

async fn serve_connection<I>(
    io: I,
    builder: Arc<auto::Builder<TokioExecutor>>,
    gateway: Gateway,
    conn: ConnInfo,
    watcher: Watcher,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    // The gateway and the connection facts travel together, so a request
    // clones one `Arc` rather than each of them.
    let shared = Arc::new((gateway, conn));
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let shared = shared.clone();
        // Boxed so the future's type is nameable: hyper's bounds on an
        // unnamed async block trip rustc's higher-ranked Send inference.
        let fut: ResponseFuture = Box::pin(async move {
            let (gateway, conn) = &*shared;
            let req = req.map(gateway_core::body::boxed);
            Ok::<_, Infallible>(gateway.handle(req, conn).await)
        });
        fut
    });
    let connection = builder.serve_connection_with_upgrades(io, service);
    let connection = watcher.watch(connection.into_owned());
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}
