//! One upstream HTTP/1.1 connection: its socket, its read buffer, and writing a request onto it.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWrite;

use super::codec::HeadScratch;
use crate::tls::prefixed::Prefixed;
use crate::upstream::Conn;

/// The first read buffer; it doubles, up to [`MAX_READ`], while reads fill it (as hyper's
/// adaptive buffer), so bulk responses need few reads and small ones little memory.
const FIRST_READ: usize = 8 * 1024;
const MAX_READ: usize = 64 * 1024;

pub(super) struct Connection {
    io: Conn,
    /// Bytes read and not yet taken: a response head, or body bytes.
    pub read: BytesMut,
    read_size: usize,
    /// The request head being written (kept for its capacity).
    pub head: Vec<u8>,
    /// What parsing response heads keeps between them.
    pub scratch: HeadScratch,
    /// Requests it has carried (`maxRequestsPerConnection`).
    pub served: u32,
    /// Since when it has been idle (`idleTimeout`).
    pub idle_since: Instant,
    pub idle_timeout: Duration,
    /// 0 = unlimited.
    pub max_requests: u32,
}

impl Connection {
    pub fn new(io: Conn, idle_timeout: Duration, max_requests: u32) -> Self {
        Connection {
            io,
            read: BytesMut::new(),
            read_size: FIRST_READ,
            head: Vec::new(),
            scratch: HeadScratch::default(),
            served: 0,
            idle_since: Instant::now(),
            idle_timeout,
            max_requests,
        }
    }

    /// Reads more into `read`: `Ok(0)` is the end of the stream.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < self.read_size / 2 {
            self.read.reserve(self.read_size);
        }
        let spare = self.read.capacity() - self.read.len();
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.read
        ))?;
        if n == spare && self.read_size < MAX_READ {
            self.read_size *= 2;
        }
        Poll::Ready(Ok(n))
    }

    /// Whether an idle connection can carry a request: its read would block. The upstream's
    /// close (or stray bytes) shows as a ready read. While the socket's readiness is clear (the
    /// last read drained it), this asks tokio's flags, not the kernel.
    pub fn is_open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.read.is_empty() && self.poll_fill(&mut cx).is_pending()
    }

    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
}

/// Bytes on their way out: a head (the connection's `head` buffer, from `at`), then a body
/// chunk, then a fixed tail (a chunk's CRLF), written with one `writev` where they fit.
#[derive(Default)]
pub(super) struct Outbox {
    pub at: usize,
    pub data: Bytes,
    pub tail: &'static [u8],
}

impl Outbox {
    /// Writes until everything queued is out or the socket is full.
    pub fn poll_drain(
        &mut self,
        conn: &mut Connection,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let head = &conn.head[self.at.min(conn.head.len())..];
            let parts = [head, &self.data[..], self.tail];
            let total: usize = parts.iter().map(|p| p.len()).sum();
            if total == 0 {
                return Poll::Ready(Ok(()));
            }
            let slices = parts.map(io::IoSlice::new);
            let n = ready!(Pin::new(&mut conn.io).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(conn.head.len(), n);
        }
    }

    fn advance(&mut self, head_len: usize, mut n: usize) {
        let in_head = (head_len - self.at.min(head_len)).min(n);
        self.at += in_head;
        n -= in_head;
        let in_data = self.data.len().min(n);
        self.data.advance(in_data);
        n -= in_data;
        self.tail = &self.tail[n.min(self.tail.len())..];
    }
}

/// Where a 101 response carries its connection: response extensions must be `Clone`, the
/// connection is taken out once. The bytes already read past the 101 are replayed first.
#[derive(Clone)]
pub struct UpgradeSlot(Arc<Mutex<Option<Prefixed<Conn>>>>);

impl UpgradeSlot {
    pub(super) fn new(conn: Connection) -> Self {
        let Connection { io, mut read, .. } = conn;
        let upgraded = Prefixed::new(read.split().freeze(), io);
        UpgradeSlot(Arc::new(Mutex::new(Some(upgraded))))
    }

    pub fn take(&self) -> Option<Prefixed<Conn>> {
        self.0.lock().ok()?.take()
    }
}
