//! A TLS port's connections: read the ClientHello once, pick the server by SNI, then terminate
//! with that server's configuration (replaying the peeked bytes into rustls) and serve HTTP with
//! its route table. An SNI that no server takes gets a TLS `unrecognized_name` alert.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::client_hello::{read_client_hello, ClientHelloInfo};
use super::prefixed::Prefixed;
use crate::http::proxy::{ConnContext, TlsSession};
use crate::snapshot::tls::{TlsAction, TlsListener};
use crate::snapshot::{ListenKey, ListenerKind};
use crate::state::Shared;

/// Envoy's TLS inspector and transport-socket timeouts.
const PEEK_TIMEOUT: Duration = Duration::from_secs(15);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// A fatal `unrecognized_name` (112) alert record, TLS 1.2 framing (understood by every client).
const UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70];

pub async fn serve(mut stream: TcpStream, key: ListenKey, peer: SocketAddr, shared: Arc<Shared>) {
    let mut buf = BytesMut::with_capacity(2048);
    let hello = match read_client_hello(&mut stream, &mut buf, PEEK_TIMEOUT).await {
        Ok(hello) => hello,
        Err(e) => {
            crate::metrics::record_client_hello_failure(e.slug());
            tracing::debug!(%peer, gateway_port = key.port, reason = e.slug(), "no usable ClientHello; connection closed");
            return;
        }
    };
    let Some((config, server)) = choose(&shared, key, &hello) else {
        tracing::debug!(%peer, gateway_port = key.port, sni = hello.sni.as_deref().unwrap_or("-"), "no server for this SNI");
        crate::metrics::record_tls_handshake("no_matching_server");
        let _ = stream.write_all(&UNRECOGNIZED_NAME).await;
        let _ = stream.shutdown().await;
        return;
    };
    let io = Prefixed::new(buf.freeze(), stream);
    let tls =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(io)).await {
            Ok(Ok(tls)) => {
                crate::metrics::record_tls_handshake("ok");
                tls
            }
            Ok(Err(e)) => {
                crate::metrics::record_tls_handshake("handshake_error");
                tracing::debug!(%peer, server = %server.server, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                crate::metrics::record_tls_handshake("timeout");
                tracing::debug!(%peer, server = %server.server, "TLS handshake timed out");
                return;
            }
        };
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
        tls_server: Some(server),
        client_cert,
    };
    crate::http::server::serve(tls, conn).await;
}

/// The configuration and route-table name of the server the SNI selects, if it can serve.
fn choose(
    shared: &Shared,
    key: ListenKey,
    hello: &ClientHelloInfo,
) -> Option<(Arc<rustls::ServerConfig>, TlsSession)> {
    let snapshot = shared.snapshot.load();
    let ListenerKind::Tls(listener) = &snapshot.listeners.get(&key)?.kind else {
        return None;
    };
    let server = &listener.servers[*select(listener, hello.sni.as_deref())?];
    match &server.action {
        TlsAction::Https {
            config,
            fingerprint,
            ..
        } => Some((
            config.clone(),
            TlsSession {
                server: server.name.clone(),
                fingerprint: *fingerprint,
            },
        )),
        TlsAction::Unavailable(_) => None,
    }
}

/// Exact SNI, then the longest wildcard, then a `*` server; no SNI only reaches a `*` server.
pub fn select<'l>(listener: &'l TlsListener, sni: Option<&str>) -> Option<&'l usize> {
    match sni {
        Some(name) => listener.sni.get(name),
        None => listener.sni.get_nameless(),
    }
}
