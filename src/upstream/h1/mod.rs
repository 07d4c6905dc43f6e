//! HTTP/1.1 upstream connections, kept alive per pool key, with the protocol spoken here rather
//! than through hyper's client: the exchange runs inside the request's own task (no connection
//! task, no dispatch channel), writes the head and a buffered body with one `writev`, and reads
//! the response body straight off the connection, which goes back to the pool as soon as the
//! body has been read whole.
//!
//! The endpoint is already chosen by the load balancer, so the pool is keyed by its address (and
//! connection settings) alone, and a request's URI stays in the origin form it is sent in.

mod body;
mod codec;
pub(crate) use codec::put_field;
mod conn;
#[doc(hidden)]
pub mod fuzz;

// foldhash: a per-process seeded hash, several times cheaper than SipHash per lookup.
use foldhash::HashMap;
use std::future::poll_fn;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use http::header::UPGRADE;
use http::request::Parts;
use http::{Method, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{Either, Full};
use hyper::body::Incoming;

pub use body::Body;
pub use conn::UpgradeSlot;

use super::client::{spawn_reaper, Connect, PoolKey, UpstreamError};
use super::RequestBody;
use codec::{BodySize, Framing, ResponseHead};
use conn::{Connection, Outbox};

/// Idle connections kept per key; more are closed when their response ends.
const MAX_IDLE_PER_ENDPOINT: usize = 256;

type Idle = Arc<Mutex<HashMap<PoolKey, Vec<Box<Connection>>>>>;

#[derive(Default)]
pub struct H1Pool {
    idle: Idle,
    reaper: OnceLock<()>,
}

/// Where a connection goes back to when its response has been read.
pub(super) struct Home {
    idle: Idle,
    key: PoolKey,
}

impl Home {
    /// Back to the pool, unless it has carried its `maxRequestsPerConnection` (dropped, it
    /// closes) or the pool is full.
    fn checkin(self, conn: Box<Connection>) {
        checkin(&self.idle, self.key, conn);
    }
}

/// How an exchange failed.
enum Failed {
    /// Nothing was written: the request can go out on another connection, with this body.
    Unsent(RequestBody),
    Reset,
}

impl H1Pool {
    /// Sends the request `head` (borrowed: the caller keeps it for a retry) and `body`.
    pub async fn send(
        &self,
        key: PoolKey,
        connect: Connect<'_>,
        head: &Parts,
        mut body: RequestBody,
    ) -> Result<Response<Body>, UpstreamError> {
        // The upstream may have closed a pooled connection while it sat idle; a request that
        // could not be written on it goes out on the next connection (as hyper-util's client).
        while let Some(conn) = self.checkout(key) {
            match self.exchange(key, conn, head, body).await {
                Ok(response) => return Ok(response),
                Err(Failed::Unsent(unsent)) => body = unsent,
                Err(Failed::Reset) => return Err(UpstreamError::Reset),
            }
        }
        let spec = &connect.transport.spec;
        // Boxed: the connect and handshake states (TCP, TLS) are large, and inline they would
        // make every pooled request's future that much larger to create and move.
        let io = Box::pin(connect.open(key.addr)).await?;
        let conn = Box::new(Connection::new(
            io,
            spec.idle_timeout,
            spec.max_requests_per_connection,
        ));
        self.start_reaper();
        self.exchange(key, conn, head, body)
            .await
            .map_err(|_| UpstreamError::Reset)
    }

    /// A connection ready for a request (LIFO, to keep few connections warm); closed ones go.
    /// Expiry is the reaper's job: no clock read per request here.
    fn checkout(&self, key: PoolKey) -> Option<Box<Connection>> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(&key)?;
        while let Some(mut conn) = list.pop() {
            if conn.is_open() {
                return Some(conn);
            }
        }
        None
    }

    /// One request and its response head on `conn`; the body reads on from the connection.
    async fn exchange(
        &self,
        key: PoolKey,
        mut conn: Box<Connection>,
        head: &Parts,
        body: RequestBody,
    ) -> Result<Response<Body>, Failed> {
        let head_request = head.method == Method::HEAD;
        let upgrade = head.headers.contains_key(UPGRADE);
        let mut outgoing = Outgoing::new(body);
        conn.head.clear();
        let framing = codec::encode_request(head, outgoing.size(), &mut conn.head);
        let mut outbox = Outbox {
            data: outgoing.take_buffered(framing),
            ..Outbox::default()
        };
        // Until a byte is out on a reused connection, the request may still go elsewhere.
        let first = poll_fn(|cx| Poll::Ready(outbox.poll_drain(&mut conn, cx))).await;
        if let Poll::Ready(Err(_)) = first {
            return Err(if conn.served > 0 && outbox.at == 0 {
                Failed::Unsent(outgoing.restore())
            } else {
                Failed::Reset
            });
        }
        let mut sending = Sending {
            outbox,
            stream: outgoing.into_stream(framing),
            framing,
            done: false,
        };
        let head = poll_fn(|cx| {
            if !sending.done {
                match sending.poll(&mut conn, cx) {
                    Poll::Ready(Ok(())) => sending.done = true,
                    Poll::Ready(Err(())) => return Poll::Ready(Err(Failed::Reset)),
                    Poll::Pending => {}
                }
            }
            // Read while writing: an upstream may answer before it has the whole body.
            poll_head(&mut conn, head_request, cx)
        })
        .await?;
        Ok(self.respond(key, conn, head, sending.done, upgrade))
    }

    /// The response, with its body reading from `conn`, or `conn` back in the pool at once when
    /// the body came whole with the head.
    fn respond(
        &self,
        key: PoolKey,
        mut conn: Box<Connection>,
        head: ResponseHead,
        sent: bool,
        upgrade: bool,
    ) -> Response<Body> {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = head.status;
        *response.version_mut() = head.version;
        *response.headers_mut() = head.headers;
        if head.status == StatusCode::SWITCHING_PROTOCOLS {
            if upgrade {
                response.extensions_mut().insert(UpgradeSlot::new(*conn));
            }
            return response;
        }
        let reusable = sent && head.keep_alive;
        match head.framing {
            Framing::Empty => {
                if reusable && conn.read.is_empty() {
                    checkin(&self.idle, key, conn);
                }
            }
            Framing::Length(n) if conn.read.len() as u64 >= n => {
                let bytes = conn.read.split_to(n as usize).freeze();
                if reusable && conn.read.is_empty() {
                    checkin(&self.idle, key, conn);
                }
                *response.body_mut() = Body::buffered(bytes);
            }
            framing => {
                let home = reusable.then(|| Home {
                    idle: Arc::clone(&self.idle),
                    key,
                });
                *response.body_mut() = Body::reading(conn, framing, home);
            }
        }
        response
    }

    /// One task per pool closes connections idle longer than their `idleTimeout`, and those
    /// the upstream has closed.
    fn start_reaper(&self) {
        self.reaper.get_or_init(|| {
            spawn_reaper(Arc::downgrade(&self.idle), |idle, now| {
                for list in idle.values_mut() {
                    list.retain_mut(|conn| {
                        now.duration_since(conn.idle_since) < conn.idle_timeout && conn.is_open()
                    });
                }
                idle.retain(|_, list| !list.is_empty());
            });
        });
    }
}

