//! HTTP/1.1 requests without a body, served without hyper (issue 8).
//!
//! Most requests through a gateway are bodiless keep-alive requests (`GET`, `HEAD`, ...). For
//! those, hyper's server (its dispatcher, the channel behind an `Incoming` body, its buffers,
//! the encoder's general cases) was about a third of tollgate's user-space work per proxied
//! request. This path parses the head with httparse into the same `Request` hyper would build,
//! routes it through [`proxy::handle`], and writes the response with hyper's framing rules
//! (below), usually in one write.
//!
//! Anything else goes to hyper with the bytes read so far put back ([`Parking::unread`]): a head
//! that is not HTTP/1.1, that httparse or `http` reject (hyper answers 400, 414 or 431 from the
//! same bytes), that is too large, that carries `Content-Length`, `Transfer-Encoding`, `Upgrade`
//! or `Expect` or a `Connection` option other than `close` and `keep-alive`, or a `CONNECT`.
//! hyper then serves the connection until it parks (see [`super::park`]), and the next request
//! after that comes here again. Reads still pass through the framing gate and the watchdog's
//! counters, so the head timeout and the gate's view of message boundaries hold on both paths.
//! Between requests this path holds no buffer: an idle connection costs what a parked one does.
//!
//! Response framing, as hyper's server writes it: `Content-Length` from the body's exact size
//! (`0` for an empty body; none on 204 and 304; kept on `HEAD` answers, which carry no body),
//! else chunked; a `date` field when there is none; `connection: close` on the last response,
//! when the client asked for it or the connection drains.

use std::fmt::Write as _;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::{pin, Pin};
use std::task::Poll;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::exchange::ObservedBody;
use super::park::{Parking, ReadReady};
use super::proxy::{self, ConnContext};
use super::spare::{self, HEAD_BUF, READ_BUF};
use super::RequestIn;
use crate::drain::Drained;
use crate::upstream::h1::put_field;

/// Headers the fast path looks at (more: hyper's).
const MAX_HEADERS: usize = 100;

/// Response body chunks up to this size are copied next to the head (one write); larger ones
/// are written from their own buffers (vectored).
const COPY_LIMIT: usize = 1024;

/// Room for the fields the gateway adds to a request on its way upstream (`x-forwarded-*`,
/// `x-request-id`, `x-envoy-*`, ...), so that the map does not grow under them.
const ADDED_FIELDS: usize = 5;

/// How the fast path left the connection.
pub enum Ended {
    /// Closed, or to be closed: nothing more to serve.
    Closed,
    /// The next request is hyper's; its bytes are back in the IO.
    HandOver,
}

/// Serves bodiless HTTP/1.1 requests until the connection ends or a request needs hyper.
pub async fn serve<I>(
    io: &mut Parking<I>,
    conn: &ConnContext,
    mut drained: Pin<&mut Drained<'_>>,
) -> io::Result<Ended>
where
    I: AsyncRead + AsyncWrite + ReadReady + Unpin,
{
    let limits = &conn.shared.settings.limits;
    let max_head = limits.max_request_headers_bytes.max(8192);
    let max_headers = limits.max_request_headers.min(MAX_HEADERS);
    let mut buf = BytesMut::new();
    let mut out = Out::default();
    loop {
        let (request, client_closes) = loop {
            if buf.is_empty() {
                // Between requests: the buffers go back to the thread's spares while the
                // client is quiet.
                spare::READ.give(std::mem::take(&mut buf));
                out.release();
                tokio::select! {
                    biased;
                    ready = io.readable() => ready?,
                    () = drained.as_mut() => {
                        // What hyper does to an idle connection on a graceful shutdown.
                        let _ = io.shutdown().await;
                        return Ok(Ended::Closed);
                    }
                }
            } else {
                match parse(&mut buf, max_headers) {
                    Parsed::Request(request, close) => break (request, close),
                    Parsed::Partial if buf.len() < max_head => {}
                    Parsed::Partial | Parsed::NotFast => {
                        io.unread(buf.freeze());
                        return Ok(Ended::HandOver);
                    }
                }
            }
            if buf.capacity() == 0 {
                buf = spare::READ.take();
            } else if buf.capacity() - buf.len() < READ_BUF / 4 {
                // A head larger than a read buffer, grown up to the head limit.
                buf.reserve(READ_BUF);
            }
            if io.read_buf(&mut buf).await? == 0 {
                // The client closed (mid-head, too: hyper answers nothing then either).
                return Ok(Ended::Closed);
            }
        };
        // Boxed: the exchange's state exists only while a request is under way, so an idle
        // connection's future stays small.
        if !Box::pin(exchange(io, &mut out, request, client_closes, conn)).await? {
            let _ = io.shutdown().await;
            return Ok(Ended::Closed);
        }
    }
}

