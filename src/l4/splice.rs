//! splice(2) for relays: socket → pipe → socket inside the kernel, no copy to user space. Pipes
//! come from a per-thread pool while bytes are in flight, so pipes (two descriptors each) scale
//! with busy streams, not open ones.

use std::io;
use std::os::fd::OwnedFd;

use rustix::pipe::{pipe_with, splice, PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::pool::{self, FreeList};

/// Bytes moved per splice call (the pipe is grown to hold as much).
const CHUNK: usize = 256 * 1024;
const FLAGS: SpliceFlags = SpliceFlags::MOVE.union(SpliceFlags::NONBLOCK);

struct Ends {
    read: OwnedFd,
    write: OwnedFd,
}

thread_local! {
    static POOL: FreeList<Ends> = const { FreeList::new(Vec::new()) };
}

/// A pooled pipe; back to the pool when dropped empty, closed if it still holds bytes.
pub(super) struct Pipe {
    ends: Option<Ends>,
    held: usize,
}

impl Pipe {
    pub(super) fn take() -> io::Result<Pipe> {
        let ends = match pool::take(&POOL) {
            Some(ends) => ends,
            None => {
                let (read, write) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
                // Best effort: a smaller pipe only means more calls.
                let _ = rustix::pipe::fcntl_setpipe_size(&write, CHUNK);
                Ends { read, write }
            }
        };
        Ok(Pipe {
            ends: Some(ends),
            held: 0,
        })
    }

    /// Moves what `src` has into the pipe; 0 means EOF. Readiness is cleared on EAGAIN.
    pub(super) fn fill(&mut self, src: &TcpStream) -> io::Result<usize> {
        let ends = self.ends.as_ref().ok_or(io::ErrorKind::BrokenPipe)?;
        let n = src.try_io(Interest::READABLE, || {
            splice(src, None, &ends.write, None, CHUNK, FLAGS).map_err(io::Error::from)
        })?;
        self.held += n;
        Ok(n)
    }

    /// Moves up to `len` held bytes to `dst`.
    pub(super) fn drain(&mut self, dst: &TcpStream, len: usize) -> io::Result<usize> {
        let ends = self.ends.as_ref().ok_or(io::ErrorKind::BrokenPipe)?;
        let n = dst.try_io(Interest::WRITABLE, || {
            splice(&ends.read, None, dst, None, len, FLAGS).map_err(io::Error::from)
        })?;
        self.held -= n;
        Ok(n)
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // A pipe still holding bytes is closed, never reused.
        if let Some(ends) = self.ends.take().filter(|_| self.held == 0) {
            pool::give(&POOL, ends);
        }
    }
}
