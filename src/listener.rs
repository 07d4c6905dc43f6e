//! Binds and releases gateway ports as snapshots come and go; accept loops hand each connection to
//! its protocol's server. A port that cannot be bound is an error on its Gateway; every other
//! port keeps serving.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
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
}

pub struct Listeners {
    shared: Arc<Shared>,
    port_map: HashMap<u16, u16>,
    running: Mutex<BTreeMap<ListenKey, Running>>,
    errors: Mutex<Vec<BindError>>,
}

impl Listeners {
    pub fn new(shared: Arc<Shared>, port_map: HashMap<u16, u16>) -> Arc<Self> {
        Arc::new(Listeners {
            shared,
            port_map,
            running: Mutex::new(BTreeMap::new()),
            errors: Mutex::new(Vec::new()),
        })
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
                    let task = tokio::spawn(accept_loop(tcp, key, self.shared.clone()));
                    running.insert(key, Running { address, task });
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

async fn accept_loop(tcp: TcpListener, key: ListenKey, shared: Arc<Shared>) {
    let connections = crate::metrics::connections_counter(key.port);
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
        let _ = stream.set_nodelay(true);
        connections.increment(1);
        tokio::spawn(serve(stream, key, peer, shared.clone()));
    }
}

/// Hands a connection to its port's protocol, as the snapshot in force says.
async fn serve(stream: TcpStream, key: ListenKey, peer: SocketAddr, shared: Arc<Shared>) {
    let protocol = match shared.snapshot.load().listeners.get(&key).map(|l| &l.kind) {
        Some(ListenerKind::Http(_)) => Protocol::Http,
        Some(ListenerKind::Tls(_)) => Protocol::Tls,
        Some(ListenerKind::Tcp(Some(route))) => Protocol::Tcp(route.clone()),
        // The port closed with a reload between accept and here.
        Some(ListenerKind::Tcp(None)) | None => return,
    };
    // Long-lived streams (TCP, passthrough) end up in `forward` here, at the top of the task:
    // the TLS and HTTP futures are boxed and gone by then, so an idle stream's task stays small.
    let (stream, prefix, route) = match protocol {
        Protocol::Tcp(route) => (stream, Bytes::new(), route),
        Protocol::Tls => {
            let tls = crate::tls::terminate::serve(stream, key, peer, shared.clone());
            match Box::pin(tls).await {
                Some(passthrough) => (passthrough.stream, passthrough.hello, passthrough.route),
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
            };
            Box::pin(crate::http::server::serve(stream, conn)).await;
            return;
        }
    };
    let origin = Origin {
        gateway_port: key.port,
        peer,
    };
    crate::l4::forward(stream, prefix, &route, origin, &shared.settings).await;
}

enum Protocol {
    Http,
    Tls,
    Tcp(Arc<L4Route>),
}
