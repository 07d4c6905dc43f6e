//! The byte shuttle between a client socket and its upstream socket: both directions and the
//! idle timer polled by hand in one small future (an idle stream's task stays a few hundred
//! bytes), a buffer or pipe borrowed from a per-thread pool only while bytes are in flight, FIN
//! forwarded as FIN and a reset as a reset.

use std::future::{poll_fn, Future};
use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::buffer::Buffer;
use super::splice::Pipe;

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides finished sending (each FIN forwarded).
    Closed,
    /// No byte either way for the idle timeout.
    Idle,
    /// The client reset or failed; the upstream was reset too.
    ClientReset,
    /// The upstream reset or failed; the client was reset too.
    UpstreamReset,
    /// A copy failed without saying which side (TLS-terminated streams); the upstream was reset.
    Failed,
}

/// How bytes cross: through a user-space buffer, or splice(2) through a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Copy {
    /// The default: a buffer, until a read fills it (bulk transfer), then splice for that
    /// direction. Measured on `../shared/bench`: the buffer is cheaper for request-sized
    /// exchanges (scenario E), splice costs half the CPU per MiB in bulk (scenario F).
    #[default]
    Auto,
    Userspace,
    Splice,
}

/// Bytes moved so far; read by the metrics flush while the relay runs.
#[derive(Debug, Default)]
pub struct Counts {
    /// Client → upstream.
    pub received: AtomicU64,
    /// Upstream → client.
    pub sent: AtomicU64,
}

impl Counts {
    pub(super) fn add(counter: &AtomicU64, n: usize) {
        // Only the relay's own task writes, so a load and a store (no locked RMW) suffice.
        counter.store(
            counter.load(Ordering::Relaxed) + n as u64,
            Ordering::Relaxed,
        );
    }

    pub fn total(&self) -> u64 {
        self.received.load(Ordering::Relaxed) + self.sent.load(Ordering::Relaxed)
    }
}

/// Which socket an I/O error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Upstream,
}

/// Copies both ways until both sides have finished or one fails, or nothing moves for `idle`.
/// `tick` is called every `tick_every` while the relay runs (metrics flushes).
pub async fn relay(
    client: &TcpStream,
    upstream: &TcpStream,
    counts: &Counts,
    copy: Copy,
    idle: Duration,
    tick_every: Duration,
    mut tick: impl FnMut(),
) -> End {
    let mut to_upstream = Direction::new(copy, client, upstream, Side::Client, Side::Upstream);
    let mut to_client = Direction::new(copy, upstream, client, Side::Upstream, Side::Client);
    let mut timer = IdleTimer::new(idle, tick_every, counts.total());
    let end = poll_fn(|cx| {
        let a = to_upstream.poll(cx, &counts.received);
        let b = to_client.poll(cx, &counts.sent);
        match (a, b) {
            (Poll::Ready(Err(Side::Client)), _) | (_, Poll::Ready(Err(Side::Client))) => {
                return Poll::Ready(End::ClientReset)
            }
            (Poll::Ready(Err(Side::Upstream)), _) | (_, Poll::Ready(Err(Side::Upstream))) => {
                return Poll::Ready(End::UpstreamReset)
            }
            (Poll::Ready(Ok(())), Poll::Ready(Ok(()))) => return Poll::Ready(End::Closed),
            _ => {}
        }
        timer.poll(cx, counts, &mut tick).map(|()| End::Idle)
    })
    .await;
    match end {
        // The failed side is gone; make the other one see a reset too, not a clean close.
        End::ClientReset => abort(upstream),
        End::UpstreamReset => abort(client),
        End::Closed | End::Idle | End::Failed => {}
    }
    end
}

/// A close with SO_LINGER 0 sends RST instead of FIN when the socket is dropped.
pub fn abort(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// One direction's state: bytes read and not yet written sit in a borrowed buffer or pipe.
struct Direction<'s> {
    src: &'s TcpStream,
    dst: &'s TcpStream,
    src_side: Side,
    dst_side: Side,
    carrier: Carrier,
    /// Bytes of the last read still to write (`pending` of them), and whether that read emptied
    /// the socket (then the buffer goes back to the pool once written).
    pending: usize,
    written: usize,
    drained: bool,
    finished: bool,
    /// `Copy::Auto`: switch to splice once nothing is pending (set by a read that filled the buffer).
    to_splice: bool,
    auto: bool,
}

enum Carrier {
    Userspace(Option<Buffer>),
    Splice(Option<Pipe>),
}

impl<'s> Direction<'s> {
    fn new(
        copy: Copy,
        src: &'s TcpStream,
        dst: &'s TcpStream,
        src_side: Side,
        dst_side: Side,
    ) -> Self {
        Direction {
            src,
            dst,
            src_side,
            dst_side,
            carrier: match copy {
                Copy::Auto | Copy::Userspace => Carrier::Userspace(None),
                Copy::Splice => Carrier::Splice(None),
            },
            pending: 0,
            written: 0,
            drained: false,
            finished: false,
            to_splice: false,
            auto: copy == Copy::Auto,
        }
    }

