//! Idle HTTP/1.1 keep-alive connections without hyper's per-connection state (issue 8).
//!
//! A hyper HTTP/1 connection holds an 8 KiB read buffer, an 8 KiB head buffer, its dispatcher
//! (with the request future's slot) and its parser state for as long as it lives, whether or not
//! a request is under way: most of an idle keep-alive connection's memory. nginx frees its
//! buffers between requests; this module does the same for hyper, from outside it.
//!
//! [`Parking`] is the downstream IO as hyper sees it (under [`H1Gate`] and [`Watched`]). Once
//! it is armed, a read that finds nothing to read while the connection is between messages
//! (no request open, nothing left unflushed, the gate at a message boundary) is answered with
//! an end of stream instead of `Pending`. hyper takes that as the client closing an idle
//! keep-alive connection: it finishes without writing anything, and its `shutdown` of the IO is
//! skipped here. The server then takes the IO back ([`Parking::take_parked`]), drops hyper's
//! connection with all its buffers, waits for the socket to become readable
//! ([`Parking::readable`], which reads nothing) and serves the next request with a new hyper
//! connection. The client sees one keep-alive connection, byte for byte as before.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::h1_gate::H1Gate;
use super::watchdog::{Activity, Watched};

/// How long an HTTP/1.1 connection stays quiet between two requests before it parks (at most
/// twice this after its last request). Clients that send their next request sooner (busy
/// keep-alive connections) never park, and so never pay for a new hyper connection per request;
/// an idle one gives its buffers back after this.
pub const PARK_AFTER: Duration = Duration::from_millis(250);

/// An IO that can wait until a read would make progress, without reading.
pub trait ReadReady {
    /// Ready when a read would return bytes, the end of the stream or an error.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ReadReady for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }
}

impl<I: ReadReady> ReadReady for tokio_rustls::server::TlsStream<I> {
    /// Plaintext (or a close_notify) rustls already holds, else the socket's readiness.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (io, session) = self.get_ref();
        if !session.wants_read() {
            return Poll::Ready(Ok(()));
        }
        io.poll_read_ready(cx)
    }
}

/// The downstream connection's IO, able to park between HTTP/1.1 requests (see the module).
pub struct Parking<I> {
    io: H1Gate<Watched<I>>,
    activity: Arc<Activity>,
    /// Bytes read ahead (the protocol sniff), delivered before the stream's.
    prefix: Bytes,
    /// HTTP/1: a quiet read between messages ends hyper's connection.
    armed: bool,
    /// A read was answered with a made-up end of stream.
    parked: bool,
    /// Written since the last completed flush.
    unflushed: bool,
    /// A read error met while replaying `prefix`, for the next read.
    read_error: Option<io::Error>,
    /// Reads that returned bytes.
    reads: u64,
    /// Runs while the connection waits between messages (see [`Parking::quiet_long_enough`]).
    quiet: Option<Pin<Box<Sleep>>>,
    /// `reads` when `quiet` was last started.
    reads_at_quiet: u64,
}

impl<I> Parking<I> {
    pub fn new(io: I, activity: Arc<Activity>) -> Self {
        Parking {
            io: H1Gate::new(Watched::new(io, activity.clone())),
            activity,
            prefix: Bytes::new(),
            armed: false,
            parked: false,
            unflushed: false,
            read_error: None,
            reads: 0,
            quiet: None,
            reads_at_quiet: 0,
        }
    }

    /// From here on, a quiet read between messages parks the connection.
    pub fn arm(&mut self) {
        self.armed = true;
    }

    /// Reads pass through again (the fast path serves the connection).
    pub fn disarm(&mut self) {
        self.armed = false;
        self.quiet = None;
    }

