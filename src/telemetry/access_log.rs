//! Envoy's access log (reference §5.4): one line per HTTP request or TCP stream, in Istio's
//! default TEXT format or its JSON encoding.
//!
//! As in Envoy, a finished request's line is formatted on its own worker thread, into that
//! thread's buffer (its own lock, no allocation once grown, no wake-up, and nothing shared with
//! other threads); a writer thread takes every buffer each [`FLUSH_EVERY`], or sooner when one
//! passes [`WAKE_AT`], and writes it in one call. A slow or stuck sink lets the buffers fill,
//! and lines beyond [`MAX_BUFFERED`] are dropped and counted, so logging never slows a request.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use http::{HeaderValue, Method, Version};
use serde::Serialize;

use super::flags::Flags;

/// Bytes of formatted lines a thread may hold for the writer (about 6,000 lines); beyond this
/// the writer has fallen behind (a slow disk, a pipe nobody reads) and lines are dropped, counted.
const MAX_BUFFERED: usize = 2 * 1024 * 1024;
/// How often the writer takes the buffers (Envoy flushes its access log buffer every second).
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// A buffer that grows past this wakes the writer early (once per burst).
const WAKE_AT: usize = 256 * 1024;

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
    /// Path (as routed: after normalization, before any rewrite; query included),
    /// `x-forwarded-for`, `user-agent` and authority.
    pub request: RequestStrings,
    pub protocol: Version,
    pub code: u16,
    pub flags: Flags,
    pub details: Cow<'static, str>,
    pub upstream_failure: Option<Cow<'static, str>>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration_ms: u64,
    pub upstream_service_time: Option<u64>,
    pub request_id: RequestId,
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

/// The request's strings a log line shows, copied into one buffer at arrival (the request itself
/// goes upstream). Holding hyper's header values instead would pin the connection's read buffer
/// for as long as the exchange lasts, so hyper could not reuse it for the next request.
#[derive(Debug, Default)]
pub struct RequestStrings {
    bytes: Vec<u8>,
    /// Where each of path, x-forwarded-for, user-agent and authority ends in `bytes`.
    ends: [u32; 4],
}

impl RequestStrings {
    pub fn new(path: &[u8], forwarded_for: &[u8], user_agent: &[u8], authority: &[u8]) -> Self {
        let fields = [path, forwarded_for, user_agent, authority];
        let mut bytes = Vec::with_capacity(fields.iter().map(|f| f.len()).sum());
        let mut ends = [0; 4];
        for (end, field) in ends.iter_mut().zip(fields) {
            bytes.extend_from_slice(field);
            *end = bytes.len() as u32;
        }
        RequestStrings { bytes, ends }
    }

    fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..self.ends[i] as usize]
    }

    pub fn path(&self) -> &[u8] {
        self.field(0)
    }

    pub fn forwarded_for(&self) -> &[u8] {
        self.field(1)
    }

    pub fn user_agent(&self) -> &[u8] {
        self.field(2)
    }

    pub fn authority(&self) -> &[u8] {
        self.field(3)
    }
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
    format: Format,
    /// Every thread's line buffer; the writer takes them in turn.
    buffers: Mutex<Vec<Arc<LineBuffer>>>,
    /// Counts the writer's rounds (take every buffer, write): [`flush`] waits for two.
    rounds: AtomicUsize,
    writer: OnceLock<std::thread::Thread>,
    dropped: metrics::Counter,
}

/// One thread's formatted lines waiting for the writer. Only its own thread appends, so the lock
/// is contended only for the moment the writer swaps the buffer out (every [`FLUSH_EVERY`]).
#[derive(Default)]
struct LineBuffer {
    lines: Mutex<Vec<u8>>,
}

