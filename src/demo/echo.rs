//! Small, real backends for `tollgate demo` and the end-to-end tests.
//!
//! The HTTP echo answers every request with a JSON description of what it
//! received, so tests can see exactly what the gateway forwarded (path,
//! host, headers, body size) and which backend answered:
//! `{service, version, method, path, host, headers, body_bytes, request_count}`,
//! with `x-echo-service`, `x-echo-version` and `x-echo-request-count` headers.
//! `request_count` / `x-echo-request-count` is how many requests this server
//! instance has received so far (all connections and paths, this one included),
//! so a test can count the attempts (retries) that reached it.
//!
//! A few httpbin-like paths inject faults (anything else answers 200; a
//! malformed argument answers 400):
//! - `/status/<code>`: answers `<code>` (200..=599).
//! - `/delay/<ms>`: answers 200 after `<ms>` (at most 60 s).
//! - `/flaky/<percent>[?status=<code>]`: fails that percentage (0..=100) of
//!   requests at random with `<code>` (default 503), else answers 200.
//! - `/alternate[?status=<code>]`: the 1st, 3rd, 5th... `/alternate` request to
//!   this server instance fails with `<code>` (default 500), the others answer 200.
//! - `/reset`: no response at all. HTTP/1 closes the connection without
//!   writing a byte; HTTP/2 resets the stream (RST_STREAM INTERNAL_ERROR).
//! - `/slow-body/<ms>`: 200 headers at once, the body after `<ms>` (at most 60 s).
//!
//! WebSocket upgrades turn into a raw byte echo.
//! The TCP echo reflects bytes and honours half-close.
//!
//! Every connection task lives in a `JoinSet` owned by the accept loop, so
//! aborting the server task also drops its keep-alive and upgraded
//! connections: a test that "kills" a backend really makes it go away.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

/// Who an echo backend claims to be: shows up in every response.
#[derive(Debug, Clone)]
pub struct EchoIdentity {
    pub service: String,
    pub version: String,
}

/// Per-server state, shared by all its connections (one per
/// `serve_http_echo` / `serve_https_echo` call).
struct EchoState {
    id: EchoIdentity,
    /// Requests received so far, all connections and paths.
    requests: AtomicU64,
    /// `/alternate` requests received so far.
    alternate: AtomicU64,
}

impl EchoState {
    fn new(id: EchoIdentity) -> Arc<EchoState> {
        Arc::new(EchoState {
            id,
            requests: AtomicU64::new(0),
            alternate: AtomicU64::new(0),
        })
    }
}

/// Pause after a failed accept (e.g. EMFILE) so we don't spin on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Upper bound for `/delay/<ms>`, so a typo can't park a request forever.
const MAX_DELAY_MS: u64 = 60_000;
/// RFC 6455 section 1.3 magic GUID for `Sec-WebSocket-Accept`.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const X_ECHO_SERVICE: HeaderName = HeaderName::from_static("x-echo-service");
const X_ECHO_VERSION: HeaderName = HeaderName::from_static("x-echo-version");
const X_ECHO_REQUEST_COUNT: HeaderName = HeaderName::from_static("x-echo-request-count");

/// Serves HTTP/1.1 and h2c (prior knowledge) on `listener` until the task is
/// dropped/aborted. See the module docs for the response format.
pub async fn serve_http_echo(listener: TcpListener, id: EchoIdentity) {
    let state = EchoState::new(id);
    accept_loop(listener, move |stream| {
        serve_http_conn(stream, state.clone())
    })
    .await;
}

/// Echo raw bytes back on every accepted connection until the task is
/// dropped. Honours half-close: after the client's EOF we finish echoing,
/// then shut down our write side.
pub async fn serve_tcp_echo(listener: TcpListener) {
    accept_loop(listener, |stream| async move {
        if let Err(e) = echo_stream(stream).await {
            tracing::debug!(error = %e, "tcp echo connection failed");
        }
    })
    .await;
}

/// Bind 127.0.0.1:0 and spawn `serve_http_echo` on the current runtime.
pub async fn spawn_http_echo(id: EchoIdentity) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    Ok((addr, tokio::spawn(serve_http_echo(listener, id))))
}

/// Bind 127.0.0.1:0 and spawn `serve_tcp_echo` on the current runtime.
pub async fn spawn_tcp_echo() -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    Ok((addr, tokio::spawn(serve_tcp_echo(listener))))
}

