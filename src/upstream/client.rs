//! Pooled upstream connections, shared by every snapshot so a reload keeps warm connections.
//! A pool key is the endpoint address and the cluster's connection settings (and, for TLS with
//! auto SNI, the SNI), so connections are shared only where they are interchangeable.

use std::net::SocketAddr;
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use super::cluster::Cluster;
use super::h1::H1Pool;
use super::h2::H2Pool;
use super::transport::Transport;
use super::UpstreamProtocol;
use http::request::Parts;
use http_body_util::Either;
use hyper::{Request, Response};

/// Why an upstream exchange failed before a response, in Envoy's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// The TCP connection could not be made (refused, timed out, ...).
    Connect(std::io::ErrorKind),
    /// The TLS handshake with the upstream failed.
    Tls(TlsFailure),
    /// The connection closed or reset before response headers.
    Reset,
}

/// Why TLS origination failed, for Envoy's `transport failure reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The server's certificate did not verify (chain, name or `subjectAltNames`).
    CertificateVerifyFailed,
    /// The server ended the handshake with this alert (it wants a client certificate, ...).
    Rejected(rustls::AlertDescription),
    /// The server does not speak TLS.
    Handshake,
    /// The rule's certificates could not be loaded (reported by `tollgate check`).
    NoCredential,
}

impl TlsFailure {
    pub fn of(e: &std::io::Error) -> Self {
        match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            Some(rustls::Error::InvalidCertificate(_)) => TlsFailure::CertificateVerifyFailed,
            Some(rustls::Error::AlertReceived(alert)) => TlsFailure::Rejected(*alert),
            _ => TlsFailure::Handshake,
        }
    }
}

/// Where a pooled connection goes and how it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub addr: SocketAddr,
    pub transport: u64,
}

/// HTTP/1.1 keep-alive pools and multiplexed HTTP/2 connections, by [`PoolKey`].
#[derive(Default)]
pub struct Upstreams {
    http1: H1Pool,
    http2: H2Pool,
}

impl Upstreams {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends the request `head` (origin-form URI, Host header for HTTP/1.1; authority in the URI
    /// for HTTP/2) and `body` to `endpoint` of `cluster`. The head is borrowed: a caller that
    /// may retry keeps it, and HTTP/1.1 writes it out without a copy.
    pub async fn send(
        &self,
        cluster: &Cluster,
        endpoint: SocketAddr,
        head: &Parts,
        body: super::RequestBody,
    ) -> Result<Response<super::ResponseBody>, UpstreamError> {
        let transport = cluster.transport();
        let sni = transport.auto_sni().then(|| request_host(head)).flatten();
        let key = PoolKey {
            addr: endpoint,
            transport: transport.pool_id(sni.as_deref()),
        };
        let connect = Connect {
            transport,
            sni: sni.as_deref(),
        };
        match cluster.spec.protocol {
            UpstreamProtocol::Http2 => {
                // hyper's HTTP/2 client takes the request whole.
                let req = Request::from_parts(clone_head(head), body);
                Ok(self.http2.send(key, connect, req).await?.map(Either::Right))
            }
            UpstreamProtocol::Http1 | UpstreamProtocol::Opaque => {
                let response = self.http1.send(key, connect, head, body).await?;
                Ok(response.map(Either::Left))
            }
        }
    }
}

/// How a pool opens a new connection for a key.
pub struct Connect<'a> {
    pub transport: &'a Transport,
    pub sni: Option<&'a str>,
}

impl Connect<'_> {
    pub async fn open(&self, addr: SocketAddr) -> Result<super::Conn, UpstreamError> {
        self.transport.connect(addr, self.sni).await
    }
}

/// A copy of a request head (method, URI, version, headers; not the extensions).
pub fn clone_head(head: &Parts) -> Parts {
    let mut req = Request::new(());
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = head.uri.clone();
    *req.version_mut() = head.version;
    *req.headers_mut() = head.headers.clone();
    req.into_parts().0
}

/// The host the request is for, without a port: the auto SNI.
fn request_host(head: &Parts) -> Option<String> {
    let authority = match head.uri.authority() {
        Some(a) => a.host(),
        None => {
            let host = head.headers.get(hyper::header::HOST)?.to_str().ok()?;
            crate::route::strip_port(host)
        }
    };
    Some(
        authority
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
}

/// How often pooled connections are checked against their cluster's `idleTimeout`.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// Starts a task that runs `sweep` over a pool every second until the pool is dropped.
pub(super) fn spawn_reaper<T: Send + 'static>(
    pool: Weak<Mutex<T>>,
    sweep: impl Fn(&mut T, Instant) + Send + 'static,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REAP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(pool) = pool.upgrade() else { return };
            let Ok(mut pool) = pool.lock() else { return };
            sweep(&mut pool, Instant::now());
        }
    });
}