/// Routes and forwards one request and writes its response; false when the connection is to
/// close after it.
#[allow(clippy::manual_async_fn)] // arguments held once, not twice: see the body
fn exchange<'a, I>(
    io: &'a mut Parking<I>,
    out: &'a mut Out,
    request: Request<RequestIn>,
    client_closes: bool,
    conn: &'a ConnContext,
) -> impl Future<Output = io::Result<bool>> + 'a
where
    I: AsyncRead + AsyncWrite + ReadReady + Unpin,
{
    // A block rather than an `async fn`, which would hold the request twice: see
    // `forward::forward`.
    async move {
        let head_only = request.method() == Method::HEAD;
        // Open for the connection's timers from here: the exchange's record holds the request open
        // from `handle`'s first poll (no await comes before it) until the response body ends.
        let response = proxy::handle(request, conn).await;
        let keep_alive = !client_closes && !conn.shared.drain.is_draining();
        respond(io, out, response, head_only, keep_alive).await
    }
}

// Returned and taken apart at once: boxing the request would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    /// A request, and whether its client asked to close after it (`Connection: close`).
    Request(Request<RequestIn>, bool),
    /// More bytes are needed.
    Partial,
    /// hyper's: see the module.
    NotFast,
}

/// Where a head's field is, for building it from the head's buffer once that is split off.
#[derive(Clone, Copy, Default)]
struct Field {
    name: (u32, u32),
    value: (u32, u32),
}

/// A request head from the front of `buf`, which it then leaves.
fn parse(buf: &mut BytesMut, max_headers: usize) -> Parsed {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, &mut headers[..max_headers]) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::NotFast,
    };
    let (Some(method), Some(path), Some(1)) = (parsed.method, parsed.path, parsed.version) else {
        return Parsed::NotFast;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::NotFast;
    };
    let mut close = false;
    for h in parsed.headers.iter() {
        match field_kind(h.name) {
            FieldKind::Plain => {}
            FieldKind::Connection => match connection_options(h.value) {
                Some(asks_close) => close |= asks_close,
                None => return Parsed::NotFast,
            },
            FieldKind::Hyper => return Parsed::NotFast,
        }
    }
    if method == Method::CONNECT {
        return Parsed::NotFast;
    }
    // Offsets, so that the URI and the values can share the head's buffer.
    let base = buf.as_ptr() as usize;
    let span = |s: &[u8]| {
        let start = (s.as_ptr() as usize - base) as u32;
        (start, start + s.len() as u32)
    };
    let path = span(path.as_bytes());
    let mut fields = [Field::default(); MAX_HEADERS];
    for (field, h) in fields.iter_mut().zip(parsed.headers.iter()) {
        *field = Field {
            name: span(h.name.as_bytes()),
            value: span(h.value),
        };
    }
    let fields = &fields[..parsed.headers.len()];
    let head = buf.split_to(len).freeze();
    match build(method, &head, path, fields) {
        Some(request) => Parsed::Request(request, close),
        None => {
            // Back in front of the rest, for hyper.
            let mut joined = BytesMut::with_capacity(head.len() + buf.len());
            joined.extend_from_slice(&head);
            joined.extend_from_slice(buf);
            *buf = joined;
            Parsed::NotFast
        }
    }
}

/// The request hyper would build from the head; `None` leaves the head to hyper (a URI or a
/// field `http` refuses).
fn build(
    method: Method,
    head: &Bytes,
    path: (u32, u32),
    fields: &[Field],
) -> Option<Request<RequestIn>> {
    let slice = |(start, end): (u32, u32)| head.slice(start as usize..end as usize);
    let uri = Uri::from_maybe_shared(slice(path)).ok()?;
    let mut headers = HeaderMap::with_capacity(fields.len() + ADDED_FIELDS);
    for field in fields {
        let (start, end) = field.name;
        let name = HeaderName::from_bytes(&head[start as usize..end as usize]).ok()?;
        // httparse has checked the value's bytes; `http` refuses a few more, which hyper (that
        // does not check again) then takes.
        let value = HeaderValue::from_maybe_shared(slice(field.value)).ok()?;
        headers.append(name, value);
    }
    let mut request = Request::new(None);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some(request)
}

enum FieldKind {
    Plain,
    Connection,
    /// Bodies, upgrades and `100-continue`: hyper's.
    Hyper,
}