/// Accepts forever, running each connection in a task owned by this future
/// (dropping the future aborts them all).
async fn accept_loop<F, Fut>(listener: TcpListener, mut on_conn: F)
where
    F: FnMut(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                // Small request/response exchanges shouldn't wait on Nagle.
                let _ = stream.set_nodelay(true);
                conns.spawn(on_conn(stream));
            }
            Err(e) => {
                tracing::warn!(error = %e, "echo accept failed; backing off");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
        // Reap finished connections so the set doesn't grow without bound.
        while conns.try_join_next().is_some() {}
    }
}

/// Serves the HTTP echo over TLS with `config` (HTTP/1.1, or h2 by ALPN): a backend that
/// terminates TLS itself, as behind a PASSTHROUGH server.
pub async fn serve_https_echo(
    listener: TcpListener,
    id: EchoIdentity,
    config: Arc<rustls::ServerConfig>,
) {
    let state = EchoState::new(id);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    accept_loop(listener, move |stream| {
        let (state, acceptor) = (state.clone(), acceptor.clone());
        async move {
            match acceptor.accept(stream).await {
                Ok(tls) => serve_http_conn(tls, state).await,
                Err(e) => tracing::debug!(error = %e, "https echo handshake failed"),
            }
        }
    })
    .await;
}

/// One HTTP connection (h1 or h2c). A WebSocket upgrade is finished here,
/// after hyper hands the socket back, so it stays owned by the accept loop.
async fn serve_http_conn<S>(stream: S, state: Arc<EchoState>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (upgrade_tx, mut upgrade_rx) = mpsc::unbounded_channel();
    let service = service_fn(move |req| handle(req, state.clone(), upgrade_tx.clone()));
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "http echo connection failed");
    }
    if let Ok(pending) = upgrade_rx.try_recv() {
        echo_upgraded(pending).await;
    }
}

async fn echo_upgraded(pending: OnUpgrade) {
    match pending.await {
        Ok(upgraded) => {
            if let Err(e) = echo_stream(TokioIo::new(upgraded)).await {
                tracing::debug!(error = %e, "websocket echo failed");
            }
        }
        Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
    }
}

/// Copies everything read back to the writer; after EOF, closes our side.
async fn echo_stream<S>(stream: S) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    tokio::io::copy(&mut reader, &mut writer).await?;
    writer.shutdown().await
}

