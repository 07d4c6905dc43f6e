//! Downstream HTTP connection timers, as Envoy's connection manager keeps them:
//! - a request head must arrive whole within `--request-headers-timeout` of its first byte
//!   (HTTP/1.1; a slowloris client dribbling a head is cut);
//! - an open request with no byte moving either way for `--stream-idle-timeout` ends;
//! - a connection with no open request closes after `--http-idle-timeout`.
//!
//! The data path only counts: the connection's IO bumps a read and a write counter (one writer
//! each, so plain loads and stores), each request holds an [`OpenRequest`]. One timer per
//! connection reads the counters every few seconds, so a timeout fires within one tick of its
//! deadline, never before it; no clock is read per request.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::limits::Limits;

/// What a connection has done, as its timer sees it.
#[derive(Debug, Default)]
pub struct Activity {
    reads: AtomicU64,
    writes: AtomicU64,
    /// Requests open: from arrival until their response body is done or abandoned.
    open: AtomicU64,
    /// `reads` when the last open request ended: reads past it are a request head arriving.
    idle_mark: AtomicU64,
    /// The connection speaks HTTP/2 (its first bytes were the preface): no head timer, since
    /// frames arrive between requests.
    h2: AtomicBool,
}

impl Activity {
    /// A request has arrived; it stays open until the guard drops.
    pub fn request_started(self: &Arc<Self>) -> OpenRequest {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenRequest(self.clone())
    }

    /// Requests open now.
    pub fn open_requests(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    fn bump(counter: &AtomicU64) {
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

/// Holds a request open for the connection's timers.
#[derive(Debug)]
pub struct OpenRequest(Arc<Activity>);

impl Drop for OpenRequest {
    fn drop(&mut self) {
        let activity = &self.0;
        let reads = activity.reads.load(Ordering::Relaxed);
        activity.idle_mark.store(reads, Ordering::Relaxed);
        activity.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Which timer closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    RequestHeaders,
    StreamIdle,
    Idle,
}

impl Expired {
    pub fn slug(self) -> &'static str {
        match self {
            Expired::RequestHeaders => "request_headers",
            Expired::StreamIdle => "stream_idle",
            Expired::Idle => "idle",
        }
    }
}

/// Resolves when one of the connection's timeouts has passed.
pub async fn expired(activity: &Activity, limits: &Limits) -> Expired {
    let tick = tick(limits);
    let counts = |a: &Activity| {
        let reads = a.reads.load(Ordering::Relaxed);
        (reads, a.writes.load(Ordering::Relaxed))
    };
    let mut seen = counts(activity);
    let mut quiet_since = Instant::now();
    let mut head_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(tick).await;
        let now = Instant::now();
        let now_counts = counts(activity);
        let reads = now_counts.0;
        if now_counts != seen {
            seen = now_counts;
            quiet_since = now;
        }
        let quiet = now - quiet_since;
        if activity.open.load(Ordering::Relaxed) > 0 {
            head_since = None;
            if quiet >= limits.stream_idle_timeout {
                return Expired::StreamIdle;
            }
        } else if !activity.h2.load(Ordering::Relaxed)
            && reads != activity.idle_mark.load(Ordering::Relaxed)
        {
            // Bytes arrived since the last request ended, and no request has formed of them.
            let since = *head_since.get_or_insert(now);
            if now - since >= limits.request_headers_timeout {
                return Expired::RequestHeaders;
            }
        } else {
            head_since = None;
            if quiet >= limits.idle_timeout {
                return Expired::Idle;
            }
        }
    }
}

/// A quarter of the shortest timeout, between 50 ms and 5 s: late by at most that, and a few
/// wakeups a minute for an idle connection.
fn tick(limits: &Limits) -> Duration {
    let shortest = limits
        .request_headers_timeout
        .min(limits.stream_idle_timeout)
        .min(limits.idle_timeout);
    (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
}

/// The connection's IO, counting reads and writes for its timers.
pub struct Watched<I> {
    io: I,
    activity: Arc<Activity>,
    first_read: bool,
}

impl<I> Watched<I> {
    pub fn new(io: I, activity: Arc<Activity>) -> Self {
        Watched {
            io,
            activity,
            first_read: true,
        }
    }

    pub fn get_ref(&self) -> &I {
        &self.io
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.io).poll_read(cx, buf);
        let new = &buf.filled()[before..];
        if !new.is_empty() {
            if self.first_read {
                self.first_read = false;
                let n = new.len().min(super::H2_PREFACE_LINE.len());
                if new[..n] == super::H2_PREFACE_LINE[..n] {
                    self.activity.h2.store(true, Ordering::Relaxed);
                }
            }
            Activity::bump(&self.activity.reads);
        }
        poll
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            Activity::bump(&self.activity.writes);
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            Activity::bump(&self.activity.writes);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(headers: u64, stream: u64, idle: u64) -> Limits {
        Limits {
            request_headers_timeout: Duration::from_secs(headers),
            stream_idle_timeout: Duration::from_secs(stream),
            idle_timeout: Duration::from_secs(idle),
            ..Limits::default()
        }
    }

    async fn expires_after(activity: &Activity, limits: &Limits) -> (Expired, Duration) {
        let start = Instant::now();
        let expired = expired(activity, limits).await;
        (expired, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_closes_after_the_idle_timeout() {
        let activity = Activity::default();
        let (why, after) = expires_after(&activity, &limits(10, 300, 60)).await;
        assert_eq!(why, Expired::Idle);
        assert!(
            after >= Duration::from_secs(60) && after <= Duration::from_secs(63),
            "{after:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dribbled_head_is_cut_at_the_headers_timeout() {
        let activity = Arc::new(Activity::default());
        let dribble = {
            let activity = activity.clone();
            tokio::spawn(async move {
                loop {
                    Activity::bump(&activity.reads);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        };
        let (why, after) = expires_after(&activity, &limits(10, 300, 3600)).await;
        dribble.abort();
        assert_eq!(why, Expired::RequestHeaders);
        assert!(
            after >= Duration::from_secs(10) && after <= Duration::from_secs(16),
            "{after:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_request_is_held_to_the_stream_idle_timeout_not_the_headers_one() {
        let activity = Arc::new(Activity::default());
        Activity::bump(&activity.reads);
        let open = activity.request_started();
        let (why, after) = expires_after(&activity, &limits(10, 30, 3600)).await;
        assert_eq!(why, Expired::StreamIdle);
        assert!(after >= Duration::from_secs(30), "{after:?}");
        drop(open);
        // The request ended: its bytes are not a head in progress, so the idle timer runs.
        let (why, _) = expires_after(&activity, &limits(10, 30, 3600)).await;
        assert_eq!(why, Expired::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn http2_frames_between_requests_are_not_a_slow_head() {
        let activity = Activity::default();
        activity.h2.store(true, Ordering::Relaxed);
        Activity::bump(&activity.reads);
        let (why, _) = expires_after(&activity, &limits(10, 300, 120)).await;
        assert_eq!(why, Expired::Idle);
    }
}
