//! A TLS port's connections: read the ClientHello once, pick the server by SNI, then either
//! forward the untouched stream (PASSTHROUGH, peeked bytes first) or terminate with that server's
//! configuration (replaying the peeked bytes into rustls) and serve HTTP with its route table, or
//! a `TLS` server's `tcp` route. An SNI that no server takes gets a TLS `unrecognized_name` alert.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::client_hello::{read_client_hello, ClientHelloInfo};
use super::prefixed::Prefixed;
use crate::http::proxy::{ConnContext, TlsSession};
use crate::l4::Origin;
use crate::metrics::{HandshakeResult, HandshakeStats, SniOutcome};
use crate::snapshot::l4::L4Route;
use crate::snapshot::tls::{TlsAction, TlsListener};
use crate::snapshot::{ListenKey, ListenerKind};
use crate::state::Shared;
use crate::telemetry::access_log::Downstream;

/// Envoy's transport-socket timeout (the ClientHello's is `--tls-inspector-timeout`).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// A fatal `unrecognized_name` (112) alert record, TLS 1.2 framing (understood by every client).
const UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70];

/// A PASSTHROUGH stream for the caller to forward, with the ClientHello bytes already read.
pub struct Passthrough {
    pub stream: TcpStream,
    pub hello: Bytes,
    pub route: Arc<L4Route>,
    pub origin: Origin,
}

/// Where a TLS connection goes once the ClientHello (and the handshake) are done.
pub enum Terminated {
    /// A PASSTHROUGH stream, to be forwarded.
    Passthrough(Passthrough),
    /// An HTTPS connection's HTTP server, to be awaited: boxed by itself, so neither the
    /// handshake's future nor a copy of the TLS stream stays in the connection's task.
    Https(Pin<Box<dyn Future<Output = ()> + Send>>),
}

/// Serves a TLS port's connection; a PASSTHROUGH stream or an HTTPS connection is handed back to
/// the caller, so this future (hello buffer, handshake) is not kept alive for the connection's
/// whole life.
pub async fn serve(
    mut stream: TcpStream,
    key: ListenKey,
    mut downstream: Downstream,
    shared: Arc<Shared>,
) -> Option<Terminated> {
    let peer = downstream.remote;
    let mut buf = BytesMut::with_capacity(2048);
    let limits = &shared.settings.limits;
    let (timeout, max) = (limits.tls_inspector_timeout, limits.max_client_hello_bytes);
    let hello = match read_client_hello(&mut stream, &mut buf, timeout, max).await {
        Ok(hello) => hello,
        Err(e) => {
            crate::metrics::record_client_hello_failure(e.slug());
            tracing::debug!(%peer, gateway_port = key.port, reason = e.slug(), "no usable ClientHello; connection closed");
            return None;
        }
    };
    downstream.sni = hello.sni.as_deref().map(Arc::from);
    let origin = Origin {
        gateway_port: key.port,
        downstream,
    };
    let idle = shared.settings.tcp_idle_timeout;
    let sni = hello.sni.as_deref().unwrap_or("-");
    let (choice, counted) = choose(&shared, key, &hello);
    match choice {
        Choice::Refuse => {
            tracing::debug!(%peer, gateway_port = key.port, sni, "no server for this SNI");
            counted.record(HandshakeResult::NoMatchingServer);
            crate::l4::forward::record_no_route(&origin);
            let _ = stream.write_all(&UNRECOGNIZED_NAME).await;
            let _ = stream.shutdown().await;
        }
        Choice::Close => {
            // A PASSTHROUGH server's host without a tls route: Envoy has no chain and resets.
            tracing::debug!(%peer, gateway_port = key.port, sni, "no tls route for this SNI; connection reset");
            crate::metrics::record_tcp_rejected("no_route");
            crate::l4::forward::record_no_route(&origin);
            crate::l4::relay::abort(&stream);
        }
        Choice::Passthrough(route) => {
            return Some(Terminated::Passthrough(Passthrough {
                stream,
                hello: buf.freeze(),
                route,
                origin,
            }));
        }
        Choice::TerminateTcp(config, route) => {
            if let Some(tls) = handshake(config, buf, stream, peer, &counted).await {
                crate::l4::forward_stream(tls, &route, origin, idle).await;
            }
        }
        Choice::Https(config, session) => {
            let tls = handshake(config, buf, stream, peer, &counted).await?;
            let peer_header = crate::http::headers::peer_header(peer.ip());
            let client_cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(super::xfcc::header);
            let conn = ConnContext {
                shared,
                key,
                peer,
                peer_header,
                scheme: "https",
                tls_server: Some(session),
                client_cert,
                downstream: origin.downstream,
                activity: Default::default(),
            };
            return Some(Terminated::Https(Box::pin(crate::http::server::serve(
                tls, conn,
            ))));
        }
    }
    None
}