type EchoResponse = Response<EchoBody>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body sent whole, optionally held back until a timer fires
/// (`/slow-body`); the headers go out without waiting for it.
struct EchoBody {
    data: Option<Bytes>,
    delay: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl EchoBody {
    fn new(data: Bytes, delay: Option<Duration>) -> EchoBody {
        EchoBody {
            data: Some(data).filter(|d| !d.is_empty()),
            delay: delay.map(|d| Box::pin(tokio::time::sleep(d))),
        }
    }
}

impl Body for EchoBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(delay) = this.delay.as_mut() {
            ready!(delay.as_mut().poll(cx));
            this.delay = None;
        }
        Poll::Ready(this.data.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

async fn handle(
    mut req: Request<Incoming>,
    state: Arc<EchoState>,
    upgrades: mpsc::UnboundedSender<OnUpgrade>,
) -> Result<EchoResponse, BoxError> {
    let count = state.requests.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(accept) = websocket_accept(&req) {
        // The receiver lives as long as the connection, so this can't be lost.
        let _ = upgrades.send(hyper::upgrade::on(&mut req));
        return Ok(switching_protocols(&state.id, accept, count));
    }
    let mut body_delay = None;
    let status = match fault_for(req.uri(), &state) {
        Fault::None => StatusCode::OK,
        Fault::Status(status) => status,
        Fault::Delay(delay) => {
            tokio::time::sleep(delay).await;
            StatusCode::OK
        }
        Fault::SlowBody(delay) => {
            body_delay = Some(delay);
            StatusCode::OK
        }
        // An error from the service makes hyper drop an HTTP/1 connection
        // without writing anything, and reset an HTTP/2 stream.
        Fault::Reset => return Err("/reset: no response, by request".into()),
    };
    let description = describe(&req, &state.id);
    let body_bytes = drain_body(req.into_body()).await?;
    Ok(json_response(
        status,
        &state.id,
        description,
        body_bytes,
        count,
        body_delay,
    ))
}

/// What a special path asks for.
enum Fault {
    None,
    Status(StatusCode),
    Delay(Duration),
    SlowBody(Duration),
    Reset,
}

const BAD_REQUEST: Fault = Fault::Status(StatusCode::BAD_REQUEST);

fn fault_for(uri: &Uri, state: &EchoState) -> Fault {
    let (path, query) = (uri.path(), uri.query());
    if let Some(code) = path.strip_prefix("/status/") {
        return parse_status(code).map_or(BAD_REQUEST, Fault::Status);
    }
    if let Some(ms) = path.strip_prefix("/delay/") {
        return parse_delay(ms).map_or(BAD_REQUEST, Fault::Delay);
    }
    if let Some(percent) = path.strip_prefix("/flaky/") {
        let percent = percent.parse::<u8>().ok().filter(|p| *p <= 100);
        let fail = failure_status(query, StatusCode::SERVICE_UNAVAILABLE);
        let (Some(percent), Some(fail)) = (percent, fail) else {
            return BAD_REQUEST;
        };
        return if fastrand::u8(..100) < percent {
            Fault::Status(fail)
        } else {
            Fault::None
        };
    }
    if path == "/alternate" {
        let Some(fail) = failure_status(query, StatusCode::INTERNAL_SERVER_ERROR) else {
            return BAD_REQUEST;
        };
        // 0-based: the 1st, 3rd, 5th... request fails.
        return if state.alternate.fetch_add(1, Ordering::Relaxed) % 2 == 0 {
            Fault::Status(fail)
        } else {
            Fault::None
        };
    }
    if path == "/reset" {
        return Fault::Reset;
    }
    if let Some(ms) = path.strip_prefix("/slow-body/") {
        return parse_delay(ms).map_or(BAD_REQUEST, Fault::SlowBody);
    }
    Fault::None
}

/// A status code a test may ask for: 200..=599.
fn parse_status(code: &str) -> Option<StatusCode> {
    code.parse::<u16>()
        .ok()
        .filter(|c| (200..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
}

/// Milliseconds, capped at [`MAX_DELAY_MS`].
fn parse_delay(ms: &str) -> Option<Duration> {
    let ms = ms.parse::<u64>().ok()?;
    Some(Duration::from_millis(ms.min(MAX_DELAY_MS)))
}

/// The first `status=<code>` of the query, else `default`; `None` if invalid.
fn failure_status(query: Option<&str>, default: StatusCode) -> Option<StatusCode> {
    let requested = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("status="));
    match requested {
        Some(code) => parse_status(code),
        None => Some(default),
    }
}

/// Counts the body without buffering it, so large uploads cost no memory.
async fn drain_body(mut body: Incoming) -> Result<u64, hyper::Error> {
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            total = total.saturating_add(data.len() as u64);
        }
    }
    Ok(total)
}

/// Everything about the request except its body length.
fn describe(
    req: &Request<Incoming>,
    id: &EchoIdentity,
) -> serde_json::Map<String, serde_json::Value> {
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let mut map = serde_json::Map::new();
    map.insert("service".into(), id.service.clone().into());
    map.insert("version".into(), id.version.clone().into());
    map.insert("method".into(), req.method().as_str().into());
    map.insert("path".into(), path.into());
    map.insert("host".into(), host.into());
    map.insert("headers".into(), headers_json(req.headers()));
    map
}

/// Header names are already lower-case in `http`; repeats join with ", ".
fn headers_json(headers: &HeaderMap) -> serde_json::Value {
    let mut out = BTreeMap::new();
    for name in headers.keys() {
        let values: Vec<_> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        out.insert(name.as_str().to_owned(), values.join(", "));
    }
    serde_json::json!(out)
}

fn json_response(
    status: StatusCode,
    id: &EchoIdentity,
    mut description: serde_json::Map<String, serde_json::Value>,
    body_bytes: u64,
    count: u64,
    body_delay: Option<Duration>,
) -> EchoResponse {
    description.insert("body_bytes".into(), body_bytes.into());
    description.insert("request_count".into(), count.into());
    let body = serde_json::Value::Object(description).to_string();
    let mut resp = Response::new(EchoBody::new(Bytes::from(body), body_delay));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    add_identity_headers(headers, id, count);
    resp
}

/// Identity values come from config; skip any that aren't valid header text
/// rather than failing the request.
fn add_identity_headers(headers: &mut HeaderMap, id: &EchoIdentity, count: u64) {
    if let Ok(v) = HeaderValue::from_str(&id.service) {
        headers.insert(X_ECHO_SERVICE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&id.version) {
        headers.insert(X_ECHO_VERSION, v);
    }
    headers.insert(X_ECHO_REQUEST_COUNT, HeaderValue::from(count));
}

/// `Sec-WebSocket-Accept` for an HTTP/1.1 WebSocket upgrade request, if it is one.
fn websocket_accept(req: &Request<Incoming>) -> Option<String> {
    // hyper only supports `Upgrade` on HTTP/1.1; RFC 6455 requires GET.
    if req.version() != Version::HTTP_11 || req.method() != Method::GET {
        return None;
    }
    let wants_ws = req
        .headers()
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("websocket"));
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY)?;
    wants_ws.then(|| accept_key(key.as_bytes()))
}

