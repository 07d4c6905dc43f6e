//! One HTTP exchange's record: what Istio's metrics and the access log say about it, gathered as
//! the request goes (route, cluster, upstream, flags) and written once, when the response has
//! been sent or the client has gone.
//!
//! The record travels with the response body ([`ObservedBody`]); dropping it, wherever that
//! happens (body sent, client gone mid-body, or the request abandoned before any response),
//! finishes it. With access logging off nothing is cloned for the log: the cost is a clock read
//! and a lock-free metric update.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, HOST, USER_AGENT};
use http::{Request, Response};
use http_body::{Frame, SizeHint};

use super::headers::X_FORWARDED_FOR;
use super::local::Generated;
use super::proxy::ConnContext;
use super::{Body, RequestIn};
use crate::route::Route;
use crate::telemetry::access_log::{self, Entry, HttpEntry, RequestId, RequestStrings, Upstream};
use crate::telemetry::istio::{self, HttpKey, HttpSample, Protocol};
use crate::telemetry::Flags;
use crate::upstream::Cluster;

pub struct Exchange {
    started: Instant,
    /// The request id, copied inline so that error answers can carry it without a clone.
    request_id: RequestId,
    protocol: Protocol,
    /// The request's head, and its body as declared (content-length; chunked bodies count 0).
    request_head: u64,
    request_body: u64,
    /// The access log entry, started on arrival when logging is on (one allocation).
    log: Option<Box<HttpEntry>>,
    /// The route that matched, and the cluster the request was sent to.
    pub route: Option<Arc<Route>>,
    pub cluster: Option<Arc<Cluster>>,
    /// The endpoint of the last attempt.
    pub upstream_host: Option<SocketAddr>,
    pub upstream_service_time: Option<u64>,
    pub flags: Flags,
    details: Cow<'static, str>,
    upstream_failure: Option<Cow<'static, str>>,
    /// 0 until response headers are sent.
    code: u16,
    grpc_status: Option<u8>,
    response_bytes: u64,
    body_sent: u64,
    complete: bool,
    /// Keeps the connection's stream-idle timer, not its head timer, running until the end.
    _open: super::watchdog::OpenRequest,
}

impl Exchange {
    /// Starts the record of a request that has just arrived (after the connection manager's
    /// header edits, so the log sees the request id and x-forwarded-for the upstream gets).
    pub fn start(
        req: &Request<RequestIn>,
        request_id: RequestId,
        conn: &ConnContext,
        grpc: bool,
    ) -> Self {
        Exchange {
            started: Instant::now(),
            log: access_log::enabled().then(|| arrival_entry(req, &request_id, conn)),
            request_id,
            protocol: if grpc { Protocol::Grpc } else { Protocol::Http },
            request_head: request_head_bytes(req),
            request_body: http_body_size(req),
            route: None,
            cluster: None,
            upstream_host: None,
            upstream_service_time: None,
            flags: Flags::NONE,
            details: Cow::Borrowed("via_upstream"),
            upstream_failure: None,
            code: 0,
            grpc_status: None,
            response_bytes: 0,
            body_sent: 0,
            complete: false,
            _open: conn.activity.request_started(),
        }
    }

    /// The route that matched; kept only for the access log's `%ROUTE_NAME%`.
    pub fn matched(&mut self, route: &Arc<Route>) {
        if self.log.is_some() {
            self.route = Some(route.clone());
        }
    }

    /// The request's id as a header value, for the gateway's own answers.
    pub fn request_id(&self) -> Option<HeaderValue> {
        self.request_id.header()
    }

    /// Takes the final response's facts and wraps its body so the record ends with it.
    pub fn respond(mut self, response: Response<Body>) -> Response<ObservedBody> {
        self.code = response.status().as_u16();
        if let Some(generated) = response.extensions().get::<Generated>() {
            self.flags.insert(generated.flags);
            self.details = generated.details.clone();
            self.upstream_failure = generated.failure.clone();
        }
        if self.protocol == Protocol::Grpc {
            self.grpc_status = grpc_status(response.headers());
        }
        self.response_bytes = response_head_bytes(response.headers());
        response.map(|inner| ObservedBody {
            inner,
            exchange: self,
        })
    }

