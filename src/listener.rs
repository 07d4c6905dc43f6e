//! Binds and releases gateway ports as snapshots come and go; accept loops hand each connection to
//! its protocol's server. A port that cannot be bound is an error on its Gateway; every other
//! port keeps serving.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::http::proxy::ConnContext;
use crate::l4::Origin;
use crate::snapshot::l4::L4Route;
use crate::snapshot::{ListenKey, Listener, ListenerKind, Snapshot};
use crate::state::Shared;

/// A gateway port that could not be bound.
#[derive(Debug, Clone, Serialize)]
pub struct BindError {
    pub gateway_port: u16,
    pub address: SocketAddr,
    pub gateways: Vec<String>,
    pub error: String,
}

struct Running {
    address: SocketAddr,
    task: JoinHandle<()>,
    stats: Arc<ListenerStats>,
}

/// A listener's open connections: read by the admin API, kept in step with a gauge.
pub struct ListenerStats {
    active: AtomicU64,
    /// Open connections of every listener, closed ones included (what a drain waits for).
    all: Arc<AtomicU64>,
    gauge: metrics::Gauge,
}

impl ListenerStats {
    fn new(key: ListenKey, all: Arc<AtomicU64>) -> Arc<Self> {
        Arc::new(ListenerStats {
            active: AtomicU64::new(0),
            all,
            gauge: crate::metrics::active_connections_gauge(&listener_name(key)),
        })
    }

    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }
}

/// Counts one connection until its task ends, however it ends (an atomic add and a gauge update;
/// no allocation, no lock).
struct ActiveConnection(Arc<ListenerStats>);

impl ActiveConnection {
    fn open(stats: &Arc<ListenerStats>) -> Self {
        stats.active.fetch_add(1, Ordering::Relaxed);
        stats.all.fetch_add(1, Ordering::Relaxed);
        stats.gauge.increment(1.0);
        ActiveConnection(stats.clone())
    }
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
        self.0.all.fetch_sub(1, Ordering::Relaxed);
        self.0.gauge.decrement(1.0);
    }
}

/// Envoy's listener name: `<bind address>_<gateway port>`, e.g. `0.0.0.0_8443`.
pub fn listener_name(key: ListenKey) -> String {
    format!("{}_{}", key.bind, key.port)
}

/// A running listener as the admin API shows it.
#[derive(Debug, Clone)]
pub struct ListenerInfo {
    pub key: ListenKey,
    pub address: SocketAddr,
    pub active_connections: u64,
}

pub struct Listeners {
    shared: Arc<Shared>,
    port_map: HashMap<u16, u16>,
    running: Mutex<BTreeMap<ListenKey, Running>>,
    errors: Mutex<Vec<BindError>>,
    /// Set by `/drain_listeners`: no port opens again.
    drained: AtomicBool,
    /// Downstream connections open on any listener, running or closed.
    open: Arc<AtomicU64>,
}