fn accept_key(key: &[u8]) -> String {
    let mut input = key.to_vec();
    input.extend_from_slice(WEBSOCKET_GUID.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

fn switching_protocols(id: &EchoIdentity, accept: String, count: u64) -> EchoResponse {
    let mut resp = Response::new(EchoBody::new(Bytes::new(), None));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    // base64 output is always a valid header value.
    if let Ok(v) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    add_identity_headers(headers, id, count);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use std::time::Instant;
    use tokio::io::AsyncReadExt;

    /// Bound for every network wait in these tests.
    const WAIT: Duration = Duration::from_secs(10);

    fn ident() -> EchoIdentity {
        EchoIdentity {
            service: "reviews".into(),
            version: "v2".into(),
        }
    }

    type TestClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

    fn h1_client() -> TestClient {
        Client::builder(TokioExecutor::new()).build_http()
    }

    fn h2c_client() -> TestClient {
        Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http()
    }

    async fn send(
        client: &TestClient,
        req: Request<Full<Bytes>>,
    ) -> (Response<()>, serde_json::Value) {
        let resp = tokio::time::timeout(WAIT, client.request(req))
            .await
            .expect("response in time")
            .expect("request");
        let (parts, body) = resp.into_parts();
        let bytes = tokio::time::timeout(WAIT, body.collect())
            .await
            .expect("body in time")
            .expect("body")
            .to_bytes();
        let json = serde_json::from_slice(&bytes).expect("json body");
        (Response::from_parts(parts, ()), json)
    }

    async fn get(addr: SocketAddr, path: &str) -> (Response<()>, serde_json::Value) {
        get_with(&h1_client(), addr, path).await
    }

    async fn get_with(
        client: &TestClient,
        addr: SocketAddr,
        path: &str,
    ) -> (Response<()>, serde_json::Value) {
        let req = Request::get(format!("http://{addr}{path}"))
            .body(Full::default())
            .expect("request");
        send(client, req).await
    }

    fn request_count(resp: &Response<()>) -> u64 {
        resp.headers()["x-echo-request-count"]
            .to_str()
            .expect("ascii count")
            .parse()
            .expect("numeric count")
    }

    /// Writes `request` on a fresh raw connection and reads (bounded) until EOF
    /// or reset; returns what arrived.
    async fn raw_exchange(stream: &mut TcpStream, request: &str) -> Vec<u8> {
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut got = Vec::new();
        let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut got));
        // A reset (unread data on close) is as good as EOF: nothing more comes.
        let _ = read.await.expect("connection closed in time");
        got
    }

    /// Reads until the end of the response head; returns it as text.
    async fn read_head(stream: &mut TcpStream) -> String {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let byte = tokio::time::timeout(WAIT, stream.read_u8())
                .await
                .expect("head in time")
                .expect("read head");
            head.push(byte);
        }
        String::from_utf8(head).expect("utf8 head")
    }

    #[test]
    fn accept_key_rfc6455_example() {
        // Key and accept value from RFC 6455 section 1.3 (checked with openssl).
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[tokio::test]
    async fn echoes_request_description() {
        let (addr, server) = spawn_http_echo(ident()).await.expect("spawn");
        let req = Request::get(format!("http://{addr}/api/items?id=7&x=y"))
            .header("x-custom", "hello")
            .header("x-multi", "a")
            .header("x-multi", "b")
            .body(Full::default())
            .expect("request");
        let (resp, json) = send(&h1_client(), req).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(resp.headers()["x-echo-service"], "reviews");
        assert_eq!(resp.headers()["x-echo-version"], "v2");
        assert_eq!(json["service"], "reviews");
        assert_eq!(json["version"], "v2");
        assert_eq!(json["method"], "GET");
        assert_eq!(json["path"], "/api/items?id=7&x=y");
        assert_eq!(json["host"], addr.to_string());
        assert_eq!(json["headers"]["x-custom"], "hello");
        assert_eq!(json["headers"]["x-multi"], "a, b");
        assert_eq!(json["body_bytes"], 0);
        assert_eq!(json["request_count"], 1);
        assert_eq!(resp.headers()["x-echo-request-count"], "1");
        server.abort();
    }

    #[tokio::test]
    async fn request_count_spans_connections_and_paths() {
        let (addr, server) = spawn_http_echo(ident()).await.expect("spawn");
        let (h1, h2c) = (h1_client(), h2c_client());
        let paths = ["/", "/status/503", "/delay/1", "/flaky/100", "/alternate"];
        let mut expected = 0;
        for (i, path) in paths.iter().cycle().take(10).enumerate() {
            expected += 1;
            // Alternate h1/h2c, and sometimes a brand-new connection.
            let fresh = h1_client();
            let client = [&h1, &h2c, &fresh][i % 3];
            let (resp, json) = get_with(client, addr, path).await;
            assert_eq!(request_count(&resp), expected, "{path}");
            assert_eq!(json["request_count"], expected, "{path}");
        }
        // A /reset request is received too, so it counts.
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET /reset HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        assert!(raw_exchange(&mut stream, &req).await.is_empty());
        let (resp, _) = get(addr, "/").await;
        assert_eq!(request_count(&resp), expected + 2);

        // Each server instance counts on its own.
        let (other, other_server) = spawn_http_echo(ident()).await.expect("spawn");
        let (resp, json) = get(other, "/status/404").await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(request_count(&resp), 1);
        assert_eq!(json["request_count"], 1);
        server.abort();
        other_server.abort();
    }

    #[tokio::test]
    async fn flaky_fails_at_random() {
        let (addr, server) = spawn_http_echo(ident()).await.expect("spawn");
        let client = h1_client();
        for _ in 0..30 {
            let (resp, json) = get_with(&client, addr, "/flaky/100").await;
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(resp.headers()["x-echo-service"], "reviews");
            assert_eq!(json["path"], "/flaky/100");
            let (resp, _) = get_with(&client, addr, "/flaky/0").await;
            assert_eq!(resp.status(), StatusCode::OK);
            let (resp, json) = get_with(&client, addr, "/flaky/100?status=502").await;
            assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
            assert_eq!(json["path"], "/flaky/100?status=502");
            let (resp, _) = get_with(&client, addr, "/flaky/0?status=502").await;
            assert_eq!(resp.status(), StatusCode::OK);
        }
        // 50%: both outcomes show up (each missing has probability 2^-200).
        let mut statuses = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let (resp, _) = get_with(&client, addr, "/flaky/50?x=1&status=504").await;
            statuses.insert(resp.status().as_u16());
        }
        assert_eq!(statuses, [200, 504].into());
        for bad in [
            "/flaky/101",
            "/flaky/-1",
            "/flaky/x",
            "/flaky/",
            "/flaky/50?status=99",
            "/flaky/50?status=abc",
        ] {
            let (resp, _) = get_with(&client, addr, bad).await;
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
        server.abort();
    }

    #[tokio::test]
    async fn alternate_fails_every_other_request() {
        let (addr, server) = spawn_http_echo(ident()).await.expect("spawn");
        let (h1, h2c) = (h1_client(), h2c_client());
        // Other paths don't advance the /alternate sequence.
        let (resp, _) = get_with(&h1, addr, "/").await;
        assert_eq!(resp.status(), StatusCode::OK);
        let mut statuses = Vec::new();
        for i in 0..6 {
            // The sequence is shared across connections and protocols.
            let fresh = h1_client();
            let client = [&h1, &h2c, &fresh][i % 3];
            let (resp, json) = get_with(client, addr, "/alternate").await;
            assert_eq!(json["path"], "/alternate");
            assert_eq!(resp.headers()["x-echo-version"], "v2");
            statuses.push(resp.status().as_u16());
        }
        assert_eq!(statuses, [500, 200, 500, 200, 500, 200]);
        let (resp, _) = get_with(&h1, addr, "/alternate?status=503").await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let (resp, _) = get_with(&h1, addr, "/alternate?status=503").await;
        assert_eq!(resp.status(), StatusCode::OK);
        let (resp, _) = get_with(&h1, addr, "/alternate?status=0").await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        // A rejected request doesn't advance the sequence either.
        let (resp, _) = get_with(&h1, addr, "/alternate").await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);

        // A new server instance starts its own sequence.
        let (other, other_server) = spawn_http_echo(ident()).await.expect("spawn");
        let (resp, _) = get(other, "/alternate").await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        server.abort();
        other_server.abort();
    }

    #[tokio::test]
    async fn reset_closes_without_response() {
        let (addr, server) = spawn_http_echo(ident()).await.expect("spawn");
        // Fresh connection: not a single byte comes back.
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET /reset HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        let got = raw_exchange(&mut stream, &req).await;
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));

        // Keep-alive connection: the first response arrives whole, then the
        // connection closes instead of answering /reset.
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let first = format!("GET /first HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
        stream.write_all(first.as_bytes()).await.expect("write");
        let head = read_head(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let got = raw_exchange(&mut stream, &req).await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.contains("\"path\":\"/first\""), "{text}");
        assert!(!text.contains("HTTP/1.1"), "{text}");

        // A pooled client sees an error, not a response; so does HTTP/2
        // (the stream is reset, the connection survives).
        for client in [h1_client(), h2c_client()] {
            let req = Request::get(format!("http://{addr}/reset"))
                .body(Full::default())
                .expect("request");
            let res = tokio::time::timeout(WAIT, client.request(req)).await;
            assert!(res.expect("answered in time").is_err());
            let (resp, _) = get_with(&client, addr, "/after").await;
            assert_eq!(resp.status(), StatusCode::OK);
        }
        server.abort();
    }

    #[tokio::test]
    async fn slow_body_delays_body_not_headers() {
        let (addr, server) = spawn_http_echo(ident()).await.expect("spawn");
        for client in [h1_client(), h2c_client()] {
            // Headers arrive although the body is 60 s (the cap) away.
            let req = Request::get(format!("http://{addr}/slow-body/600000"))
                .body(Full::default())
                .expect("request");
            let resp = tokio::time::timeout(WAIT, client.request(req))
                .await
                .expect("headers long before the body")
                .expect("request");
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.headers()["x-echo-service"], "reviews");
            assert!(resp.headers().contains_key("x-echo-request-count"));
            let mut body = resp.into_body();
            let early = tokio::time::timeout(Duration::from_millis(300), body.frame()).await;
            assert!(early.is_err(), "body arrived early");

            // A short delay: the whole JSON body arrives after it.
            let start = Instant::now();
            let (resp, json) = get_with(&client, addr, "/slow-body/100").await;
            assert!(start.elapsed() >= Duration::from_millis(100));
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(json["path"], "/slow-body/100");
        }
        for bad in ["/slow-body/x", "/slow-body/", "/slow-body/-5"] {
            let (resp, _) = get(addr, bad).await;
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
        server.abort();
    }

    #[tokio::test]
    async fn slow_body_raw_headers_first() {
        let (addr, server) = spawn_http_echo(ident()).await.expect("spawn");
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET /slow-body/400 HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        let start = Instant::now();
        stream.write_all(req.as_bytes()).await.expect("write");
        let head = read_head(&mut stream).await.to_ascii_lowercase();
        let head_at = start.elapsed();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .expect("content-length")
            .trim()
            .parse()
            .expect("length");
        let mut body = vec![0u8; len];
        tokio::time::timeout(WAIT, stream.read_exact(&mut body))
            .await
            .expect("body in time")
            .expect("body");
        let body_at = start.elapsed();
        assert!(body_at >= Duration::from_millis(400), "{body_at:?}");
        assert!(head_at < body_at, "{head_at:?} vs {body_at:?}");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(json["path"], "/slow-body/400");
        server.abort();
    }

    #[tokio::test]
    async fn status_paths() {
        let (addr, server) = spawn_http_echo(ident()).await.expect("spawn");
        let (resp, json) = get(addr, "/status/503").await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json["path"], "/status/503");
        assert_eq!(resp.headers()["x-echo-service"], "reviews");
        for bad in [
            "/status/101",
            "/status/600",
            "/status/abc",
            "/status/",
            "/delay/x",
        ] {
            let (resp, _) = get(addr, bad).await;
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
        server.abort();
    }

    #[tokio::test]
    async fn delay_path_waits() {
        let (addr, server) = spawn_http_echo(ident()).await.expect("spawn");
        let start = Instant::now();
        let (resp, json) = get(addr, "/delay/50").await;
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(json["path"], "/delay/50");
        server.abort();
    }

    #[tokio::test]
    async fn h2c_prior_knowledge() {
        let (addr, server) = spawn_http_echo(ident()).await.expect("spawn");
        let req = Request::get(format!("http://{addr}/h2?q=1"))
            .header("x-custom", "over-h2")
            .body(Full::default())
            .expect("request");
        let (resp, json) = send(&h2c_client(), req).await;
        assert_eq!(resp.version(), Version::HTTP_2);
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["x-echo-version"], "v2");
        assert_eq!(json["path"], "/h2?q=1");
        assert_eq!(json["host"], addr.to_string());
        assert_eq!(json["headers"]["x-custom"], "over-h2");
        server.abort();
    }

    #[tokio::test]
    async fn post_body_length() {
        let (addr, server) = spawn_http_echo(ident()).await.expect("spawn");
        for client in [h1_client(), h2c_client()] {
            let req = Request::post(format!("http://{addr}/upload"))
                .body(Full::new(Bytes::from(vec![b'x'; 100_000])))
                .expect("request");
            let (resp, json) = send(&client, req).await;
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(json["method"], "POST");
            assert_eq!(json["body_bytes"], 100_000);
        }
        server.abort();
    }

    #[tokio::test]
    async fn websocket_upgrade_then_raw_echo() {
        let (addr, server) = spawn_http_echo(ident()).await.expect("spawn");
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let handshake = format!(
            "GET /chat HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(handshake.as_bytes()).await.expect("write");
        let head = read_head(&mut stream).await.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(
            head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
            "{head}"
        );
        assert!(head.contains("x-echo-service: reviews\r\n"), "{head}");

        assert!(head.contains("x-echo-request-count: 1\r\n"), "{head}");

        stream.write_all(b"\x81\x05hello").await.expect("write");
        let mut buf = [0u8; 7];
        tokio::time::timeout(WAIT, stream.read_exact(&mut buf))
            .await
            .expect("echo in time")
            .expect("echo");
        assert_eq!(&buf, b"\x81\x05hello");
        stream.shutdown().await.expect("shutdown");
        let eof = tokio::time::timeout(WAIT, stream.read(&mut buf)).await;
        assert_eq!(eof.expect("eof in time").expect("eof"), 0);
        server.abort();
    }

    #[tokio::test]
    async fn abort_closes_keep_alive_connections() {
        let (addr, server) = spawn_http_echo(ident()).await.expect("spawn");
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
        stream.write_all(req.as_bytes()).await.expect("write");
        assert!(read_head(&mut stream).await.starts_with("HTTP/1.1 200"));
        server.abort();
        // Drain the rest of the body, then the socket must reach EOF.
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest));
        assert!(read.await.expect("closed after abort").is_ok());
    }

    #[tokio::test]
    async fn invalid_identity_header_is_skipped() {
        let id = EchoIdentity {
            service: "bad\nname".into(),
            version: "v1".into(),
        };
        let (addr, server) = spawn_http_echo(id).await.expect("spawn");
        let (resp, json) = get(addr, "/").await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers().get("x-echo-service").is_none());
        assert_eq!(json["service"], "bad\nname");
        server.abort();
    }

    #[tokio::test]
    async fn tcp_echo_half_close() {
        let (addr, server) = spawn_tcp_echo().await.expect("spawn");
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (mut reader, mut writer) = stream.split();
        let write = async {
            writer.write_all(&payload).await.expect("write");
            writer.shutdown().await.expect("shutdown");
        };
        let mut echoed = Vec::new();
        let read = reader.read_to_end(&mut echoed);
        let ((), n) = tokio::join!(write, read);
        assert_eq!(n.expect("read"), payload.len());
        assert_eq!(echoed, payload);
        server.abort();
    }
}
