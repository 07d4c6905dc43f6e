//! The byte shuttle between a client socket and its upstream socket: both directions in one task,
//! a buffer borrowed from a per-thread pool only while bytes are in flight (an idle connection
//! holds none), FIN forwarded as FIN and a reset as a reset, and an idle timeout.

use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

use super::buffer::Buffer;

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
    idle: Duration,
    tick_every: Duration,
    mut tick: impl FnMut(),
) -> End {
    let to_upstream = pump(
        client,
        upstream,
        &counts.received,
        Side::Client,
        Side::Upstream,
    );
    let to_client = pump(upstream, client, &counts.sent, Side::Upstream, Side::Client);
    let both = async { tokio::try_join!(to_upstream, to_client) };
    let watch = idle_watch(counts, idle, tick_every, &mut tick);
    let end = tokio::select! {
        biased;
        result = both => match result {
            Ok(_) => End::Closed,
            Err(Side::Client) => End::ClientReset,
            Err(Side::Upstream) => End::UpstreamReset,
        },
        () = watch => End::Idle,
    };
    match end {
        // The failed side is gone; make the other one see a reset too, not a clean close.
        End::ClientReset => abort(upstream),
        End::UpstreamReset => abort(client),
        End::Closed | End::Idle => {}
    }
    end
}

/// A close with SO_LINGER 0 sends RST instead of FIN when the socket is dropped.
pub fn abort(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// One direction: wait for bytes without holding a buffer, then move them until the source runs
/// dry. EOF becomes a FIN (half-close) on the destination.
async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    counter: &AtomicU64,
    src_side: Side,
    dst_side: Side,
) -> Result<(), Side> {
    loop {
        src.readable().await.map_err(|_| src_side)?;
        let mut buf = Buffer::take();
        loop {
            let (n, drained) = match read_drained(src, buf.as_mut()) {
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return Err(src_side),
            };
            if n == 0 {
                // The source sent FIN: pass it on, keep the other direction going.
                let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
                return Ok(());
            }
            write_all(dst, &buf.as_mut()[..n])
                .await
                .map_err(|_| dst_side)?;
            Counts::add(counter, n);
            if drained {
                break;
            }
        }
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

async fn write_all(dst: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match dst.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Resolves once no byte has moved for `idle`, checked every `tick_every` (or sooner for short
/// idle timeouts); calls `tick` at each check.
pub(super) async fn idle_watch(
    counts: &Counts,
    idle: Duration,
    tick_every: Duration,
    mut tick: impl FnMut(),
) {
    let period = tick_every.min(idle / 4).max(Duration::from_millis(10));
    let mut last_total = counts.total();
    let mut quiet = Duration::ZERO;
    loop {
        tokio::time::sleep(period).await;
        tick();
        let total = counts.total();
        if total == last_total {
            quiet += period;
            if quiet >= idle {
                return;
            }
        } else {
            last_total = total;
            quiet = Duration::ZERO;
        }
    }
}
