//! Envoy's access log (reference §5.4): one line per HTTP request or TCP stream, in Istio's
//! default TEXT format or its JSON encoding.
//!
//! The data path only hands a finished entry to a bounded queue (`try_send`: no lock, no wait,
//! and no wake-up: the writer is never blocked in `recv`); a writer thread wakes every
//! [`FLUSH_EVERY`], or when the queue fills to [`WAKE_AT`], and formats and writes everything
//! waiting in large batches. A slow or stuck sink fills the queue, and entries that do not fit are
//! dropped and counted, so logging never slows a request.

use std::borrow::Cow;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use http::{HeaderValue, Method, Version};
use serde::Serialize;

use super::flags::Flags;

/// Entries waiting for the writer; beyond this they are dropped (and counted).
const QUEUE: usize = 16 * 1024;
/// How often the writer drains the queue (Envoy flushes its access log buffer every second).
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// The request whose entry makes this many wait wakes the writer early (once per burst).
const WAKE_AT: usize = QUEUE / 4;
/// The writer writes in chunks of about this many bytes.
const BATCH_BYTES: usize = 64 * 1024;

pub const DROPPED: &str = "tollgate_access_log_dropped_total";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Where lines go: a file (appended) or standard output (`-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

impl Target {
    pub fn parse(value: &str) -> Target {
        match value {
            "-" | "/dev/stdout" => Target::Stdout,
            path => Target::File(path.into()),
        }
    }
}

/// One HTTP exchange, as it ended.
#[derive(Debug)]
pub struct HttpEntry {
    pub start: SystemTime,
    pub method: Method,
    /// The path as routed (after normalization, before any rewrite), query included.
    pub path: Option<http::uri::PathAndQuery>,
    pub protocol: Version,
    pub code: u16,
    pub flags: Flags,
    pub details: Cow<'static, str>,
    pub upstream_failure: Option<Cow<'static, str>>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration_ms: u64,
    pub upstream_service_time: Option<u64>,
    pub forwarded_for: Option<HeaderValue>,
    pub user_agent: Option<HeaderValue>,
    pub request_id: RequestId,
    pub authority: Option<HeaderValue>,
    pub upstream: Upstream,
    pub downstream: Downstream,
    pub route: Option<Arc<crate::route::Route>>,
}

/// One TCP or TLS-passthrough stream, as it ended.
#[derive(Debug)]
pub struct TcpEntry {
    pub start: SystemTime,
    pub flags: Flags,
    pub upstream_failure: Option<Cow<'static, str>>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration_ms: u64,
    pub upstream: Upstream,
    pub downstream: Downstream,
}

/// A request id of up to 64 bytes (a UUID has 36), held inline: copying it costs no allocation,
/// where cloning a freshly made header value would.
#[derive(Clone)]
pub struct RequestId {
    len: u8,
    bytes: [u8; 64],
}

impl RequestId {
    /// The id in `value`; empty when there is none or it is longer than 64 bytes.
    pub fn of(value: Option<&HeaderValue>) -> Self {
        let mut id = RequestId {
            len: 0,
            bytes: [0; 64],
        };
        if let Some(v) = value.filter(|v| v.len() <= id.bytes.len()) {
            id.bytes[..v.len()].copy_from_slice(v.as_bytes());
            id.len = v.len() as u8;
        }
        id
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// As a header value again (for the gateway's own answers).
    pub fn header(&self) -> Option<HeaderValue> {
        let bytes = self.as_bytes();
        (!bytes.is_empty())
            .then(|| HeaderValue::from_bytes(bytes).ok())
            .flatten()
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

#[derive(Debug, Default)]
pub struct Upstream {
    pub host: Option<SocketAddr>,
    pub cluster: Option<Arc<crate::upstream::Cluster>>,
    pub local: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct Downstream {
    pub local: Option<SocketAddr>,
    pub remote: SocketAddr,
    pub sni: Option<Arc<str>>,
}

#[derive(Debug)]
pub enum Entry {
    Http(Box<HttpEntry>),
    Tcp(Box<TcpEntry>),
}

struct Sink {
    queue: SyncSender<Entry>,
    /// Entries queued and not yet taken by the writer.
    pending: Arc<AtomicUsize>,
    writer: std::thread::Thread,
    dropped: metrics::Counter,
}

static SINK: OnceLock<Sink> = OnceLock::new();
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Starts the writer for `target` (once per process); logging stays off until [`set_enabled`].
pub fn start(target: Target, format: Format) -> std::io::Result<()> {
    let (queue, entries) = mpsc::sync_channel(QUEUE);
    let pending = Arc::new(AtomicUsize::new(0));
    let taken = pending.clone();
    let writer = std::thread::Builder::new()
        .name("tollgate-access-log".into())
        .spawn(move || write_loop(&target, format, &entries, &taken))?;
    let _ = SINK.set(Sink {
        queue,
        pending,
        writer: writer.thread().clone(),
        dropped: metrics::counter!(DROPPED),
    });
    Ok(())
}

/// Whether finished requests and streams should build an entry at all.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

pub fn set_enabled(on: bool) {
    let was = ENABLED.swap(on, Ordering::Relaxed);
    if was != on {
        tracing::info!(
            enabled = on,
            "access logging turned {}",
            if on { "on" } else { "off" }
        );
    }
}

/// Queues an entry for the writer, or drops it (counted) when the queue is full.
pub fn submit(entry: Entry) {
    let Some(sink) = SINK.get() else {
        return;
    };
    match sink.queue.try_send(entry) {
        Ok(()) => {
            if sink.pending.fetch_add(1, Ordering::Relaxed) + 1 == WAKE_AT {
                sink.writer.unpark();
            }
        }
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => sink.dropped.increment(1),
    }
}

fn write_loop(target: &Target, format: Format, entries: &Receiver<Entry>, pending: &AtomicUsize) {
    // Opened here, not at start: a FIFO with no reader blocks only this thread.
    let mut out: Box<dyn Write> = match target {
        Target::Stdout => Box::new(std::io::stdout()),
        Target::File(path) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(file) => Box::new(file),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot open the access log; entries are dropped");
                return;
            }
        },
    };
    let mut buf = Vec::with_capacity(BATCH_BYTES + 4096);
    loop {
        std::thread::park_timeout(FLUSH_EVERY);
        while let Ok(entry) = entries.try_recv() {
            pending.fetch_sub(1, Ordering::Relaxed);
            write_entry(&mut buf, format, &entry);
            if buf.len() >= BATCH_BYTES {
                write_out(&mut out, &mut buf);
            }
        }
        write_out(&mut out, &mut buf);
    }
}

fn write_out(out: &mut Box<dyn Write>, buf: &mut Vec<u8>) {
    if buf.is_empty() {
        return;
    }
    if let Err(e) = out.write_all(buf).and_then(|()| out.flush()) {
        tracing::warn!(error = %e, "access log write failed");
    }
    buf.clear();
}

pub fn write_entry(buf: &mut Vec<u8>, format: Format, entry: &Entry) {
    match (format, entry) {
        (Format::Text, Entry::Http(e)) => text_http(buf, e),
        (Format::Text, Entry::Tcp(e)) => text_tcp(buf, e),
        (Format::Json, entry) => {
            let json = match entry {
                Entry::Http(e) => json_http(e),
                Entry::Tcp(e) => json_tcp(e),
            };
            let _ = serde_json::to_writer(&mut *buf, &json);
            buf.push(b'\n');
        }
    }
}

/// `-` for an absent value, as Envoy prints it.
struct Or<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for Or<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

fn header(buf: &mut Vec<u8>, value: Option<&HeaderValue>) {
    bytes_or_dash(buf, value.map_or(&[], |v| v.as_bytes()));
}

fn bytes_or_dash(buf: &mut Vec<u8>, value: &[u8]) {
    if value.is_empty() {
        buf.push(b'-');
    } else {
        buf.extend_from_slice(value);
    }
}

/// Response code details never contain spaces in Envoy's logs.
fn details(buf: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) if !v.is_empty() => buf.extend(v.bytes().map(|b| if b == b' ' { b'_' } else { b })),
        _ => buf.push(b'-'),
    }
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_09 => "HTTP/0.9",
        _ => "HTTP/1.1",
    }
}

fn start_time(start: SystemTime) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_millis(start)
}

/// Envoy's default TEXT format (Istio's `accessLogFormat` unset), field for field.
fn text_http(buf: &mut Vec<u8>, e: &HttpEntry) {
    let path = e.path.as_ref().map(|p| p.as_str());
    let _ = write!(
        buf,
        "[{}] \"{} {} {}\" {} {} ",
        start_time(e.start),
        e.method,
        Or(path),
        protocol(e.protocol),
        e.code,
        e.flags
    );
    details(buf, Some(&e.details));
    buf.extend_from_slice(b" - \"");
    details(buf, e.upstream_failure.as_deref());
    let _ = write!(
        buf,
        "\" {} {} {} {} \"",
        e.bytes_received,
        e.bytes_sent,
        e.duration_ms,
        Or(e.upstream_service_time)
    );
    header(buf, e.forwarded_for.as_ref());
    buf.extend_from_slice(b"\" \"");
    header(buf, e.user_agent.as_ref());
    buf.extend_from_slice(b"\" \"");
    bytes_or_dash(buf, e.request_id.as_bytes());
    buf.extend_from_slice(b"\" \"");
    header(buf, e.authority.as_ref());
    let route = e.route.as_ref().and_then(|r| r.log_name.as_deref());
    tail(buf, &e.upstream, &e.downstream, route);
}

/// A TCP stream's line: the HTTP fields are `-`, the code 0.
fn text_tcp(buf: &mut Vec<u8>, e: &TcpEntry) {
    let _ = write!(
        buf,
        "[{}] \"- - -\" 0 {} - - \"",
        start_time(e.start),
        e.flags
    );
    details(buf, e.upstream_failure.as_deref());
    let _ = write!(
        buf,
        "\" {} {} {} - \"-\" \"-\" \"-\" \"-",
        e.bytes_received, e.bytes_sent, e.duration_ms
    );
    // Envoy's TCP proxy has no route name.
    tail(buf, &e.upstream, &e.downstream, None);
}

/// `"%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS%
/// %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%`, after an open quote.
fn tail(buf: &mut Vec<u8>, up: &Upstream, down: &Downstream, route: Option<&str>) {
    let cluster = up.cluster.as_ref().map(|c| c.name());
    let _ = writeln!(
        buf,
        "\" \"{}\" {} {} {} {} {} {}",
        Or(up.host),
        Or(cluster),
        Or(up.local),
        Or(down.local),
        down.remote,
        Or(down.sni.as_deref()),
        Or(route)
    );
}

/// Istio's JSON encoding: the same fields under Envoy's keys; unset values are null.
#[derive(Serialize)]
struct JsonEntry<'a> {
    start_time: String,
    route_name: Option<&'a str>,
    method: Option<&'a str>,
    path: Option<&'a str>,
    protocol: Option<&'static str>,
    response_code: u16,
    response_flags: String,
    response_code_details: Option<String>,
    connection_termination_details: Option<&'a str>,
    bytes_received: u64,
    bytes_sent: u64,
    duration: u64,
    upstream_service_time: Option<u64>,
    x_forwarded_for: Option<Cow<'a, str>>,
    user_agent: Option<Cow<'a, str>>,
    request_id: Option<Cow<'a, str>>,
    authority: Option<Cow<'a, str>>,
    upstream_host: Option<String>,
    upstream_cluster: Option<&'a str>,
    upstream_local_address: Option<String>,
    downstream_local_address: Option<String>,
    downstream_remote_address: String,
    requested_server_name: Option<&'a str>,
    upstream_transport_failure_reason: Option<String>,
}