fn checkin(idle: &Idle, key: PoolKey, mut conn: Box<Connection>) {
    conn.served += 1;
    if conn.max_requests > 0 && conn.served >= conn.max_requests {
        return;
    }
    if let Ok(mut idle) = idle.lock() {
        let list = idle.entry(key).or_default();
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            conn.idle_since = Instant::now();
            list.push(conn);
        }
    }
}

/// Reads until a final response head is complete; 1xx heads other than 101 are skipped (as
/// hyper's client does).
fn poll_head(
    conn: &mut Connection,
    head_request: bool,
    cx: &mut Context<'_>,
) -> Poll<Result<ResponseHead, Failed>> {
    loop {
        if !conn.read.is_empty() {
            match codec::parse_response(&mut conn.read, head_request, &mut conn.scratch) {
                Ok(Some(head))
                    if head.status.is_informational()
                        && head.status != StatusCode::SWITCHING_PROTOCOLS =>
                {
                    continue
                }
                Ok(Some(head)) => return Poll::Ready(Ok(head)),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "upstream HTTP/1.1 response refused");
                    return Poll::Ready(Err(Failed::Reset));
                }
            }
        }
        match std::task::ready!(conn.poll_fill(cx)) {
            Ok(0) | Err(_) => return Poll::Ready(Err(Failed::Reset)),
            Ok(_) => {}
        }
    }
}

