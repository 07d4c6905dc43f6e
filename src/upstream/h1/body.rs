//! An HTTP/1.1 response body read straight off its upstream connection, which goes back to the
//! pool the moment the body has been read whole.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};

use super::codec::Framing;
use super::conn::Connection;
use super::Home;

/// A chunk-size line longer than this (extensions included) is refused.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// The trailer section is read and dropped, as Envoy's HTTP/1 codec does by default; up to this.
const MAX_TRAILERS: usize = 64 * 1024;

/// Why a response body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("reading the upstream response body: {0}")]
    Io(#[from] io::Error),
    #[error("upstream closed the connection before the response body ended")]
    Incomplete,
    #[error("malformed chunked response body: {0}")]
    Chunked(&'static str),
}

/// The response body of one exchange.
pub struct Body {
    state: State,
}

enum State {
    Done,
    /// The whole body, read with the head; the connection is already back in the pool.
    Buffered(Bytes),
    Reading {
        conn: Box<Connection>,
        decoder: Decoder,
        /// Where the connection goes back when the body ends, if it may carry another request.
        home: Option<Home>,
    },
}

impl Body {
    pub(super) fn empty() -> Self {
        Body { state: State::Done }
    }

    /// A body read whole with the head (`Content-Length: 0` is an ended body at once).
    pub(super) fn buffered(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            return Body::empty();
        }
        Body {
            state: State::Buffered(bytes),
        }
    }

    pub(super) fn reading(conn: Box<Connection>, framing: Framing, home: Option<Home>) -> Self {
        let Some(decoder) = Decoder::new(framing) else {
            return Body::empty();
        };
        Body {
            state: State::Reading {
                conn,
                decoder,
                home,
            },
        }
    }

    /// The body has been read whole: the connection goes home if it can carry another request.
    fn finish(&mut self) {
        if let State::Reading {
            conn,
            home: Some(home),
            ..
        } = std::mem::replace(&mut self.state, State::Done)
        {
            if conn.read.is_empty() {
                home.checkin(conn);
            }
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        loop {
            let (conn, decoder) = match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Buffered(bytes) => {
                    let bytes = std::mem::take(bytes);
                    this.state = State::Done;
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                State::Reading { conn, decoder, .. } => (conn, decoder),
            };
            match decoder.step(&mut conn.read) {
                Ok(Step::Data(bytes)) => {
                    if decoder.settle(&mut conn.read) {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                Ok(Step::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::More) => {}
                Err(e) => {
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(decoder, Decoder::UntilClose) => {
                    this.state = State::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(BodyError::Incomplete)));
                }
                Ok(_) => {}
                Err(e) => {
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Done => SizeHint::with_exact(0),
            State::Buffered(bytes) => SizeHint::with_exact(bytes.len() as u64),
            State::Reading {
                decoder: Decoder::Length(n),
                ..
            } => SizeHint::with_exact(*n),
            State::Reading { .. } => SizeHint::default(),
        }
    }
}

/// How the body's end is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decoder {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, with this much left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer fields until a blank line; this many bytes seen.
    Trailers(usize),
    End,
}

pub(super) enum Step {
    Data(Bytes),
    /// The buffered bytes are used up before the body's end.
    More,
    End,
}

impl Decoder {
    /// The decoder for a framing; none for a body that is empty.
    pub(super) fn new(framing: Framing) -> Option<Decoder> {
        match framing {
            Framing::Empty => None,
            Framing::Length(n) => Some(Decoder::Length(n)),
            Framing::Chunked => Some(Decoder::Chunked(Chunk::Size)),
            Framing::UntilClose => Some(Decoder::UntilClose),
        }
    }

    /// Takes the next piece of body out of `buf`.
    pub(super) fn step(&mut self, buf: &mut BytesMut) -> Result<Step, BodyError> {
        match self {
            Decoder::Length(0) => Ok(Step::End),
            Decoder::Length(left) => {
                if buf.is_empty() {
                    return Ok(Step::More);
                }
                let n = (*left).min(buf.len() as u64) as usize;
                *left -= n as u64;
                Ok(Step::Data(buf.split_to(n).freeze()))
            }
            Decoder::UntilClose if buf.is_empty() => Ok(Step::More),
            Decoder::UntilClose => Ok(Step::Data(buf.split().freeze())),
            Decoder::Chunked(chunk) => loop {
                match chunk.advance(buf)? {
                    Some(Step::More) if *chunk == Chunk::End => return Ok(Step::End),
                    Some(step) => return Ok(step),
                    None => {}
                }
            },
        }
    }

    /// After a data piece: moves past framing already in `buf` (a chunk's CRLF, the last chunk,
    /// the trailers) without waiting for more, and says whether the body has ended, so the
    /// connection goes back to the pool with the last piece of data.
    fn settle(&mut self, buf: &mut BytesMut) -> bool {
        match self {
            Decoder::Length(left) => *left == 0,
            Decoder::UntilClose => false,
            Decoder::Chunked(chunk) => {
                while !matches!(chunk, Chunk::Data(_) | Chunk::End) {
                    match chunk.advance(buf) {
                        Ok(None) => {}
                        // Incomplete or malformed: the next poll reads on, or reports it.
                        _ => break,
                    }
                }
                *chunk == Chunk::End
            }
        }
    }
}

impl Chunk {
    /// One state transition. `Ok(None)`: the state moved, go on; `Ok(Some(More))`: `buf`
    /// holds too little (or the body has ended, in state `End`).
    fn advance(&mut self, buf: &mut BytesMut) -> Result<Option<Step>, BodyError> {
        match *self {
            Chunk::Size => {
                let Some(line_end) = memchr::memchr(b'\n', buf) else {
                    if buf.len() > MAX_CHUNK_LINE {
                        return Err(BodyError::Chunked("chunk-size line too long"));
                    }
                    return Ok(Some(Step::More));
                };
                let size = chunk_size(&buf[..line_end])?;
                let _ = buf.split_to(line_end + 1);
                *self = if size == 0 {
                    Chunk::Trailers(0)
                } else {
                    Chunk::Data(size)
                };
                Ok(None)
            }
            Chunk::Data(left) => {
                if buf.is_empty() {
                    return Ok(Some(Step::More));
                }
                let n = left.min(buf.len() as u64) as usize;
                *self = if n as u64 == left {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left - n as u64)
                };
                Ok(Some(Step::Data(buf.split_to(n).freeze())))
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Some(Step::More));
                }
                if &buf[..2] != b"\r\n" {
                    return Err(BodyError::Chunked("chunk data not followed by CRLF"));
                }
                let _ = buf.split_to(2);
                *self = Chunk::Size;
                Ok(None)
            }
            Chunk::Trailers(seen) => {
                let Some(line_end) = memchr::memchr(b'\n', buf) else {
                    if seen + buf.len() > MAX_TRAILERS {
                        return Err(BodyError::Chunked("trailer section too large"));
                    }
                    return Ok(Some(Step::More));
                };
                let blank = line_end == 1 && buf[0] == b'\r';
                if line_end == 0 || buf[line_end - 1] != b'\r' {
                    return Err(BodyError::Chunked("trailer line not ended by CRLF"));
                }
                let _ = buf.split_to(line_end + 1);
                *self = if blank {
                    Chunk::End
                } else {
                    Chunk::Trailers(seen + line_end + 1)
                };
                Ok(None)
            }
            Chunk::End => Ok(Some(Step::More)),
        }
    }
}

/// The size on a chunk-size line (`1a;ext=v\r`, without its LF): hex digits, then optional
/// whitespace and extensions, which are ignored. The line must end in CRLF.
fn chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let line = line
        .strip_suffix(b"\r")
        .ok_or(BodyError::Chunked("chunk-size line not ended by CRLF"))?;
    let digits = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if digits == 0 || digits > 16 {
        return Err(BodyError::Chunked("chunk size"));
    }
    let rest = line[digits..].trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return Err(BodyError::Chunked("chunk size"));
    }
    if rest.iter().any(|&b| b < b' ' && b != b'\t') {
        return Err(BodyError::Chunked("control byte in chunk extension"));
    }
    let hex = std::str::from_utf8(&line[..digits]).map_err(|_| BodyError::Chunked("chunk size"))?;
    u64::from_str_radix(hex, 16).map_err(|_| BodyError::Chunked("chunk size"))
}

#[cfg(test)]
mod tests;