fn lossy(value: Option<&HeaderValue>) -> Option<Cow<'_, str>> {
    value.map(|v| String::from_utf8_lossy(v.as_bytes()))
}

fn underscored(value: &str) -> String {
    value.replace(' ', "_")
}

fn json_http(e: &HttpEntry) -> JsonEntry<'_> {
    let mut json = json_common(
        e.start,
        e.flags,
        e.upstream_failure.as_deref(),
        (e.bytes_received, e.bytes_sent, e.duration_ms),
        &e.upstream,
        &e.downstream,
    );
    json.route_name = e.route.as_ref().and_then(|r| r.log_name.as_deref());
    json.method = Some(e.method.as_str());
    json.path = e.path.as_ref().map(|p| p.as_str());
    json.protocol = Some(protocol(e.protocol));
    json.response_code = e.code;
    json.response_code_details = Some(underscored(&e.details));
    json.upstream_service_time = e.upstream_service_time;
    json.x_forwarded_for = lossy(e.forwarded_for.as_ref());
    json.user_agent = lossy(e.user_agent.as_ref());
    json.request_id = Some(e.request_id.as_bytes())
        .filter(|id| !id.is_empty())
        .map(String::from_utf8_lossy);
    json.authority = lossy(e.authority.as_ref());
    json
}