fn field_kind(name: &str) -> FieldKind {
    const HYPERS: [&str; 4] = ["content-length", "transfer-encoding", "upgrade", "expect"];
    if name.eq_ignore_ascii_case("connection") {
        FieldKind::Connection
    } else if HYPERS.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        FieldKind::Hyper
    } else {
        FieldKind::Plain
    }
}

/// Whether a `Connection` field asks to close; `None` when it names anything but `close` and
/// `keep-alive` (hop-by-hop fields and upgrades are hyper's).
fn connection_options(value: &[u8]) -> Option<bool> {
    let mut close = false;
    for option in value.split(|&b| b == b',') {
        let option = option.trim_ascii();
        if option.eq_ignore_ascii_case(b"close") {
            close = true;
        } else if !option.eq_ignore_ascii_case(b"keep-alive") {
            return None;
        }
    }
    Some(close)
}

/// How a response body is delimited on the wire.
enum Framing {
    /// `Content-Length`: the bytes still to come.
    Length(u64),
    Chunked,
}

/// Writes one response; false when the connection is to close after it (asked for, or the body
/// failed or broke its length).
#[allow(clippy::manual_async_fn)] // arguments held once, not twice: see the body
fn respond<'a, I>(
    io: &'a mut Parking<I>,
    out: &'a mut Out,
    response: Response<ObservedBody>,
    head_request: bool,
    keep_alive: bool,
) -> impl Future<Output = io::Result<bool>> + 'a
where
    I: AsyncRead + AsyncWrite + ReadReady + Unpin,
{
    // A block: see `exchange`.
    async move {
        let (mut parts, body) = response.into_parts();
        if !keep_alive {
            append_close(&mut parts.headers);
        }
        let length = if body.is_end_stream() {
            BodyLength::Empty
        } else {
            body.size_hint()
                .exact()
                .map_or(BodyLength::Unknown, BodyLength::Known)
        };
        if out.buf.capacity() == 0 {
            out.buf = spare::HEAD.take();
        }
        let (mut framing, mut reuse) = encode_head(&mut out.buf, &parts, length, head_request);
        reuse &= keep_alive;
        if matches!(framing, Framing::Length(0)) {
            // Nothing to send (or nothing allowed): the body is not polled, as in hyper.
            drop(body);
            out.flush(io).await?;
            io.flush().await?;
            return Ok(reuse);
        }
        let mut body = pin!(body);
        loop {
            let frame = match poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    // Send what is ready while the body waits for more.
                    out.flush(io).await?;
                    io.flush().await?;
                    poll_fn(|cx| body.as_mut().poll_frame(cx)).await
                }
            };
            let frame = match frame {
                None => break,
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "response body failed; closing the connection");
                    out.flush(io).await?;
                    return Ok(false);
                }
            };
            let Ok(data) = frame.into_data() else {
                continue; // Trailers: hyper sends only declared ones; none are declared here.
            };
            if !out.data(&mut framing, data) {
                tracing::debug!("response body longer than its content-length; closing");
                out.flush(io).await?;
                return Ok(false);
            }
        }
        match framing {
            Framing::Length(0) => {}
            Framing::Length(_) => {
                tracing::debug!("response body shorter than its content-length; closing");
                reuse = false;
            }
            Framing::Chunked => out.buf.extend_from_slice(b"0\r\n\r\n"),
        }
        out.flush(io).await?;
        io.flush().await?;
        Ok(reuse)
    }
}