/// The request body as it goes out.
enum Outgoing {
    Empty,
    Buffered(Bytes),
    Stream(Incoming),
}

impl Outgoing {
    fn new(body: RequestBody) -> Self {
        match body {
            Either::Left(stream) if stream.is_end_stream() => Outgoing::Empty,
            Either::Left(stream) => Outgoing::Stream(stream),
            Either::Right(full) => match full_bytes(full) {
                Some(bytes) if !bytes.is_empty() => Outgoing::Buffered(bytes),
                _ => Outgoing::Empty,
            },
        }
    }

    fn size(&self) -> BodySize {
        match self {
            Outgoing::Empty => BodySize::Empty,
            Outgoing::Buffered(bytes) => BodySize::Exact(bytes.len() as u64),
            Outgoing::Stream(stream) => stream
                .size_hint()
                .exact()
                .map_or(BodySize::Unknown, BodySize::Exact),
        }
    }

    /// A buffered body, to go out with the head (unless the framing sends no body).
    fn take_buffered(&mut self, framing: Framing) -> Bytes {
        match self {
            Outgoing::Buffered(bytes) if framing != Framing::Empty => bytes.clone(),
            _ => Bytes::new(),
        }
    }

    /// The body again, for a request that was not sent.
    fn restore(self) -> RequestBody {
        match self {
            Outgoing::Empty => Either::Right(Full::new(Bytes::new())),
            Outgoing::Buffered(bytes) => Either::Right(Full::new(bytes)),
            Outgoing::Stream(stream) => Either::Left(stream),
        }
    }

    fn into_stream(self, framing: Framing) -> Option<Incoming> {
        match self {
            Outgoing::Stream(stream) if framing != Framing::Empty => Some(stream),
            _ => None,
        }
    }
}

/// The bytes of a `Full` body: it yields them at once, without waiting.
fn full_bytes(mut full: Full<Bytes>) -> Option<Bytes> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(&mut full).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().ok(),
        _ => None,
    }
}

/// The write side of an exchange: the head (and buffered body), then a streamed body.
struct Sending {
    outbox: Outbox,
    stream: Option<Incoming>,
    framing: Framing,
    done: bool,
}

impl Sending {
    /// Writes until the request is out (flushed), or the socket or the client's body is not
    /// ready. `Err` when either side fails: the exchange is over.
    fn poll(&mut self, conn: &mut Connection, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        loop {
            if std::task::ready!(self.outbox.poll_drain(conn, cx)).is_err() {
                return Poll::Ready(Err(()));
            }
            let Some(stream) = &mut self.stream else {
                return conn.poll_flush(cx).map_err(|_| ());
            };
            conn.head.clear();
            self.outbox.at = 0;
            match std::task::ready!(Pin::new(stream).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        // Trailers are dropped on HTTP/1.1, as Envoy's codec does by default.
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    if self.framing == Framing::Chunked {
                        let _ = write!(conn.head, "{:x}\r\n", data.len());
                        self.outbox.tail = b"\r\n";
                    }
                    self.outbox.data = data;
                }
                Some(Err(_)) => return Poll::Ready(Err(())),
                None => {
                    self.stream = None;
                    if self.framing == Framing::Chunked {
                        self.outbox.tail = b"0\r\n\r\n";
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