fn json_tcp(e: &TcpEntry) -> JsonEntry<'_> {
    json_common(
        e.start,
        e.flags,
        e.upstream_failure.as_deref(),
        (e.bytes_received, e.bytes_sent, e.duration_ms),
        &e.upstream,
        &e.downstream,
    )
}

fn json_common<'a>(
    start: SystemTime,
    flags: Flags,
    failure: Option<&str>,
    (bytes_received, bytes_sent, duration): (u64, u64, u64),
    up: &'a Upstream,
    down: &'a Downstream,
) -> JsonEntry<'a> {
    JsonEntry {
        start_time: start_time(start).to_string(),
        route_name: None,
        method: None,
        path: None,
        protocol: None,
        response_code: 0,
        response_flags: flags.to_string(),
        response_code_details: None,
        connection_termination_details: None,
        bytes_received,
        bytes_sent,
        duration,
        upstream_service_time: None,
        x_forwarded_for: None,
        user_agent: None,
        request_id: None,
        authority: None,
        upstream_host: up.host.map(|h| h.to_string()),
        upstream_cluster: up.cluster.as_ref().map(|c| c.name()),
        upstream_local_address: up.local.map(|a| a.to_string()),
        downstream_local_address: down.local.map(|a| a.to_string()),
        downstream_remote_address: down.remote.to_string(),
        requested_server_name: down.sni.as_deref(),
        upstream_transport_failure_reason: failure.map(underscored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> HttpEntry {
        HttpEntry {
            start: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_767_323_045_678),
            method: Method::GET,
            path: Some(http::uri::PathAndQuery::from_static("/x?y=1")),
            protocol: Version::HTTP_11,
            code: 404,
            flags: Flags::NO_ROUTE,
            details: "route_not_found".into(),
            upstream_failure: None,
            bytes_received: 0,
            bytes_sent: 0,
            duration_ms: 0,
            upstream_service_time: None,
            forwarded_for: Some(HeaderValue::from_static("10.0.0.9")),
            user_agent: Some(HeaderValue::from_static("curl/8.5.0")),
            request_id: RequestId::of(Some(&HeaderValue::from_static("5c0e"))),
            authority: Some(HeaderValue::from_static("foo.example.com")),
            upstream: Upstream::default(),
            downstream: Downstream {
                local: Some("10.1.2.3:8080".parse().unwrap()),
                remote: "10.0.0.9:51514".parse().unwrap(),
                sni: None,
            },
            route: None,
        }
    }

    #[test]
    fn text_matches_the_reference_example() {
        let mut buf = Vec::new();
        write_entry(&mut buf, Format::Text, &Entry::Http(Box::new(entry())));
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "[2026-01-02T03:04:05.678Z] \"GET /x?y=1 HTTP/1.1\" 404 NR route_not_found - \"-\" 0 0 0 - \"10.0.0.9\" \"curl/8.5.0\" \"5c0e\" \"foo.example.com\" \"-\" - - 10.1.2.3:8080 10.0.0.9:51514 - -\n"
        );
    }

    #[test]
    fn json_has_envoy_keys_and_nulls() {
        let mut buf = Vec::new();
        let mut e = entry();
        e.upstream_failure = Some("delayed connect error: 111".into());
        write_entry(&mut buf, Format::Json, &Entry::Http(Box::new(e)));
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["response_code"], 404);
        assert_eq!(v["response_flags"], "NR");
        assert_eq!(v["authority"], "foo.example.com");
        assert_eq!(v["upstream_host"], serde_json::Value::Null);
        assert_eq!(
            v["upstream_transport_failure_reason"],
            "delayed_connect_error:_111"
        );
        assert_eq!(v["start_time"], "2026-01-02T03:04:05.678Z");
    }
}
