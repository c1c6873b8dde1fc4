//! A fault-injecting TCP forwarder for tests.
//!
//! Tests must never stop the shared Redis or PostgreSQL on the machine (other
//! engineers' tests use them at the same time), so an outage is simulated in
//! front of the server instead: point the client at [`TcpProxy::addr`] and
//! call [`TcpProxy::cut`] to make the server "go away" for that client only.
//!
//! - [`TcpProxy::cut`] closes every live connection at once (both sides see
//!   EOF) and, until [`TcpProxy::restore`], accepts new connections only to
//!   drop them immediately, so a client sees a fast failure rather than a
//!   hang, which is how a crashed server (connection refused / reset) looks.
//! - [`TcpProxy::restore`] forwards new connections again; connections that
//!   were cut stay closed, as after a real server restart.
//! - Dropping the proxy stops the listener and closes every connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A TCP forwarder on `127.0.0.1:0` that can cut its connections on demand.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    /// Whether new connections are refused (dropped on accept).
    cut: AtomicBool,
    /// Bumped by every `cut()`: a connection task ends when the epoch it
    /// started in is over. Dropping the sender (proxy dropped) ends them all.
    epoch: watch::Sender<u64>,
    /// Connections currently forwarded.
    live: AtomicUsize,
}

impl TcpProxy {
    /// Starts forwarding `127.0.0.1:<ephemeral>` to `target`.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound (a broken test environment).
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the TCP proxy");
        let addr = listener.local_addr().expect("proxy local address");
        let (epoch, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            cut: AtomicBool::new(false),
            epoch,
            live: AtomicUsize::new(0),
        });
        let accept_task = tokio::spawn(accept_loop(listener, target, shared.clone()));
        TcpProxy {
            addr,
            target,
            shared,
            accept_task,
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address connections are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Closes all live connections at once and drops new ones until
    /// [`restore`](Self::restore).
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.shared.epoch.send_modify(|e| *e += 1);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    /// Whether the proxy is cut.
    pub fn is_cut(&self) -> bool {
        self.shared.cut.load(Ordering::SeqCst)
    }

    /// Number of connections currently forwarded.
    pub fn live_connections(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        // Ends every connection task (their receivers see the change).
        self.shared.cut.store(true, Ordering::SeqCst);
        self.shared.epoch.send_modify(|e| *e += 1);
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(_) => {
                // E.g. out of file descriptors: do not spin.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if shared.cut.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let mut epoch = shared.epoch.subscribe();
        let started = *epoch.borrow_and_update();
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            // A cut may have happened while connecting.
            if *epoch.borrow() != started || shared.cut.load(Ordering::SeqCst) {
                return;
            }
            shared.live.fetch_add(1, Ordering::SeqCst);
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            forward(client, server, &mut epoch).await;
            shared.live.fetch_sub(1, Ordering::SeqCst);
            // Both sockets are dropped here: each side sees the close.
        });
    }
}

async fn forward(mut client: TcpStream, mut server: TcpStream, epoch: &mut watch::Receiver<u64>) {
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        // Any change (a cut) or a closed channel (proxy dropped) ends it.
        _ = epoch.changed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn roundtrip(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("timeout"))??;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn forwards_cuts_and_restores() {
        let target = echo_server().await;
        let proxy = TcpProxy::start(target).await;
        assert_eq!(proxy.target(), target);
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut c).await.unwrap(), b"ping");

        proxy.cut();
        assert!(proxy.is_cut());
        // The live connection is closed: a read sees EOF (or a reset).
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("cut closes live connections promptly");
        assert!(matches!(n, Ok(0) | Err(_)));
        // New connections are accepted and dropped at once.
        let mut c2 = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(roundtrip(&mut c2).await.is_err());

        proxy.restore();
        let mut c3 = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut c3).await.unwrap(), b"ping");
        assert_eq!(proxy.live_connections(), 1);

        let addr = proxy.addr();
        drop(proxy);
        let n = tokio::time::timeout(Duration::from_secs(5), c3.read(&mut buf))
            .await
            .expect("drop closes live connections");
        assert!(matches!(n, Ok(0) | Err(_)));
        // Nothing listens any more (or, at worst, nothing answers).
        if let Ok(mut c4) = TcpStream::connect(addr).await {
            assert!(roundtrip(&mut c4).await.is_err());
        }
    }
}
