//! An open upstream connection: its socket and the bytes read from it
//! that no exchange has used yet. Shared by the exchange ([`crate::client`])
//! and the splice relay ([`crate::splice`]).

use bytes::BytesMut;
use tokio::net::TcpStream;

/// An open upstream connection between exchanges.
pub struct Connection {
    pub(crate) io: TcpStream,
    /// Bytes read and not yet used (always empty between exchanges).
    pub(crate) buf: BytesMut,
    /// Exchanges completed on this connection.
    pub(crate) served: u64,
    /// Whatever the opener keeps for as long as the connection lives (an
    /// open-connection count, say).
    _held: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("io", &self.io)
            .field("served", &self.served)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A fresh connection; `held` lives (and is dropped) with it.
    pub fn new(io: TcpStream, held: impl Send + Sync + 'static) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            served: 0,
            _held: Box::new(held),
        }
    }

    /// Whether an exchange has already completed on it (it came from a
    /// pool), so a failure before any response byte may be the upstream
    /// having closed it while idle.
    pub fn is_reused(&self) -> bool {
        self.served > 0
    }

    /// Whether the idle connection still looks usable: the upstream has
    /// neither closed it nor sent anything unasked. Reads nothing when the
    /// socket has nothing to read (no system call when the reactor has
    /// seen no readiness).
    pub fn is_usable(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// The socket, for splicing from.
    pub(crate) fn socket(&self) -> &TcpStream {
        &self.io
    }
}
