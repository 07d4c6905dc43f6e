//! An HTTP/1 framing gate between a downstream connection and hyper (issue 9): a request whose
//! head carries both `Content-Length` and `Transfer-Encoding` gets 400, as in Envoy's HTTP/1 codec
//! (`allow_chunked_length: false`), where hyper alone would drop the length and read the body
//! chunked.
//!
//! hyper has no hook for that, so the gate watches the bytes hyper reads. It follows request
//! heads line by line (a line may span reads: it keeps at most [`CARRY`] bytes of it), notes
//! `Content-Length`, `Transfer-Encoding` and `Upgrade` fields (names case-insensitive), and skips
//! each body as hyper will read it (the length, or chunk-size lines, data, last-chunk and
//! trailers), so the next head of a keep-alive or pipelined connection is found where hyper finds
//! it. When a head with both framing fields ends, the line feed that ends it and everything after
//! are replaced by [`POISON`]: httparse rejects the head, so hyper answers 400 Bad Request and
//! closes the connection; the gate reads nothing more. Nothing of that request reaches routing.
//!
//! `CONNECT`, `Upgrade` and the HTTP/2 connection preface turn the gate into a plain
//! pass-through for the rest of the connection, and so does anything it does not understand (an
//! unusable `Content-Length`, a malformed chunk): hyper stays the authority on everything else,
//! and rejects those itself. The gate allocates nothing; lines are found with memchr.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use memchr::{memchr, memchr2};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Delivered instead of the line feed that ends a rejected head (and everything after it).
/// httparse fails on the NUL (as a header name's first byte after a bare LF, or as the byte after
/// the blank line's CR), and the two line feeds make hyper's quick "is the head complete?" scan
/// run the parser at once, however the head was split across reads.
pub const POISON: [u8; 3] = *b"\0\n\n";

/// Bytes of a head line kept while it spans reads: the longest field name the gate looks at
/// (`transfer-encoding:`, 18 bytes) and a `Content-Length` value with room to spare. A
/// `Content-Length` line longer than this is "not understood" (pass-through; hyper judges it).
pub const CARRY: usize = 64;

/// The downstream IO as hyper sees it: reads pass through the [`Scanner`]; writes are untouched.
pub struct H1Gate<I> {
    inner: I,
    scanner: Scanner,
    /// Bytes of [`POISON`] not delivered yet (the caller's buffer was too small for all of it).
    poison_left: u8,
}

impl<I> H1Gate<I> {
    pub fn new(inner: I) -> Self {
        H1Gate {
            inner,
            scanner: Scanner::new(),
            poison_left: 0,
        }
    }

    pub fn get_ref(&self) -> &I {
        &self.inner
    }

    /// Every byte read so far belongs to a complete message (or there were none): no part of
    /// a head or body is waiting for more. False for a stream the gate no longer follows.
    pub fn at_message_boundary(&self) -> bool {
        self.poison_left == 0 && self.scanner.at_message_boundary()
    }