/// A thread's line buffer and formatter (with its date cache), made on its first line.
struct Local {
    buffer: Arc<LineBuffer>,
    formatter: LineFormatter,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

static SINK: OnceLock<Sink> = OnceLock::new();
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Starts the writer for `target` (once per process); logging stays off until [`set_enabled`].
pub fn start(target: Target, format: Format) -> std::io::Result<()> {
    let sink = SINK.get_or_init(|| Sink {
        format,
        buffers: Mutex::new(Vec::new()),
        rounds: AtomicUsize::new(0),
        writer: OnceLock::new(),
        dropped: metrics::counter!(DROPPED),
    });
    let writer = std::thread::Builder::new()
        .name("tollgate-access-log".into())
        .spawn(move || write_loop(&target, sink))?;
    let _ = sink.writer.set(writer.thread().clone());
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

/// Formats `entry` into this thread's line buffer (no allocation once the buffer has grown, no
/// wait: the lock is this thread's own), or drops it, counted, when the writer has fallen
/// [`MAX_BUFFERED`] bytes behind.
pub fn submit(entry: Entry) {
    let Some(sink) = SINK.get() else {
        return;
    };
    // `try_`: a line finished while the thread is being torn down is dropped, never a panic.
    let _ = LOCAL.try_with(|local| {
        let Ok(mut local) = local.try_borrow_mut() else {
            return;
        };
        let local = local.get_or_insert_with(|| sink.register());
        let Ok(mut lines) = local.buffer.lines.lock() else {
            return;
        };
        let before = lines.len();
        local.formatter.write(&mut lines, &entry);
        if lines.len() > MAX_BUFFERED {
            lines.truncate(before);
            sink.dropped.increment(1);
        } else if before < WAKE_AT && lines.len() >= WAKE_AT {
            if let Some(writer) = sink.writer.get() {
                writer.unpark();
            }
        }
    });
}

impl Sink {
    fn register(&self) -> Local {
        let buffer = Arc::new(LineBuffer::default());
        if let Ok(mut buffers) = self.buffers.lock() {
            buffers.push(buffer.clone());
        }
        Local {
            buffer,
            formatter: LineFormatter::new(self.format),
        }
    }
}

/// Writes out what is buffered (at shutdown), waiting at most a second.
pub fn flush() {
    let Some(sink) = SINK.get() else {
        return;
    };
    let Some(writer) = sink.writer.get() else {
        return;
    };
    // The round under way may have passed the newest lines by; the one after has not.
    let wanted = sink.rounds.load(Ordering::Acquire) + 2;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while sink.rounds.load(Ordering::Acquire) < wanted && std::time::Instant::now() < deadline {
        writer.unpark();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

fn write_loop(target: &Target, sink: &Sink) {
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
    // Swapped with each thread's buffer in turn, so neither side allocates in steady state.
    let mut spare = Vec::new();
    loop {
        std::thread::park_timeout(FLUSH_EVERY);
        let buffers = match sink.buffers.lock() {
            Ok(mut buffers) => {
                // A buffer only the registry holds belongs to a thread that has ended.
                buffers.retain(|b| Arc::strong_count(b) > 1 || !b.is_empty());
                buffers.clone()
            }
            Err(_) => return,
        };
        for buffer in buffers {
            if let Ok(mut lines) = buffer.lines.lock() {
                std::mem::swap(&mut *lines, &mut spare);
            }
            write_out(&mut out, &mut spare);
        }
        sink.rounds.fetch_add(1, Ordering::Release);
    }
}

impl LineBuffer {
    fn is_empty(&self) -> bool {
        self.lines.lock().map_or(true, |l| l.is_empty())
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

/// Formats entries into log lines. Text lines are written byte by byte, without `fmt`: every
/// request's line is formatted on the data path, and `fmt`'s padding machinery cost more than the
/// rest of the line together. The date is formatted once per second.
pub struct LineFormatter {
    format: Format,
    clock: DateCache,
}

impl LineFormatter {
    pub fn new(format: Format) -> Self {
        LineFormatter {
            format,
            clock: DateCache::default(),
        }
    }

    pub fn write(&mut self, buf: &mut Vec<u8>, entry: &Entry) {
        match (self.format, entry) {
            (Format::Text, Entry::Http(e)) => self.text_http(buf, e),
            (Format::Text, Entry::Tcp(e)) => self.text_tcp(buf, e),
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

    /// Envoy's default TEXT format (Istio's `accessLogFormat` unset), field for field.
    fn text_http(&mut self, buf: &mut Vec<u8>, e: &HttpEntry) {
        buf.push(b'[');
        self.clock.write(buf, e.start);
        buf.extend_from_slice(b"] \"");
        buf.extend_from_slice(e.method.as_str().as_bytes());
        buf.push(b' ');
        bytes_or_dash(buf, e.request.path());
        buf.push(b' ');
        buf.extend_from_slice(protocol(e.protocol).as_bytes());
        buf.extend_from_slice(b"\" ");
        number(buf, u64::from(e.code));
        buf.push(b' ');
        flags(buf, e.flags);
        buf.push(b' ');
        details(buf, Some(&e.details));
        buf.extend_from_slice(b" - \"");
        details(buf, e.upstream_failure.as_deref());
        buf.extend_from_slice(b"\" ");
        counters(buf, e.bytes_received, e.bytes_sent, e.duration_ms);
        match e.upstream_service_time {
            Some(ms) => number(buf, ms),
            None => buf.push(b'-'),
        }
        buf.extend_from_slice(b" \"");
        bytes_or_dash(buf, e.request.forwarded_for());
        buf.extend_from_slice(b"\" \"");
        bytes_or_dash(buf, e.request.user_agent());
        buf.extend_from_slice(b"\" \"");
        bytes_or_dash(buf, e.request_id.as_bytes());
        buf.extend_from_slice(b"\" \"");
        bytes_or_dash(buf, e.request.authority());
        let route = e.route.as_ref().and_then(|r| r.log_name.as_deref());
        tail(buf, &e.upstream, &e.downstream, route);
    }

    /// A TCP stream's line: the HTTP fields are `-`, the code 0.
    fn text_tcp(&mut self, buf: &mut Vec<u8>, e: &TcpEntry) {
        buf.push(b'[');
        self.clock.write(buf, e.start);
        buf.extend_from_slice(b"] \"- - -\" 0 ");
        flags(buf, e.flags);
        buf.extend_from_slice(b" - - \"");
        details(buf, e.upstream_failure.as_deref());
        buf.extend_from_slice(b"\" ");
        counters(buf, e.bytes_received, e.bytes_sent, e.duration_ms);
        buf.extend_from_slice(b"- \"-\" \"-\" \"-\" \"-");
        // Envoy's TCP proxy has no route name.
        tail(buf, &e.upstream, &e.downstream, None);
    }
}

/// `%START_TIME%` as Envoy prints it (`2026-01-02T03:04:05.678Z`), the part up to the second
/// formatted once per second.
#[derive(Default)]
struct DateCache {
    second: u64,
    /// `2026-01-02T03:04:05.`
    prefix: Vec<u8>,
}

impl DateCache {
    fn write(&mut self, buf: &mut Vec<u8>, at: SystemTime) {
        let since_epoch = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let second = since_epoch.as_secs();
        if self.prefix.is_empty() || second != self.second {
            let whole = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(second);
            self.prefix.clear();
            let _ = write!(self.prefix, "{}", humantime::format_rfc3339_seconds(whole));
            self.prefix.pop(); // the `Z`
            self.prefix.push(b'.');
            self.second = second;
        }
        buf.extend_from_slice(&self.prefix);
        let millis = since_epoch.subsec_millis();
        let digits = [millis / 100, millis / 10 % 10, millis % 10].map(|d| b'0' + d as u8);
        buf.extend_from_slice(&digits);
        buf.push(b'Z');
    }
}

fn number(buf: &mut Vec<u8>, n: u64) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `%BYTES_RECEIVED% %BYTES_SENT% %DURATION% `
fn counters(buf: &mut Vec<u8>, received: u64, sent: u64, duration_ms: u64) {
    for n in [received, sent, duration_ms] {
        number(buf, n);
        buf.push(b' ');
    }
}

fn flags(buf: &mut Vec<u8>, flags: Flags) {
    if flags.is_empty() {
        buf.push(b'-');
        return;
    }
    for (i, name) in flags.names().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(name.as_bytes());
    }
}

/// An address, or `-`; IPv4 written by hand, the common case on the hot path.
fn address(buf: &mut Vec<u8>, addr: Option<SocketAddr>) {
    match addr {
        None => buf.push(b'-'),
        Some(SocketAddr::V4(v4)) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                number(buf, u64::from(octet));
            }
            buf.push(b':');
            number(buf, u64::from(v4.port()));
        }
        Some(v6) => {
            let _ = write!(buf, "{v6}");
        }
    }
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

/// `"%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS%
/// %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%`, after an open quote.
fn tail(buf: &mut Vec<u8>, up: &Upstream, down: &Downstream, route: Option<&str>) {
    buf.extend_from_slice(b"\" \"");
    address(buf, up.host);
    buf.extend_from_slice(b"\" ");
    bytes_or_dash(
        buf,
        up.cluster.as_ref().map_or(b"", |c| c.name().as_bytes()),
    );
    buf.push(b' ');
    address(buf, up.local);
    buf.push(b' ');
    address(buf, down.local);
    buf.push(b' ');
    address(buf, Some(down.remote));
    buf.push(b' ');
    bytes_or_dash(buf, down.sni.as_deref().map_or(b"", str::as_bytes));
    buf.push(b' ');
    bytes_or_dash(buf, route.map_or(b"", str::as_bytes));
    buf.push(b'\n');
}

/// Istio's JSON encoding: the same fields under Envoy's keys; unset values are null.
#[derive(Serialize)]
struct JsonEntry<'a> {
    start_time: String,
    route_name: Option<&'a str>,
    method: Option<&'a str>,
    path: Option<Cow<'a, str>>,
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

/// A logged string for JSON: `null` when absent or empty, as the text line's `-`.
fn lossy(value: &[u8]) -> Option<Cow<'_, str>> {
    (!value.is_empty()).then(|| String::from_utf8_lossy(value))
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
    json.path = lossy(e.request.path());
    json.protocol = Some(protocol(e.protocol));
    json.response_code = e.code;
    json.response_code_details = Some(underscored(&e.details));
    json.upstream_service_time = e.upstream_service_time;
    json.x_forwarded_for = lossy(e.request.forwarded_for());
    json.user_agent = lossy(e.request.user_agent());
    json.request_id = lossy(e.request_id.as_bytes());
    json.authority = lossy(e.request.authority());
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
        start_time: humantime::format_rfc3339_millis(start).to_string(),
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
            request: RequestStrings::new(b"/x?y=1", b"10.0.0.9", b"curl/8.5.0", b"foo.example.com"),
            protocol: Version::HTTP_11,
            code: 404,
            flags: Flags::NO_ROUTE,
            details: "route_not_found".into(),
            upstream_failure: None,
            bytes_received: 0,
            bytes_sent: 0,
            duration_ms: 0,
            upstream_service_time: None,
            request_id: RequestId::of(Some(&HeaderValue::from_static("5c0e"))),
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
        LineFormatter::new(Format::Text).write(&mut buf, &Entry::Http(Box::new(entry())));
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "[2026-01-02T03:04:05.678Z] \"GET /x?y=1 HTTP/1.1\" 404 NR route_not_found - \"-\" 0 0 0 - \"10.0.0.9\" \"curl/8.5.0\" \"5c0e\" \"foo.example.com\" \"-\" - - 10.1.2.3:8080 10.0.0.9:51514 - -\n"
        );
    }

    #[test]
    fn date_cache_follows_the_clock_across_seconds() {
        let mut lines = LineFormatter::new(Format::Text);
        let mut stamps = Vec::new();
        for ms in [
            1_767_323_045_678,
            1_767_323_045_999,
            1_767_323_046_007,
            1_767_323_045_001,
        ] {
            let mut e = entry();
            e.start = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms);
            let mut buf = Vec::new();
            lines.write(&mut buf, &Entry::Http(Box::new(e)));
            stamps.push(String::from_utf8(buf[1..25].to_vec()).unwrap());
        }
        assert_eq!(
            stamps,
            [
                "2026-01-02T03:04:05.678Z",
                "2026-01-02T03:04:05.999Z",
                "2026-01-02T03:04:06.007Z",
                "2026-01-02T03:04:05.001Z"
            ]
        );
    }

    #[test]
    fn tcp_line_with_ipv6_and_several_flags() {
        let e = TcpEntry {
            start: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_767_323_045_078),
            flags: Flags::UPSTREAM_CONNECTION_FAILURE | Flags::RETRY_LIMIT_EXCEEDED,
            upstream_failure: Some("delayed connect error: 111".into()),
            bytes_received: 12,
            bytes_sent: 0,
            duration_ms: 1500,
            upstream: Upstream {
                host: Some("[::1]:9000".parse().unwrap()),
                cluster: None,
                local: None,
            },
            downstream: Downstream {
                local: Some("[fe80::1]:443".parse().unwrap()),
                remote: "255.255.255.255:65535".parse().unwrap(),
                sni: Some("a.example.com".into()),
            },
        };
        let mut buf = Vec::new();
        LineFormatter::new(Format::Text).write(&mut buf, &Entry::Tcp(Box::new(e)));
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "[2026-01-02T03:04:05.078Z] \"- - -\" 0 UF,URX - - \"delayed_connect_error:_111\" 12 0 1500 - \"-\" \"-\" \"-\" \"-\" \"[::1]:9000\" - - [fe80::1]:443 255.255.255.255:65535 a.example.com -\n"
        );
    }

    #[test]
    fn json_has_envoy_keys_and_nulls() {
        let mut buf = Vec::new();
        let mut e = entry();
        e.upstream_failure = Some("delayed connect error: 111".into());
        LineFormatter::new(Format::Json).write(&mut buf, &Entry::Http(Box::new(e)));
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
