//! An opaque stream's way upstream, as Envoy's TCP proxy does it: route → cluster (by weight) →
//! endpoint (the cluster's balancer) → connect → bytes already read (a peeked ClientHello) →
//! relay. A stream that cannot reach an upstream is closed without a byte, counted by reason.
//! Each stream is counted in Istio's TCP metrics and, with access logging on, gets one line.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::relay::{self, Counts, End, IdleTimer};
use crate::route::Target;
use crate::snapshot::l4::L4Route;
use crate::state::ProxySettings;
use crate::telemetry::access_log::{self, Downstream, Entry, TcpEntry, Upstream};
use crate::telemetry::istio::{self, TcpSeries};
use crate::telemetry::Flags;
use crate::upstream::cluster::ActiveRequest;
use crate::upstream::{Admission, Cluster, Conn, Observation, UpstreamError};

/// Istio's byte counters are flushed every 5 s while a stream lives, and at its end.
const METRICS_FLUSH: Duration = Duration::from_secs(5);

/// Where a stream came from, for logs.
#[derive(Debug, Clone)]
pub struct Origin {
    pub gateway_port: u16,
    pub downstream: Downstream,
}

/// A stream's record from accept to close: Istio's counters and the access log line.
struct Record {
    started: Instant,
    /// Wall-clock start, read only when access logging is on.
    start_time: Option<SystemTime>,
}

impl Record {
    fn start() -> Self {
        Record {
            started: Instant::now(),
            start_time: access_log::enabled().then(SystemTime::now),
        }
    }

    /// The stream's access log line, if logging was on when it started.
    fn log(
        &self,
        origin: &Origin,
        flags: Flags,
        counts: Option<&Counts>,
        upstream: Upstream,
        failure: Option<Cow<'static, str>>,
    ) {
        let Some(start) = self.start_time else {
            return;
        };
        let (received, sent) = counts.map_or((0, 0), |c| {
            use std::sync::atomic::Ordering::Relaxed;
            (c.received.load(Relaxed), c.sent.load(Relaxed))
        });
        access_log::submit(Entry::Tcp(Box::new(TcpEntry {
            start,
            flags,
            upstream_failure: failure,
            bytes_received: received,
            bytes_sent: sent,
            duration_ms: self.started.elapsed().as_millis() as u64,
            upstream,
            downstream: origin.downstream.clone(),
        })));
    }
}

/// Why a stream got no upstream.
struct Rejected {
    reason: &'static str,
    flags: Flags,
    cluster: Option<Arc<Cluster>>,
    host: Option<std::net::SocketAddr>,
    failure: Option<Cow<'static, str>>,
}

impl Rejected {
    fn new(reason: &'static str, flags: Flags) -> Self {
        Rejected {
            reason,
            flags,
            cluster: None,
            host: None,
            failure: None,
        }
    }

    /// Counted and logged as Envoy's TCP proxy does: a stream opened and closed with its flags.
    fn report(self, record: &Record, route: &L4Route, origin: &Origin) {
        crate::metrics::record_tcp_rejected(self.reason);
        tracing::debug!(peer = %origin.downstream.remote, gateway_port = origin.gateway_port, route = %route.name, reason = self.reason, "stream closed before reaching an upstream");
        let stats = match &self.cluster {
            Some(cluster) => cluster.istio_stats(),
            None => istio::unknown_destination(),
        };
        let series = stats.tcp(self.flags);
        series.opened.increment(1);
        series.closed.increment(1);
        let upstream = Upstream {
            host: self.host,
            cluster: self.cluster,
            local: None,
        };
        record.log(origin, self.flags, None, upstream, self.failure);
    }
}

/// A stream refused before any route: an SNI no server takes, or a PASSTHROUGH host without a
/// `tls` route. Envoy logs a listener-level `NR` line; no filter chain ran, so Istio's stats
/// filter never saw the connection and no `istio_*` series counts it.
pub fn record_no_route(origin: &Origin) {
    Record::start().log(origin, Flags::NO_ROUTE, None, Upstream::default(), None);
}