impl Listeners {
    pub fn new(shared: Arc<Shared>, port_map: HashMap<u16, u16>) -> Arc<Self> {
        Arc::new(Listeners {
            shared,
            port_map,
            running: Mutex::new(BTreeMap::new()),
            errors: Mutex::new(Vec::new()),
            drained: AtomicBool::new(false),
            open: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Downstream connections still open, on running and closed listeners alike.
    pub fn open_connections(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Waits until every downstream connection has closed, or `timeout` has passed; returns
    /// how many are still open.
    pub async fn wait_closed(&self, timeout: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.open_connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.open_connections()
    }

    /// Running listeners with their bound address and open connections.
    pub fn describe(&self) -> Vec<ListenerInfo> {
        let Ok(running) = self.running.lock() else {
            return Vec::new();
        };
        running
            .iter()
            .map(|(key, r)| ListenerInfo {
                key: *key,
                address: r.address,
                active_connections: r.stats.active(),
            })
            .collect()
    }

    /// Envoy's `/drain_listeners`: closes every listening socket for good; connections already
    /// accepted keep being served. Returns once the sockets are closed.
    pub async fn drain(&self) {
        self.drained.store(true, Ordering::Release);
        let stopped = match self.running.lock() {
            Ok(mut running) => std::mem::take(&mut *running),
            Err(_) => return,
        };
        for (key, r) in stopped {
            r.task.abort();
            // The socket closes when the aborted task's future is dropped.
            let _ = r.task.await;
            println!(
                "CLOSED listener gateway_port={} address={}",
                key.port, r.address
            );
        }
    }

    /// Bound addresses by gateway listener key.
    pub fn addresses(&self) -> Vec<(ListenKey, SocketAddr)> {
        self.running
            .lock()
            .map(|r| r.iter().map(|(k, v)| (*k, v.address)).collect())
            .unwrap_or_default()
    }

    pub fn bind_errors(&self) -> Vec<BindError> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Opens ports the snapshot has and we don't; closes ports it no longer has. Existing
    /// connections on a closed port finish with the snapshot they hold.
    pub fn reconcile(&self, snapshot: &Snapshot) {
        if self.drained.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        let wanted: BTreeMap<ListenKey, &Arc<Listener>> = snapshot
            .listeners
            .iter()
            .filter(|(_, l)| servable(l))
            .map(|(k, l)| (*k, l))
            .collect();
        running.retain(|key, r| {
            let keep = wanted.contains_key(key);
            if !keep {
                r.task.abort();
                println!(
                    "CLOSED listener gateway_port={} address={}",
                    key.port, r.address
                );
            }
            keep
        });
        let mut errors = Vec::new();
        for (key, listener) in wanted {
            if running.contains_key(&key) {
                continue;
            }
            let address = SocketAddr::new(
                key.bind,
                self.port_map.get(&key.port).copied().unwrap_or(key.port),
            );
            match bind(address) {
                Ok(tcp) => {
                    let address = tcp.local_addr().unwrap_or(address);
                    println!(
                        "LISTEN listener gateway_port={} address={address}",
                        key.port
                    );
                    let stats = ListenerStats::new(key, self.open.clone());
                    let task =
                        tokio::spawn(accept_loop(tcp, key, self.shared.clone(), stats.clone()));
                    running.insert(
                        key,
                        Running {
                            address,
                            task,
                            stats,
                        },
                    );
                }
                Err(e) => {
                    crate::metrics::record_bind_error();
                    tracing::error!(gateway_port = key.port, %address, gateways = ?listener.gateways, error = %e, "cannot bind gateway port; other ports keep serving");
                    errors.push(BindError {
                        gateway_port: key.port,
                        address,
                        gateways: listener.gateways.clone(),
                        error: e.to_string(),
                    });
                }
            }
        }
        if let Ok(mut e) = self.errors.lock() {
            *e = errors;
        }
    }
}

/// A port opens when something on it can serve: plain HTTP, a TLS port with a server that
/// terminates or passes through, a TCP port with a route (as in Istio, reference §1.11).
pub(crate) fn servable(listener: &Listener) -> bool {
    match &listener.kind {
        ListenerKind::Http(_) => true,
        ListenerKind::Tls(tls) => tls.serves_anything(),
        ListenerKind::Tcp(route) => route.is_some(),
    }
}

fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    // A server bound to one address and another bound to all may share a port, as in Envoy.
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

async fn accept_loop(
    tcp: TcpListener,
    key: ListenKey,
    shared: Arc<Shared>,
    stats: Arc<ListenerStats>,
) {
    let connections = crate::metrics::connections_counter(key.port);
    let admission = Admission::new(key.port, &shared.settings.limits);
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or similar: back off instead of spinning.
                tracing::warn!(gateway_port = key.port, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !admission.admits(&stats) {
            // Over a limit: closed at once (as Envoy does), before any byte is read.
            continue;
        }
        let _ = stream.set_nodelay(true);
        connections.increment(1);
        let active = ActiveConnection::open(&stats);
        let shared = shared.clone();
        tokio::spawn(async move {
            let _active = active;
            serve(stream, key, peer, shared).await;
        });
    }
}

/// The connection limits, checked on accept: two relaxed loads.
struct Admission {
    global: u64,
    per_listener: u64,
    global_overflow: metrics::Counter,
    listener_overflow: metrics::Counter,
}

impl Admission {
    fn new(gateway_port: u16, limits: &crate::limits::Limits) -> Self {
        Admission {
            global: limits.max_connections,
            per_listener: limits.max_connections_per_listener.unwrap_or(u64::MAX),
            global_overflow: crate::metrics::overflow_counter(gateway_port, "global"),
            listener_overflow: crate::metrics::overflow_counter(gateway_port, "listener"),
        }
    }

    fn admits(&self, stats: &ListenerStats) -> bool {
        if stats.all.load(Ordering::Relaxed) >= self.global {
            self.global_overflow.increment(1);
            tracing::debug!("connection limit (--max-connections) reached: connection closed");
            return false;
        }
        if stats.active() >= self.per_listener {
            self.listener_overflow.increment(1);
            tracing::debug!(
                "listener connection limit (--max-connections-per-listener) reached: connection closed"
            );
            return false;
        }
        true
    }
}

/// Hands a connection to its port's protocol, as the snapshot in force says.
async fn serve(mut stream: TcpStream, key: ListenKey, mut peer: SocketAddr, shared: Arc<Shared>) {
    let mut local = stream.local_addr().ok();
    if shared.settings.proxy_protocol.contains(&key.port) {
        let timeout = shared.settings.limits.tls_inspector_timeout;
        // Boxed: its 1 KiB peek buffer would otherwise widen every connection's task, idle
        // TCP streams' included, for the life of the connection.
        match Box::pin(crate::proxy_protocol::read_header(&mut stream, timeout)).await {
            Ok(Some((source, destination))) => (peer, local) = (source, Some(destination)),
            Ok(None) => {}
            Err(e) => {
                crate::metrics::record_proxy_protocol_error(e.slug());
                tracing::debug!(%peer, gateway_port = key.port, error = %e, "connection closed");
                return;
            }
        }
    }
    let protocol = match shared.snapshot.load().listeners.get(&key).map(|l| &l.kind) {
        Some(ListenerKind::Http(_)) => Protocol::Http,
        Some(ListenerKind::Tls(_)) => Protocol::Tls,
        Some(ListenerKind::Tcp(Some(route))) => Protocol::Tcp(route.clone()),
        // The port closed with a reload between accept and here.
        Some(ListenerKind::Tcp(None)) | None => return,
    };
    // Every long-lived future (TCP and passthrough streams, TLS and HTTP connections) is boxed
    // by itself, so a connection's task holds only what its protocol needs while it is idle.
    let downstream = crate::telemetry::access_log::Downstream {
        local,
        remote: peer,
        sni: None,
    };
    let (stream, prefix, route, origin) = match protocol {
        Protocol::Tcp(route) => {
            let origin = Origin {
                gateway_port: key.port,
                downstream,
            };
            (stream, Bytes::new(), route, origin)
        }
        Protocol::Tls => {
            use crate::tls::terminate::Terminated;
            let tls = crate::tls::terminate::serve(stream, key, downstream, shared.clone());
            match Box::pin(tls).await {
                Some(Terminated::Passthrough(p)) => (p.stream, p.hello, p.route, p.origin),
                Some(Terminated::Https(serving)) => return serving.await,
                None => return,
            }
        }
        Protocol::Http => {
            let peer_header = crate::http::headers::peer_header(peer.ip());
            let conn = ConnContext {
                shared,
                key,
                peer,
                peer_header,
                scheme: "http",
                tls_server: None,
                client_cert: None,
                downstream,
                activity: Default::default(),
            };
            Box::pin(crate::http::server::serve(stream, conn)).await;
            return;
        }
    };
    Box::pin(crate::l4::forward(
        stream,
        prefix,
        &route,
        origin,
        &shared.settings,
    ))
    .await;
}

enum Protocol {
    Http,
    Tls,
    Tcp(Arc<L4Route>),
}

#[cfg(test)]
mod tests {
    /// Every connection's task holds `serve`'s future: its long-lived parts (TCP forwarding, the
    /// TLS handshake, HTTP serving) are boxed on their own, so the task stays small for all.
    #[test]
    fn a_connections_task_stays_small() {
        fn future_size<A, B, C, D, F: std::future::Future>(
            _: impl FnOnce(A, B, C, D) -> F,
        ) -> usize {
            std::mem::size_of::<F>()
        }
        let size = future_size(super::serve);
        assert!(size <= 1024, "listener::serve's future is {size} bytes");
    }
}