    fn finish(&mut self) {
        if self.code == 0 || !self.complete {
            self.flags.insert(Flags::DOWNSTREAM_TERMINATION);
        }
        if self.code == 0 {
            self.details = Cow::Borrowed("downstream_remote_disconnect");
        }
        let duration = self.started.elapsed();
        let key = HttpKey {
            protocol: self.protocol,
            code: self.code,
            grpc_status: self.grpc_status,
            flags: self.flags,
        };
        let sample = HttpSample {
            duration_ms: duration.as_secs_f64() * 1000.0,
            request_bytes: self.request_head + self.request_body,
            response_bytes: self.response_bytes + self.body_sent,
        };
        match &self.cluster {
            Some(cluster) => cluster.istio_stats().record_http(key, sample),
            None => istio::unknown_destination().record_http(key, sample),
        }
        crate::metrics::record_http_response(self.code);
        if let Some(mut entry) = self.log.take() {
            self.complete_entry(&mut entry, duration.as_millis() as u64);
            access_log::submit(Entry::Http(entry));
        }
    }

    /// What the exchange learnt after arrival.
    fn complete_entry(&mut self, entry: &mut HttpEntry, duration_ms: u64) {
        entry.code = self.code;
        entry.flags = self.flags;
        entry.details = std::mem::take(&mut self.details);
        entry.upstream_failure = self.upstream_failure.take();
        entry.bytes_received = self.request_body;
        entry.bytes_sent = self.body_sent;
        entry.duration_ms = duration_ms;
        entry.upstream_service_time = self.upstream_service_time;
        entry.upstream = Upstream {
            host: self.upstream_host,
            cluster: self.cluster.take(),
            local: None,
        };
        entry.route = self.route.take();
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The access log entry as far as the request's arrival tells it.
fn arrival_entry<B>(req: &Request<B>, id: &RequestId, conn: &ConnContext) -> Box<HttpEntry> {
    let headers = req.headers();
    let header = |name| headers.get(name).map_or(&b""[..], HeaderValue::as_bytes);
    let authority = match req.uri().authority() {
        Some(a) => a.as_str().as_bytes(),
        None => header(HOST),
    };
    let path = req.uri().path_and_query().map_or("", |p| p.as_str());
    Box::new(HttpEntry {
        start: SystemTime::now(),
        method: req.method().clone(),
        request: RequestStrings::new(
            path.as_bytes(),
            header(X_FORWARDED_FOR),
            header(USER_AGENT),
            authority,
        ),
        protocol: req.version(),
        code: 0,
        flags: Flags::NONE,
        details: Cow::Borrowed("-"),
        upstream_failure: None,
        bytes_received: 0,
        bytes_sent: 0,
        duration_ms: 0,
        upstream_service_time: None,
        request_id: id.clone(),
        upstream: Upstream::default(),
        downstream: conn.downstream.clone(),
        route: None,
    })
}

/// The request body's declared size (content-length); a chunked body counts 0.
fn http_body_size(req: &Request<RequestIn>) -> u64 {
    if req.body().is_none() {
        // The fast path's requests, which carry no Content-Length.
        return 0;
    }
    req.headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Bytes of the request line and headers as HTTP/1.1 writes them.
fn request_head_bytes<B>(req: &Request<B>) -> u64 {
    // `METHOD SP path SP HTTP/1.1 CRLF`
    let line = req.method().as_str().len()
        + req.uri().path_and_query().map_or(1, |p| p.as_str().len())
        + " HTTP/1.1\r\n".len()
        + 1;
    (line + header_bytes(req.headers())) as u64
}

fn response_head_bytes(headers: &HeaderMap) -> u64 {
    ("HTTP/1.1 200 OK\r\n".len() + header_bytes(headers)) as u64
}

fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + 2
}

fn grpc_status(headers: &HeaderMap) -> Option<u8> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The downstream response body, counting what is sent; the exchange ends when it is dropped.
pub struct ObservedBody {
    inner: Body,
    exchange: Exchange,
}

impl http_body::Body for ObservedBody {
    type Data = Bytes;
    type Error = <Body as http_body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.exchange.body_sent += data.len() as u64;
                }
            }
            Poll::Ready(Some(Err(_))) => {
                this.exchange
                    .flags
                    .insert(Flags::UPSTREAM_CONNECTION_TERMINATION);
            }
            Poll::Ready(None) => this.exchange.complete = true,
            Poll::Pending => {}
        }
        if http_body::Body::is_end_stream(&this.inner) {
            this.exchange.complete = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        // hyper stops polling a body that says it has ended; a body dropped unfinished is a
        // client gone mid-response.
        if http_body::Body::is_end_stream(&self.inner) {
            self.exchange.complete = true;
        }
    }
}