/// Forwards a client socket along `route`, after sending `prefix` (bytes already read from it,
/// released once sent so an idle stream does not keep them).
pub async fn forward(
    client: TcpStream,
    prefix: Bytes,
    route: &L4Route,
    origin: Origin,
    settings: &ProxySettings,
) {
    let record = Record::start();
    let (cluster, mut upstream, held) = match connect(route, &origin).await {
        Ok(connected) => connected,
        Err(rejected) => return rejected.report(&record, route, &origin),
    };
    if !prefix.is_empty() && upstream.write_all(&prefix).await.is_err() {
        let mut rejected = Rejected::new("connect_failed", Flags::UPSTREAM_CONNECTION_FAILURE);
        rejected.cluster = Some(cluster);
        return rejected.report(&record, route, &origin);
    }
    let counts = Counts::default();
    counts
        .received
        .store(prefix.len() as u64, std::sync::atomic::Ordering::Relaxed);
    drop(prefix);
    let idle = idle_timeout(&cluster, settings.tcp_idle_timeout);
    let stream = Stream::new(record, &cluster, route, &origin, &held, &upstream);
    let upstream = match upstream {
        Conn::Plain(upstream) => upstream,
        // TLS originated to the upstream: the bytes change on the way, so they are copied.
        tls => return copy_streams(client, tls, counts, stream, idle).await,
    };
    let series = cluster.istio_stats().tcp(Flags::NONE);
    series.opened.increment(1);
    let mut flushed = Flushed::default();
    let end = relay::relay(
        &client,
        &upstream,
        &counts,
        settings.tcp_copy,
        idle,
        METRICS_FLUSH,
        || flushed.flush(&counts, &series),
    )
    .await;
    flushed.flush(&counts, &series);
    stream.finish(&series, end, &counts);
}

/// Forwards an already wrapped client stream (TLS terminated by a `TLS` server) along `route`.
pub async fn forward_stream<S>(client: S, route: &L4Route, origin: Origin, idle: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let record = Record::start();
    let (cluster, upstream, held) = match connect(route, &origin).await {
        Ok(connected) => connected,
        Err(rejected) => return rejected.report(&record, route, &origin),
    };
    let idle = idle_timeout(&cluster, idle);
    let counts = Counts::default();
    let stream = Stream::new(record, &cluster, route, &origin, &held, &upstream);
    copy_streams(client, upstream, counts, stream, idle).await;
}

/// A connected stream's context, for its metrics and log line at the end.
struct Stream<'a> {
    record: Record,
    cluster: &'a Arc<Cluster>,
    route: &'a L4Route,
    origin: &'a Origin,
    upstream_host: std::net::SocketAddr,
    upstream_local: Option<std::net::SocketAddr>,
}

/// The cluster's `tcp.idleTimeout`, else the gateway's.
fn idle_timeout(cluster: &Cluster, gateway: Duration) -> Duration {
    cluster.transport().spec.tcp_idle_timeout.unwrap_or(gateway)
}

/// A plain copy both ways, for streams that cannot be spliced (TLS on either side); not the
/// wire-speed path.
async fn copy_streams<C>(
    mut client: C,
    mut upstream: Conn,
    counts: Counts,
    stream: Stream<'_>,
    idle: Duration,
) where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let series = stream.cluster.istio_stats().tcp(Flags::NONE);
    series.opened.increment(1);
    let mut flushed = Flushed::default();
    let end = {
        let mut metered = super::metered::Metered::new(&mut client, &counts);
        let copy = tokio::io::copy_bidirectional_with_sizes(
            &mut metered,
            &mut upstream,
            16 * 1024,
            16 * 1024,
        );
        let mut copy = std::pin::pin!(copy);
        let mut tick = || flushed.flush(&counts, &series);
        let mut timer = IdleTimer::new(idle, METRICS_FLUSH, 0);
        std::future::poll_fn(|cx| match copy.as_mut().poll(cx) {
            Poll::Ready(Ok(_)) => Poll::Ready(End::Closed),
            Poll::Ready(Err(_)) => Poll::Ready(End::Failed),
            Poll::Pending => timer.poll(cx, &counts, &mut tick).map(|()| End::Idle),
        })
        .await
    };
    if end == End::Failed {
        // Either side failed; the upstream learns it as a reset, not as a clean end.
        relay::abort(upstream.tcp());
    }
    flushed.flush(&counts, &series);
    stream.finish(&series, end, &counts);
}

type Connected = (Arc<Cluster>, Conn, (ActiveRequest, Admission));