    /// Puts bytes back in front of the stream (read ahead, or left in hyper's buffer).
    pub fn unread(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            // Dropped: an empty `Bytes` can still own its buffer (hyper's 8 KiB read buffer).
            return;
        }
        if self.prefix.is_empty() {
            self.prefix = bytes;
        } else {
            let mut joined = Vec::with_capacity(bytes.len() + self.prefix.len());
            joined.extend_from_slice(&bytes);
            joined.extend_from_slice(&self.prefix);
            self.prefix = joined.into();
        }
    }

    /// True once, after hyper's connection ended on a made-up end of stream.
    pub fn take_parked(&mut self) -> bool {
        std::mem::take(&mut self.parked)
    }

    /// The connection has stayed between messages, with no byte read, for [`PARK_AFTER`].
    fn quiet_long_enough(&self) -> bool {
        self.quiet
            .as_ref()
            .is_some_and(|quiet| quiet.is_elapsed() && self.reads == self.reads_at_quiet)
    }

    /// Starts the quiet timer, which wakes the task when [`PARK_AFTER`] is up, unless it is
    /// already running: it is started at most once per period however many requests go by (a
    /// connection parks between one and two periods after its last request), so a busy
    /// connection never parks and costs no timer work per request.
    fn start_quiet(&mut self, cx: &mut Context<'_>) {
        if self.quiet.as_ref().is_some_and(|quiet| !quiet.is_elapsed()) {
            return;
        }
        let quiet = self
            .quiet
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(PARK_AFTER)));
        quiet.as_mut().reset(Instant::now() + PARK_AFTER);
        self.reads_at_quiet = self.reads;
        // Registers the task's waker; the deadline is ahead.
        let _ = quiet.as_mut().poll(cx);
    }

    /// Answers hyper's read with an end of stream: its connection ends, the IO stays open.
    fn park(&mut self) -> Poll<io::Result<()>> {
        self.parked = true;
        self.quiet = None;
        tracing::trace!("idle keep-alive connection parked");
        Poll::Ready(Ok(()))
    }

    /// Between two messages, with nothing in flight either way: hyper holds no request, no
    /// response bytes and no part of a head.
    fn may_park(&self) -> bool {
        !self.unflushed && self.between_messages()
    }

    fn between_messages(&self) -> bool {
        self.armed
            && self.prefix.is_empty()
            && self.activity.open_requests() == 0
            && self.io.at_message_boundary()
    }
}

impl<I: ReadReady> Parking<I> {
    /// Completes when a read would make progress; reads nothing, so a parked connection holds
    /// no buffer of hyper's while it waits.
    pub async fn readable(&mut self) -> io::Result<()> {
        let this = self;
        std::future::poll_fn(move |cx| {
            if !this.prefix.is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.io.get_ref().get_ref().poll_read_ready(cx)
        })
        .await
    }
}

