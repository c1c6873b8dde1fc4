//! The hand-over of a response body's connection from the body (which
//! owns it) to the server (which relays it), and the account of how the
//! relay went, which the body then reports as its own end.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::connection::Connection;

/// Put in a response's extensions by the client when the rest of its body
/// can be moved by the kernel (see the [module](super) docs). A stage that
/// must see the body's bytes removes it.
#[derive(Clone)]
pub struct SpliceOffer(Arc<Mutex<State>>);

impl std::fmt::Debug for SpliceOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpliceOffer")
    }
}

enum State {
    /// Nobody asked: the body reads as usual.
    Open,
    /// The server asks for the connection at the body's next read from it.
    Requested,
    /// The body handed the connection over and yielded its empty frame.
    Granted(Job),
    /// The server is relaying.
    Taken,
    /// The relay ended; the connection comes back if it can be reused.
    Done {
        moved: u64,
        complete: bool,
        conn: Option<Connection>,
    },
    /// The body was read again before the server took the connection:
    /// the connection went back to the body, which goes on as usual.
    Revoked,
}

/// An upstream connection on its way to the server, with the body bytes
/// still to come on it.
pub(crate) struct Job {
    pub conn: Connection,
    pub left: u64,
}

/// What the body learns when it is read after a hand-over.
pub(crate) enum Grant {
    /// Not handed over, or given back: read on as usual.
    NotGiven,
    /// The server took it back before relaying: this is the connection.
    Returned(Job),
    /// The relay moved every byte: the body is complete. `Some`: the
    /// connection, to reuse.
    Complete(Option<Connection>),
    /// The relay broke off.
    Broken,
    /// The server is still relaying (the body is read from elsewhere).
    Busy,
}

impl SpliceOffer {
    pub(crate) fn new() -> Self {
        Self(Arc::new(Mutex::new(State::Open)))
    }

    /// Asks for the body's connection at its next read from the socket.
    pub fn request(&self) {
        let mut state = self.0.lock();
        if matches!(*state, State::Open) {
            *state = State::Requested;
        }
    }

    /// Body bytes the kernel moved for this response.
    pub fn moved(&self) -> u64 {
        match &*self.0.lock() {
            State::Done { moved, .. } => *moved,
            _ => 0,
        }
    }

    /// Whether the server asked for the connection (the body side).
    pub(crate) fn requested(&self) -> bool {
        matches!(*self.0.lock(), State::Requested)
    }

    /// Hands the connection over (the body side, after [`Self::requested`]).
    pub(crate) fn grant(&self, job: Job) {
        *self.0.lock() = State::Granted(job);
    }

    /// The server takes the connection it was granted, if the body has not
    /// been read again since.
    pub(crate) fn take(&self) -> Option<Job> {
        let mut state = self.0.lock();
        match std::mem::replace(&mut *state, State::Taken) {
            State::Granted(job) => Some(job),
            other => {
                *state = other;
                None
            }
        }
    }

    /// The server gives a taken connection back unrelayed.
    pub(crate) fn give_back(&self, job: Job) {
        *self.0.lock() = State::Granted(job);
    }

    /// The server's account of the relay; `conn` is the connection when
    /// every byte moved.
    pub(crate) fn done(&self, moved: u64, complete: bool, conn: Option<Connection>) {
        *self.0.lock() = State::Done {
            moved,
            complete,
            conn,
        };
    }

    /// Whether the relay moved the whole body.
    pub(crate) fn complete(&self) -> bool {
        matches!(*self.0.lock(), State::Done { complete: true, .. })
    }

    /// What the body does when read after a hand-over (the body side).
    pub(crate) fn settle(&self) -> Grant {
        let mut state = self.0.lock();
        match std::mem::replace(&mut *state, State::Revoked) {
            State::Granted(job) => Grant::Returned(job),
            State::Done {
                moved,
                complete,
                conn,
            } => {
                *state = State::Done {
                    moved,
                    complete,
                    conn: None,
                };
                if complete {
                    Grant::Complete(conn)
                } else {
                    Grant::Broken
                }
            }
            State::Taken => {
                *state = State::Taken;
                Grant::Busy
            }
            other @ (State::Open | State::Requested) => {
                *state = other;
                Grant::NotGiven
            }
            State::Revoked => Grant::NotGiven,
        }
    }
}
