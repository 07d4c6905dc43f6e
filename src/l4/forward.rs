//! An opaque stream's way upstream, as Envoy's TCP proxy does it: route → cluster (by weight) →
//! endpoint (the cluster's balancer) → connect → bytes already read (a peeked ClientHello) →
//! relay. A stream that cannot reach an upstream is closed without a byte, counted by reason.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::relay::{self, Counts, End, IdleTimer};
use crate::metrics::TcpStats;
use crate::route::Target;
use crate::snapshot::l4::L4Route;
use crate::state::ProxySettings;
use crate::upstream::cluster::ActiveRequest;
use crate::upstream::{Admission, Cluster, Conn, Observation, UpstreamError};

/// Istio's byte counters are flushed every 5 s while a stream lives, and at its end.
const METRICS_FLUSH: Duration = Duration::from_secs(5);

/// Where a stream came from, for logs.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub gateway_port: u16,
    pub peer: SocketAddr,
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
    let Some((cluster, mut upstream, _active)) = connect(route, origin).await else {
        return;
    };
    if !prefix.is_empty() && upstream.write_all(&prefix).await.is_err() {
        crate::metrics::record_tcp_rejected("connect_failed");
        return;
    }
    let counts = Counts::default();
    counts
        .received
        .store(prefix.len() as u64, std::sync::atomic::Ordering::Relaxed);
    drop(prefix);
    let idle = idle_timeout(&cluster, settings.tcp_idle_timeout);
    let upstream = match upstream {
        Conn::Plain(upstream) => upstream,
        // TLS originated to the upstream: the bytes change on the way, so they are copied.
        tls => return copy_streams(client, tls, counts, &cluster, route, origin, idle).await,
    };
    let stats = cluster.tcp_stats();
    stats.opened.increment(1);
    let started = Instant::now();
    let mut flushed = Flushed::default();
    let end = relay::relay(
        &client,
        &upstream,
        &counts,
        settings.tcp_copy,
        idle,
        METRICS_FLUSH,
        || flushed.flush(&counts, stats),
    )
    .await;
    flushed.flush(&counts, stats);
    finish(stats, started, end, route, &cluster, origin, &counts);
}

/// Forwards an already wrapped client stream (TLS terminated by a `TLS` server) along `route`.
pub async fn forward_stream<S>(client: S, route: &L4Route, origin: Origin, idle: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some((cluster, upstream, _active)) = connect(route, origin).await else {
        return;
    };
    let idle = idle_timeout(&cluster, idle);
    let counts = Counts::default();
    copy_streams(client, upstream, counts, &cluster, route, origin, idle).await;
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
    cluster: &Cluster,
    route: &L4Route,
    origin: Origin,
    idle: Duration,
) where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let stats = cluster.tcp_stats();
    stats.opened.increment(1);
    let started = Instant::now();
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
        let mut tick = || flushed.flush(&counts, stats);
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
    flushed.flush(&counts, stats);
    finish(stats, started, end, route, cluster, origin, &counts);
}

/// Picks the destination and endpoint and connects; `None` (counted, logged) closes the client.
async fn connect(
    route: &L4Route,
    origin: Origin,
) -> Option<(Arc<Cluster>, Conn, (ActiveRequest, Admission))> {
    let reject = |reason: &'static str| {
        crate::metrics::record_tcp_rejected(reason);
        tracing::debug!(peer = %origin.peer, gateway_port = origin.gateway_port, route = %route.name, reason, "stream closed before reaching an upstream");
    };
    let cluster = match route.pick() {
        Some(Target::Cluster(cluster)) => cluster.clone(),
        Some(Target::Missing(_)) | None => {
            reject("no_cluster");
            return None;
        }
    };
    // Of the consistent-hash keys only the source address exists below HTTP.
    let key = match cluster.hash_on() {
        Some(crate::upstream::HashOn::SourceIp) => {
            Some(crate::upstream::lb::stable_hash(&origin.peer.ip()))
        }
        _ => None,
    };
    let Some(endpoint) = cluster.pick_for(key).await else {
        reject("no_healthy_upstream");
        return None;
    };
    // `maxConnections` bounds TCP streams too; overflow closes the client, as Envoy's TCP proxy.
    let Ok(admission) = cluster.breaker().admit().await else {
        reject("overflow");
        return None;
    };
    let active = ActiveRequest::start(endpoint);
    // A TCP stream has no Host: TLS to the upstream sends only a configured `sni`.
    let connected = cluster.transport().connect(active.0.addr, None).await;
    let seen = match &connected {
        Ok(_) => Observation::Status(200),
        Err(_) => Observation::ConnectFailure,
    };
    cluster.report(&active.0, seen);
    match connected {
        Ok(upstream) => Some((cluster, upstream, (active, admission))),
        Err(UpstreamError::Connect(std::io::ErrorKind::TimedOut)) => {
            reject("connect_timeout");
            None
        }
        Err(UpstreamError::Tls(_)) => {
            reject("tls_failed");
            None
        }
        Err(_) => {
            reject("connect_failed");
            None
        }
    }
}

/// Byte counts already added to the metrics.
#[derive(Default)]
struct Flushed {
    received: u64,
    sent: u64,
}

impl Flushed {
    fn flush(&mut self, counts: &Counts, stats: &TcpStats) {
        use std::sync::atomic::Ordering::Relaxed;
        let (received, sent) = (counts.received.load(Relaxed), counts.sent.load(Relaxed));
        stats.received.increment(received - self.received);
        stats.sent.increment(sent - self.sent);
        (self.received, self.sent) = (received, sent);
    }
}

fn finish(
    stats: &TcpStats,
    started: Instant,
    end: End,
    route: &L4Route,
    cluster: &Cluster,
    origin: Origin,
    counts: &Counts,
) {
    let duration = started.elapsed();
    stats.closed.increment(1);
    stats.duration.record(duration.as_secs_f64());
    tracing::debug!(
        peer = %origin.peer,
        gateway_port = origin.gateway_port,
        route = %route.name,
        cluster = cluster.name(),
        ?end,
        received = counts.received.load(std::sync::atomic::Ordering::Relaxed),
        sent = counts.sent.load(std::sync::atomic::Ordering::Relaxed),
        duration_ms = duration.as_millis() as u64,
        "stream ended"
    );
}