/// Picks the destination and endpoint and connects, or says why not (the client is closed).
async fn connect(route: &L4Route, origin: &Origin) -> Result<Connected, Rejected> {
    let cluster = match route.pick() {
        Some(Target::Cluster(cluster)) => cluster.clone(),
        Some(Target::Missing(_)) | None => {
            return Err(Rejected::new("no_cluster", Flags::NO_CLUSTER));
        }
    };
    let reject = |reason: &'static str, flags: Flags| Rejected {
        cluster: Some(cluster.clone()),
        ..Rejected::new(reason, flags)
    };
    // Of the consistent-hash keys only the source address exists below HTTP.
    let key = match cluster.hash_on() {
        Some(crate::upstream::HashOn::SourceIp) => Some(crate::upstream::lb::stable_hash(
            &origin.downstream.remote.ip(),
        )),
        _ => None,
    };
    let Some(endpoint) = cluster.pick_for(key).await else {
        return Err(reject("no_healthy_upstream", Flags::NO_HEALTHY_UPSTREAM));
    };
    // `maxConnections` bounds TCP streams too; overflow closes the client, as Envoy's TCP proxy.
    let Ok(admission) = cluster.breaker().admit().await else {
        cluster.stats().overflows.increment(1);
        return Err(reject("overflow", Flags::UPSTREAM_OVERFLOW));
    };
    let active = ActiveRequest::start(endpoint);
    // A TCP stream has no Host: TLS to the upstream sends only a configured `sni`.
    let connected = cluster.transport().connect(active.0.addr, None).await;
    let seen = match &connected {
        Ok(_) => Observation::Status(200),
        Err(_) => Observation::ConnectFailure,
    };
    cluster.report(&active.0, seen);
    let err = match connected {
        Ok(upstream) => return Ok((cluster, upstream, (active, admission))),
        Err(err) => err,
    };
    cluster.stats().connect_failures.increment(1);
    let (reason, failure) = match err {
        UpstreamError::Connect(std::io::ErrorKind::TimedOut) => ("connect_timeout", None),
        UpstreamError::Connect(std::io::ErrorKind::ConnectionRefused) => (
            "connect_failed",
            Some("delayed connect error: Connection refused"),
        ),
        UpstreamError::Tls(_) => ("tls_failed", Some("TLS error")),
        _ => ("connect_failed", None),
    };
    let mut rejected = reject(reason, Flags::UPSTREAM_CONNECTION_FAILURE);
    rejected.host = Some(active.0.addr);
    rejected.failure = failure.map(Cow::Borrowed);
    Err(rejected)
}

/// Byte counts already added to the metrics.
#[derive(Default)]
struct Flushed {
    received: u64,
    sent: u64,
}

impl Flushed {
    fn flush(&mut self, counts: &Counts, stats: &TcpSeries) {
        use std::sync::atomic::Ordering::Relaxed;
        let (received, sent) = (counts.received.load(Relaxed), counts.sent.load(Relaxed));
        stats.received.increment(received - self.received);
        stats.sent.increment(sent - self.sent);
        (self.received, self.sent) = (received, sent);
    }
}

impl<'a> Stream<'a> {
    fn new(
        record: Record,
        cluster: &'a Arc<Cluster>,
        route: &'a L4Route,
        origin: &'a Origin,
        held: &(ActiveRequest, Admission),
        upstream: &Conn,
    ) -> Self {
        Stream {
            record,
            cluster,
            route,
            origin,
            upstream_host: held.0 .0.addr,
            upstream_local: upstream.tcp().local_addr().ok(),
        }
    }

    fn finish(self, series: &TcpSeries, end: End, counts: &Counts) {
        let duration = self.record.started.elapsed();
        series.closed.increment(1);
        let stats = self.cluster.stats();
        stats.tcp_duration.record(duration.as_secs_f64());
        tracing::debug!(
            peer = %self.origin.downstream.remote,
            gateway_port = self.origin.gateway_port,
            route = %self.route.name,
            cluster = self.cluster.name(),
            ?end,
            received = counts.received.load(std::sync::atomic::Ordering::Relaxed),
            sent = counts.sent.load(std::sync::atomic::Ordering::Relaxed),
            duration_ms = duration.as_millis() as u64,
            "stream ended"
        );
        let flags = match end {
            End::Idle => Flags::STREAM_IDLE_TIMEOUT,
            End::UpstreamReset => Flags::UPSTREAM_CONNECTION_TERMINATION,
            End::ClientReset => Flags::DOWNSTREAM_TERMINATION,
            End::Closed | End::Failed => Flags::NONE,
        };
        let upstream = Upstream {
            host: Some(self.upstream_host),
            cluster: Some(self.cluster.clone()),
            local: self.upstream_local,
        };
        self.record
            .log(self.origin, flags, Some(counts), upstream, None);
    }
}