/// `connection: close` on the last response: the client asked for it, or the connection drains
/// (hyper's graceful shutdown).
fn append_close(headers: &mut HeaderMap) {
    let close = headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| has_token(v.as_bytes(), b"close"));
    if !close {
        headers.append(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// A response body's length as hyper's dispatcher classifies it.
#[derive(Clone, Copy, PartialEq)]
enum BodyLength {
    Empty,
    Known(u64),
    Unknown,
}

/// Writes the status line and fields as hyper's server does; returns the body's framing and
/// whether the connection may serve another request after it.
fn encode_head(
    dst: &mut BytesMut,
    parts: &http::response::Parts,
    length: BodyLength,
    head_request: bool,
) -> (Framing, bool) {
    let status = parts.status;
    let mut reuse = status != StatusCode::SWITCHING_PROTOCOLS;
    dst.reserve(HEAD_BUF.max(parts.headers.len() * 64));
    if status == StatusCode::OK {
        dst.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        dst.extend_from_slice(b"HTTP/1.1 ");
        dst.extend_from_slice(status.as_str().as_bytes());
        dst.put_u8(b' ');
        let reason = status.canonical_reason().unwrap_or("<none>");
        dst.extend_from_slice(reason.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    // hyper's `can_have_content_length` and `can_have_body`.
    let may_have_length = !status.is_informational() && !matches!(status.as_u16(), 204 | 304);
    let may_have_body = may_have_length && !head_request;
    let mut framing = None;
    let mut wrote_date = false;
    for (name, value) in &parts.headers {
        match *name {
            header::CONTENT_LENGTH => match length {
                _ if framing.is_some() => continue,
                BodyLength::Known(n) => framing = Some(Framing::Length(n)),
                BodyLength::Unknown => match parse_length(value) {
                    Some(n) => framing = Some(Framing::Length(n)),
                    None => continue,
                },
                // Kept on a `HEAD` answer (the size of what a `GET` would get).
                BodyLength::Empty if head_request => framing = Some(Framing::Length(0)),
                BodyLength::Empty => continue,
            },
            // Hop-by-hop: the framing follows from the body.
            header::TRANSFER_ENCODING => continue,
            header::CONNECTION if has_token(value.as_bytes(), b"close") => reuse = false,
            header::DATE => wrote_date = true,
            _ => {}
        }
        put_field(dst, name.as_str().as_bytes(), value.as_bytes());
    }
    let framing = framing.unwrap_or_else(|| match length {
        BodyLength::Unknown if may_have_body => {
            put_field(dst, b"transfer-encoding", b"chunked");
            Framing::Chunked
        }
        BodyLength::Unknown => Framing::Length(0),
        BodyLength::Empty | BodyLength::Known(0) => {
            if may_have_body {
                put_field(dst, b"content-length", b"0");
            }
            Framing::Length(0)
        }
        BodyLength::Known(n) => {
            if may_have_length {
                put_field(
                    dst,
                    b"content-length",
                    itoa::Buffer::new().format(n).as_bytes(),
                );
            }
            Framing::Length(n)
        }
    });
    if !wrote_date {
        dst.extend_from_slice(b"date: ");
        super::date::extend(dst);
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(b"\r\n");
    if !may_have_body {
        return (Framing::Length(0), reuse);
    }
    (framing, reuse)
}

fn parse_length(value: &HeaderValue) -> Option<u64> {
    std::str::from_utf8(value.as_bytes()).ok()?.parse().ok()
}

/// Response bytes waiting to be written: a buffer for heads, framing and small data, and the
/// larger data chunks in order after what the buffer held when they came.
#[derive(Default)]
struct Out {
    buf: BytesMut,
    queue: Vec<Bytes>,
}

impl Out {
    /// Gives the buffer back to the thread's spares, between requests.
    fn release(&mut self) {
        spare::HEAD.give(std::mem::take(&mut self.buf));
        self.queue = Vec::new();
    }

    /// Adds a body chunk under `framing`; false if it overruns a `Content-Length`.
    fn data(&mut self, framing: &mut Framing, data: Bytes) -> bool {
        if data.is_empty() {
            return true;
        }
        match framing {
            Framing::Length(left) => {
                let Some(rest) = left.checked_sub(data.len() as u64) else {
                    return false;
                };
                *left = rest;
                self.push(data);
            }
            Framing::Chunked => {
                let _ = write!(self.buf, "{:x}\r\n", data.len());
                self.push(data);
                self.buf.extend_from_slice(b"\r\n");
            }
        }
        true
    }

    fn push(&mut self, data: Bytes) {
        if data.len() <= COPY_LIMIT {
            self.buf.extend_from_slice(&data);
        } else {
            if !self.buf.is_empty() {
                self.queue.push(self.buf.split().freeze());
            }
            self.queue.push(data);
        }
    }

    /// Writes everything pending.
    async fn flush<W: AsyncWrite + Unpin>(&mut self, io: &mut W) -> io::Result<()> {
        if !self.buf.is_empty() {
            if self.queue.is_empty() {
                io.write_all(&self.buf).await?;
                self.buf.clear();
                return Ok(());
            }
            self.queue.push(self.buf.split().freeze());
        }
        let mut first = 0;
        while first < self.queue.len() {
            let mut slices = [IoSlice::new(&[]); 16];
            let count = slices.len().min(self.queue.len() - first);
            for (slice, bytes) in slices.iter_mut().zip(&self.queue[first..first + count]) {
                *slice = IoSlice::new(bytes);
            }
            let mut written = io.write_vectored(&slices[..count]).await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            while written > 0 {
                let bytes = &mut self.queue[first];
                let n = written.min(bytes.len());
                bytes.advance(n);
                written -= n;
                if bytes.is_empty() {
                    first += 1;
                }
            }
        }
        self.queue.clear();
        Ok(())
    }
}