impl<I: AsyncRead + ReadReady + Unpin> AsyncRead for Parking<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.read_error.take() {
            return Poll::Ready(Err(e));
        }
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            if this.prefix.is_empty() {
                this.prefix = Bytes::new();
                // The rest of what is already there in the same read: hyper parses a head that
                // arrives whole at once, without growing its buffer for a second read.
                if buf.remaining() > 0 {
                    let before = buf.filled().len();
                    match Pin::new(&mut this.io).poll_read(cx, buf) {
                        Poll::Ready(Ok(())) if buf.filled().len() > before => this.reads += 1,
                        Poll::Ready(Err(e)) => {
                            // For the next read: these bytes go first.
                            buf.set_filled(before);
                            this.read_error = Some(e);
                        }
                        _ => {}
                    }
                }
            }
            return Poll::Ready(Ok(()));
        }
        let may_park = this.may_park();
        // Quiet long enough, and nothing there (nothing buffered, the socket not readable):
        // park without a read.
        if may_park
            && this.quiet_long_enough()
            && this.io.get_ref().get_ref().poll_read_ready(cx).is_pending()
        {
            return this.park();
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending if may_park => {
                if this.quiet_long_enough() {
                    return this.park();
                }
                this.start_quiet(cx);
                Poll::Pending
            }
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.reads += 1;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Parking<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.unflushed = true;
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.unflushed = true;
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        if matches!(poll, Poll::Ready(Ok(()))) && std::mem::take(&mut this.unflushed) {
            // The end of a response is out. hyper may not read again before the client sends
            // (its last read came up empty while the request was under way): the quiet timer
            // has it polled, to read and so park, once the connection has stayed idle.
            if this.may_park() {
                this.start_quiet(cx);
            }
        }
        poll
    }

    /// hyper shuts down the IO when its connection ends; a parked connection stays open.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.parked {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    //! The parking decision on a scripted stream, with tokio's clock paused: a read that would
    //! wait either parks (an end of stream) or stays pending.

    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    /// A test stream whose reads are never known to be ready in advance, so a quiet read goes
    /// through to the stream and waits.
    struct Scripted(DuplexStream);

    impl ReadReady for Scripted {
        fn poll_read_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncRead for Scripted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Scripted {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    /// An armed `Parking` and the client end of its stream.
    fn parking() -> (Parking<Scripted>, DuplexStream, Arc<Activity>) {
        let (client, server) = tokio::io::duplex(4096);
        let activity = Arc::new(Activity::default());
        let mut io = Parking::new(Scripted(server), activity.clone());
        io.arm();
        (io, client, activity)
    }

    /// Reads what the client sent (`n` bytes) as hyper would.
    async fn consume(io: &mut Parking<Scripted>, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        io.read_exact(&mut got).await.expect("the sent bytes");
        got
    }

    /// What the next read does within `wait`: `Some(bytes read)`, 0 being an end of stream (the
    /// connection parked), or `None` if it is still waiting.
    async fn next_read(io: &mut Parking<Scripted>, wait: Duration) -> Option<usize> {
        let mut buf = [0u8; 64];
        tokio::time::timeout(wait, io.read(&mut buf))
            .await
            .ok()
            .map(|r| r.expect("no read error"))
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    #[tokio::test(start_paused = true)]
    async fn a_quiet_connection_parks_after_the_delay_between_messages() {
        let (mut io, mut client, _activity) = parking();
        client.write_all(GET).await.unwrap();
        consume(&mut io, GET.len()).await;
        assert_eq!(next_read(&mut io, PARK_AFTER / 2).await, None, "too soon");
        assert_eq!(next_read(&mut io, PARK_AFTER).await, Some(0), "parked");
        assert!(io.take_parked());
        assert!(!io.take_parked(), "reported once");
        // Parked, it does not shut the stream down for hyper.
        io.shutdown().await.unwrap();
        client.write_all(GET).await.unwrap();
        assert_eq!(consume(&mut io, GET.len()).await, GET);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_does_not_park_while_a_body_is_arriving() {
        let (mut io, mut client, _activity) = parking();
        let head = b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123";
        client.write_all(head).await.unwrap();
        consume(&mut io, head.len()).await;
        assert_eq!(next_read(&mut io, PARK_AFTER * 10).await, None);
        client.write_all(b"456789").await.unwrap();
        assert_eq!(next_read(&mut io, PARK_AFTER).await, Some(6));
        assert_eq!(next_read(&mut io, PARK_AFTER * 3).await, Some(0), "parked");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_does_not_park_in_a_head() {
        let (mut io, mut client, _activity) = parking();
        let part = b"GET / HTTP/1.1\r\nHo";
        client.write_all(part).await.unwrap();
        consume(&mut io, part.len()).await;
        assert_eq!(next_read(&mut io, PARK_AFTER * 10).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_does_not_park_under_an_open_request() {
        let (mut io, mut client, activity) = parking();
        client.write_all(GET).await.unwrap();
        consume(&mut io, GET.len()).await;
        let open = activity.request_started();
        assert_eq!(next_read(&mut io, PARK_AFTER * 10).await, None);
        drop(open);
        assert_eq!(next_read(&mut io, PARK_AFTER * 3).await, Some(0), "parked");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_does_not_park_with_a_response_unflushed() {
        let (mut io, mut client, _activity) = parking();
        client.write_all(GET).await.unwrap();
        consume(&mut io, GET.len()).await;
        io.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(next_read(&mut io, PARK_AFTER * 10).await, None);
        io.flush().await.unwrap();
        assert_eq!(next_read(&mut io, PARK_AFTER * 3).await, Some(0), "parked");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unarmed_connection_never_parks() {
        let (client_end, server) = tokio::io::duplex(4096);
        let mut io = Parking::new(Scripted(server), Arc::new(Activity::default()));
        assert_eq!(next_read(&mut io, PARK_AFTER * 10).await, None);
        drop(client_end);
        assert_eq!(
            next_read(&mut io, PARK_AFTER).await,
            Some(0),
            "the real end"
        );
        assert!(!io.take_parked());
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_put_back_come_first_with_what_follows_in_the_same_read() {
        let (mut io, mut client, _activity) = parking();
        client.write_all(b"T / HTTP/1.1\r\n").await.unwrap();
        io.unread(Bytes::from_static(b"GE"));
        io.unread(Bytes::new());
        let mut buf = [0u8; 64];
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n");
    }
}
