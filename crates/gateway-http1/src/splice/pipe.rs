//! Kernel pipes for splicing, kept per thread between responses: making
//! one costs three system calls (`pipe2` and two `close`s).

use std::cell::RefCell;
use std::os::fd::OwnedFd;

use rustix::pipe::PipeFlags;

/// Pipes kept per thread; more are made and closed as needed.
const KEPT: usize = 16;

thread_local! {
    static IDLE: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// An empty pipe, both ends non-blocking.
pub(super) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    /// An idle pipe of this thread, or a new one.
    pub fn take() -> std::io::Result<Pipe> {
        if let Some(pipe) = IDLE.with(|idle| idle.borrow_mut().pop()) {
            return Ok(pipe);
        }
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        let capacity = rustix::pipe::fcntl_getpipe_size(&read)?;
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }

    /// Keeps an empty pipe for the next response on this thread.
    pub fn give_back(self) {
        IDLE.with(|idle| {
            let mut idle = idle.borrow_mut();
            if idle.len() < KEPT {
                idle.push(self);
            }
        });
    }

    /// Closes a pipe that may still hold bytes.
    pub fn discard(self) {}

    /// The most one splice into it can move.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn read_end(&self) -> &OwnedFd {
        &self.read
    }

    pub fn write_end(&self) -> &OwnedFd {
        &self.write
    }
}