/// Completes the handshake with `config`, replaying the peeked bytes; every outcome is counted.
async fn handshake(
    config: Arc<rustls::ServerConfig>,
    peeked: BytesMut,
    stream: TcpStream,
    peer: SocketAddr,
    counted: &Counted,
) -> Option<TlsStream<Prefixed<TcpStream>>> {
    let io = Prefixed::new(peeked.freeze(), stream);
    let server: &str = counted.stats.server_name();
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(io)).await {
        Ok(Ok(tls)) => {
            counted.record(HandshakeResult::Ok);
            Some(tls)
        }
        Ok(Err(e)) => {
            counted.record(failure_kind(&e));
            tracing::debug!(%peer, server, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            counted.record(HandshakeResult::Timeout);
            tracing::debug!(%peer, server, "TLS handshake timed out");
            None
        }
    }
}

/// A client certificate that is missing or does not verify, or anything else.
fn failure_kind(e: &std::io::Error) -> HandshakeResult {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(
            rustls::Error::NoCertificatesPresented
            | rustls::Error::InvalidCertificate(_)
            | rustls::Error::InvalidCertRevocationList(_),
        ) => HandshakeResult::ClientCertRejected,
        _ => HandshakeResult::ProtocolError,
    }
}

/// Where a connection's handshake is counted: its server, and how the SNI chose it.
struct Counted {
    stats: Arc<HandshakeStats>,
    sni: SniOutcome,
}

impl Counted {
    fn record(&self, result: HandshakeResult) {
        self.stats.record(self.sni, result);
    }
}

/// What the SNI selects on this port.
enum Choice {
    Https(Arc<rustls::ServerConfig>, TlsSession),
    TerminateTcp(Arc<rustls::ServerConfig>, Arc<L4Route>),
    Passthrough(Arc<L4Route>),
    /// Selected a PASSTHROUGH server's host that no `tls` route covers.
    Close,
    /// No server, or one that cannot serve: `unrecognized_name`.
    Refuse,
}

fn choose(shared: &Shared, key: ListenKey, hello: &ClientHelloInfo) -> (Choice, Counted) {
    let unmatched = || Counted {
        stats: HandshakeStats::unmatched(),
        sni: SniOutcome::NoMatch,
    };
    let snapshot = shared.snapshot.load();
    let Some(ListenerKind::Tls(listener)) = snapshot.listeners.get(&key).map(|l| &l.kind) else {
        return (Choice::Refuse, unmatched());
    };
    let Some((&index, how)) = select_how(listener, hello.sni.as_deref()) else {
        return (Choice::Refuse, unmatched());
    };
    let server = &listener.servers[index];
    let counted = Counted {
        stats: server.handshakes.clone(),
        sni: how,
    };
    let choice = match &server.action {
        TlsAction::Https {
            config,
            fingerprint,
            ..
        } => Choice::Https(
            config.clone(),
            TlsSession {
                server: server.name.clone(),
                fingerprint: *fingerprint,
                index,
            },
        ),
        TlsAction::TerminateTcp { config, route } => {
            Choice::TerminateTcp(config.clone(), route.clone())
        }
        TlsAction::Passthrough(route) => Choice::Passthrough(route.clone()),
        TlsAction::NoRoute => Choice::Close,
        TlsAction::Unavailable => Choice::Refuse,
    };
    (choice, counted)
}

/// As [`select`], with how the SNI matched.
fn select_how<'l>(listener: &'l TlsListener, sni: Option<&str>) -> Option<(&'l usize, SniOutcome)> {
    use crate::hostmap::HostMatch;
    let Some(name) = sni else {
        return listener.sni.get_nameless().map(|i| (i, SniOutcome::NoSni));
    };
    listener.sni.find(name).map(|(i, how)| {
        let outcome = match how {
            HostMatch::Exact => SniOutcome::Exact,
            HostMatch::Wildcard => SniOutcome::Wildcard,
            HostMatch::Any => SniOutcome::CatchAll,
        };
        (i, outcome)
    })
}

/// Exact SNI, then the longest wildcard, then a `*` server; no SNI only reaches a `*` server.
pub fn select<'l>(listener: &'l TlsListener, sni: Option<&str>) -> Option<&'l usize> {
    match sni {
        Some(name) => listener.sni.get(name),
        None => listener.sni.get_nameless(),
    }
}