    fn deliver_poison(&mut self, buf: &mut ReadBuf<'_>) {
        let start = POISON.len() - usize::from(self.poison_left);
        let n = usize::from(self.poison_left).min(buf.remaining());
        buf.put_slice(&POISON[start..start + n]);
        // n <= poison_left <= 3
        self.poison_left -= n as u8;
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for H1Gate<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.scanner.state() {
            State::Pass => return Pin::new(&mut this.inner).poll_read(cx, buf),
            // The rest of the poison, then end of stream: hyper has its 400 to send.
            State::Rejected => {
                this.deliver_poison(buf);
                return Poll::Ready(Ok(()));
            }
            _ => {}
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        if let Some(at) = this.scanner.scan(&buf.filled()[before..]) {
            buf.set_filled(before + at);
            this.poison_left = POISON.len() as u8;
            this.deliver_poison(buf);
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for H1Gate<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Where the scanner is in the downstream byte stream. Chunked states follow hyper's chunked
/// decoder (`hyper::proto::h1::decode`) byte for byte; where hyper would fail, the gate passes
/// through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Before a request line; empty lines are skipped, as httparse does.
    RequestLine,
    /// In a head's field lines.
    Headers,
    /// This many bytes of a `Content-Length` body to go.
    Body(u64),
    /// The first hex digit of a chunk size.
    ChunkStart,
    /// More hex digits of a chunk size (the size so far), or what ends them.
    ChunkSize(u64),
    /// Spaces or tabs after a chunk size.
    ChunkLws(u64),
    /// A chunk extension, up to CR.
    ChunkExt(u64),
    /// The LF after a chunk-size line.
    ChunkSizeLf(u64),
    /// This many bytes of chunk data to go.
    ChunkData(u64),
    ChunkDataCr,
    ChunkDataLf,
    /// After the last chunk (or a trailer field): CR of the final blank line, or a trailer.
    EndCr,
    /// A trailer field, up to CR.
    Trailer,
    TrailerLf,
    /// The LF that ends the message.
    EndLf,
    /// Not watching any more: an HTTP/2 connection, an upgrade, or a stream the gate does not
    /// understand (hyper judges it).
    Pass,
    /// A head with both framing fields was cut off; nothing more is read.
    Rejected,
}

/// What the current head said about framing.
#[derive(Debug, Clone, Copy, Default)]
struct Head {
    content_length: Option<u64>,
    has_content_length: bool,
    /// Invalid, conflicting or too long to read: hyper answers 400 (or the gate cannot follow).
    content_length_unusable: bool,
    transfer_encoding: bool,
    /// CONNECT or Upgrade: the bytes after the head may be another protocol.
    opaque: bool,
}

/// The start of a head line that spans reads.
#[derive(Debug, Clone)]
struct Line {
    held: [u8; CARRY],
    /// The line's length so far; only the first [`CARRY`] bytes are held.
    len: usize,
}

impl Line {
    fn push(&mut self, part: &[u8]) {
        let start = self.len.min(CARRY);
        let n = (CARRY - start).min(part.len());
        self.held[start..start + n].copy_from_slice(&part[..n]);
        self.len = self.len.saturating_add(part.len());
    }
}

/// The gate's state machine over the bytes of one downstream connection.
#[derive(Debug, Clone)]
pub struct Scanner {
    framing: Framing,
    line: Line,
}

#[derive(Debug, Clone)]
struct Framing {
    state: State,
    head: Head,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    pub fn new() -> Self {
        Scanner {
            framing: Framing {
                state: State::RequestLine,
                head: Head::default(),
            },
            line: Line {
                held: [0; CARRY],
                len: 0,
            },
        }
    }

    pub fn state(&self) -> State {
        self.framing.state
    }

    /// Before a request line, with no part of a line held.
    pub fn at_message_boundary(&self) -> bool {
        self.framing.state == State::RequestLine && self.line.len == 0
    }

    /// Follows the next bytes of the stream. `Some(i)`: `data[i]` is the line feed that ends a
    /// head with both `Content-Length` and `Transfer-Encoding`; deliver `data[..i]`, then
    /// [`POISON`], then nothing (the scanner is [`State::Rejected`] from here on).
    pub fn scan(&mut self, data: &[u8]) -> Option<usize> {
        let mut pos = 0;
        while pos < data.len() {
            let rest = &data[pos..];
            let state = &mut self.framing.state;
            match *state {
                State::Pass | State::Rejected => return None,
                State::RequestLine | State::Headers => {
                    let Some(i) = memchr(b'\n', rest) else {
                        self.line.push(rest);
                        return None;
                    };
                    let reject = if self.line.len == 0 {
                        self.framing.on_line(&rest[..i], i > CARRY)
                    } else {
                        self.line.push(&rest[..i]);
                        let long = self.line.len > CARRY;
                        let held = &self.line.held[..self.line.len.min(CARRY)];
                        let reject = self.framing.on_line(held, long);
                        self.line.len = 0;
                        reject
                    };
                    if reject {
                        return Some(pos + i);
                    }
                    pos += i + 1;
                }
                State::Body(left) => {
                    let n = take(left, rest.len());
                    pos += n;
                    *state = match left - n as u64 {
                        0 => State::RequestLine,
                        left => State::Body(left),
                    };
                }
                State::ChunkData(left) => {
                    let n = take(left, rest.len());
                    pos += n;
                    *state = match left - n as u64 {
                        0 => State::ChunkDataCr,
                        left => State::ChunkData(left),
                    };
                }
                State::ChunkExt(size) => match memchr2(b'\r', b'\n', rest) {
                    None => pos = data.len(),
                    Some(i) => {
                        *state = match rest[i] {
                            b'\r' => State::ChunkSizeLf(size),
                            _ => State::Pass,
                        };
                        pos += i + 1;
                    }
                },
                State::Trailer => match memchr(b'\r', rest) {
                    None => pos = data.len(),
                    Some(i) => {
                        *state = State::TrailerLf;
                        pos += i + 1;
                    }
                },
                _ => {
                    *state = chunk_byte(*state, rest[0]);
                    pos += 1;
                }
            }
        }
        None
    }
}

/// How much of `left` body bytes the `available` bytes hold.
fn take(left: u64, available: usize) -> usize {
    usize::try_from(left).map_or(available, |left| left.min(available))
}

/// One byte of chunked framing outside chunk data, extensions and trailers.
fn chunk_byte(state: State, b: u8) -> State {
    match (state, b) {
        (State::ChunkStart, b) => match hex(b) {
            Some(digit) => State::ChunkSize(u64::from(digit)),
            None => State::Pass,
        },
        (State::ChunkSize(size), b) => match hex(b) {
            Some(digit) => size
                .checked_mul(16)
                .and_then(|s| s.checked_add(u64::from(digit)))
                .map_or(State::Pass, State::ChunkSize),
            None => after_size(size, b),
        },
        (State::ChunkLws(size), b) => after_size(size, b),
        (State::ChunkSizeLf(0), b'\n') => State::EndCr,
        (State::ChunkSizeLf(size), b'\n') => State::ChunkData(size),
        (State::ChunkDataCr, b'\r') => State::ChunkDataLf,
        (State::ChunkDataLf, b'\n') => State::ChunkStart,
        (State::EndCr, b'\r') => State::EndLf,
        (State::EndCr, _) => State::Trailer,
        (State::TrailerLf, b'\n') => State::EndCr,
        (State::EndLf, b'\n') => State::RequestLine,
        _ => State::Pass,
    }
}

/// After a chunk size's digits (or the spaces after them).
fn after_size(size: u64, b: u8) -> State {
    match b {
        b' ' | b'\t' => State::ChunkLws(size),
        b';' => State::ChunkExt(size),
        b'\r' => State::ChunkSizeLf(size),
        _ => State::Pass,
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl Framing {
    /// One complete head line, without its LF. `long`: it is longer than [`CARRY`] (and may be
    /// cut to its first [`CARRY`] bytes), so that a line is read the same whether or not it
    /// spanned reads. True when the head must be rejected.
    fn on_line(&mut self, line: &[u8], long: bool) -> bool {
        let line = match line {
            [rest @ .., b'\r'] if !long => rest,
            _ => line,
        };
        if self.state == State::RequestLine {
            if line.is_empty() {
                return false;
            }
            if line == super::H2_PREFACE_LINE {
                self.state = State::Pass;
                return false;
            }
            self.head = Head {
                opaque: line.starts_with(b"CONNECT "),
                ..Head::default()
            };
            self.state = State::Headers;
            return false;
        }
        if line.is_empty() {
            return self.end_of_head();
        }
        let head = &mut self.head;
        if let Some(value) = field_value(line, b"content-length") {
            head.has_content_length = true;
            match content_length(value) {
                Some(n) if !long && head.content_length.is_none_or(|prev| prev == n) => {
                    head.content_length = Some(n);
                }
                _ => head.content_length_unusable = true,
            }
        } else if field_value(line, b"transfer-encoding").is_some() {
            head.transfer_encoding = true;
        } else if field_value(line, b"upgrade").is_some() {
            head.opaque = true;
        }
        false
    }

    fn end_of_head(&mut self) -> bool {
        let head = self.head;
        if head.has_content_length && head.transfer_encoding {
            self.state = State::Rejected;
            return true;
        }
        self.state = if head.opaque || head.content_length_unusable {
            State::Pass
        } else if head.transfer_encoding {
            State::ChunkStart
        } else {
            match head.content_length {
                Some(n) if n > 0 => State::Body(n),
                _ => State::RequestLine,
            }
        };
        false
    }
}

/// The value of `line` when it is the field `name` (lowercase): httparse allows nothing between
/// a name and its colon.
fn field_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let n = name.len();
    (line.get(n) == Some(&b':') && line[..n].eq_ignore_ascii_case(name)).then(|| &line[n + 1..])
}

/// A `Content-Length` value as hyper reads it: decimal digits only, optional whitespace around
/// (httparse trims spaces and tabs).
fn content_length(value: &[u8]) -> Option<u64> {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !blank(b))?;
    let end = value.iter().rposition(|b| !blank(b))? + 1;
    value[start..end].iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then_some(())
            .and_then(|()| n.checked_mul(10))
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
    })
}

#[cfg(test)]
mod tests;