    /// Moves bytes until the source is empty (`Pending`), sent FIN (`Ready(Ok)`) or failed.
    fn poll(&mut self, cx: &mut Context<'_>, counter: &AtomicU64) -> Poll<Result<(), Side>> {
        if self.finished {
            return Poll::Ready(Ok(()));
        }
        loop {
            if self.written < self.pending {
                let n = ready!(self.poll_write(cx))?;
                self.written += n;
                Counts::add(counter, n);
                continue;
            }
            if self.drained {
                self.release();
            }
            if self.to_splice {
                self.release();
                (self.carrier, self.to_splice, self.auto) = (Carrier::Splice(None), false, false);
            }
            ready!(self.src.poll_read_ready(cx)).map_err(|_| self.src_side)?;
            match self.read() {
                Ok(0) => {
                    // The source sent FIN: pass it on, keep the other direction going.
                    self.release();
                    let _ = socket2::SockRef::from(self.dst).shutdown(Shutdown::Write);
                    self.finished = true;
                    return Poll::Ready(Ok(()));
                }
                Ok(n) => (self.pending, self.written) = (n, 0),
                // Empty after all: wait for readiness without holding the buffer.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.release(),
                Err(_) => return Poll::Ready(Err(self.src_side)),
            }
        }
    }

    fn read(&mut self) -> io::Result<usize> {
        match &mut self.carrier {
            Carrier::Userspace(buffer) => {
                let buf = buffer.get_or_insert_with(Buffer::take);
                let (n, drained) = read_drained(self.src, buf.as_mut())?;
                self.drained = drained;
                self.to_splice = self.auto && n == buf.as_mut().len();
                Ok(n)
            }
            Carrier::Splice(None) => match Pipe::take() {
                Ok(pipe) => {
                    self.carrier = Carrier::Splice(Some(pipe));
                    self.read()
                }
                Err(_) => {
                    // Out of descriptors, say: carry on through a buffer rather than fail.
                    (self.carrier, self.auto) = (Carrier::Userspace(None), false);
                    self.read()
                }
            },
            Carrier::Splice(Some(pipe)) => {
                // A short splice does not prove the socket empty (the pipe may be out of
                // slots), so readiness is only cleared by EAGAIN.
                self.drained = false;
                pipe.fill(self.src)
            }
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, Side>> {
        let (dst, range) = (self.dst, self.written..self.pending);
        loop {
            let result = match &mut self.carrier {
                Carrier::Userspace(Some(buf)) => dst.try_write(&buf.as_mut()[range.clone()]),
                Carrier::Splice(Some(pipe)) => pipe.drain(dst, range.len()),
                // Bytes pending always have a carrier.
                _ => return Poll::Ready(Err(self.dst_side)),
            };
            match result {
                Ok(0) => return Poll::Ready(Err(self.dst_side)),
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(dst.poll_write_ready(cx)).map_err(|_| self.dst_side)?;
                }
                Err(_) => return Poll::Ready(Err(self.dst_side)),
            }
        }
    }

    /// Returns the buffer or pipe to the pool (nothing is pending when this is called).
    fn release(&mut self) {
        match &mut self.carrier {
            Carrier::Userspace(buffer) => *buffer = None,
            Carrier::Splice(pipe) => *pipe = None,
        }
        (self.pending, self.written, self.drained) = (0, 0, false);
    }
}

/// Reads once; a short read means the socket is empty, so its readiness is cleared without the
/// extra `read` that would return EAGAIN (what nginx does with edge-triggered epoll). The clear
/// is tied to the readiness seen before the read, so bytes arriving meanwhile are not missed.
fn read_drained(src: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, bool)> {
    let mut got = None;
    let result = src.try_io(Interest::READABLE, || {
        let n = src.try_read(buf)?;
        got = Some(n);
        if n > 0 && n < buf.len() {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(())
        }
    });
    match got {
        Some(n) => Ok((n, n > 0 && n < buf.len())),
        None => Err(result
            .err()
            .unwrap_or_else(|| io::ErrorKind::WouldBlock.into())),
    }
}

/// Fires once no byte has moved for `idle`, checked every `tick_every` (or sooner for short
/// idle timeouts); calls `tick` at each check.
pub(super) struct IdleTimer {
    sleep: Pin<Box<Sleep>>,
    period: Duration,
    idle: Duration,
    last_total: u64,
    quiet: Duration,
}

impl IdleTimer {
    pub(super) fn new(idle: Duration, tick_every: Duration, total: u64) -> Self {
        let period = tick_every.min(idle / 4).max(Duration::from_millis(10));
        IdleTimer {
            sleep: Box::pin(tokio::time::sleep(period)),
            period,
            idle,
            last_total: total,
            quiet: Duration::ZERO,
        }
    }

    pub(super) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        counts: &Counts,
        tick: &mut impl FnMut(),
    ) -> Poll<()> {
        while self.sleep.as_mut().poll(cx).is_ready() {
            tick();
            let total = counts.total();
            if total == self.last_total {
                self.quiet += self.period;
                if self.quiet >= self.idle {
                    return Poll::Ready(());
                }
            } else {
                (self.last_total, self.quiet) = (total, Duration::ZERO);
            }
            self.sleep.as_mut().reset(Instant::now() + self.period);
        }
        Poll::Pending
    }
}
