//! How a cluster's connections are made and kept: the connect timeout, TCP keep-alive, HTTP
//! connection reuse limits, and TLS origination (DestinationRule `connectionPool` and `tls`,
//! reference §3.5 and §3.7).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::client::{TlsFailure, UpstreamError};
use crate::tls::client_verify::Pins;

/// Istio's default upstream connect timeout (mesh `connectTimeout`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Istio's default `http.idleTimeout`.
pub const HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// A cluster's connection settings; part of its spec, so equal settings keep the live cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct TransportSpec {
    pub connect_timeout: Duration,
    pub keepalive: Option<Keepalive>,
    /// HTTP requests one connection carries before it is closed; 0 = unlimited.
    pub max_requests_per_connection: u32,
    /// An HTTP connection idle this long is closed.
    pub idle_timeout: Duration,
    /// `tcp.idleTimeout`: replaces `--tcp-idle-timeout` for this cluster's TCP streams.
    pub tcp_idle_timeout: Option<Duration>,
    pub tls: Option<TlsSpec>,
}

impl Default for TransportSpec {
    fn default() -> Self {
        TransportSpec {
            connect_timeout: CONNECT_TIMEOUT,
            keepalive: None,
            max_requests_per_connection: 0,
            idle_timeout: HTTP_IDLE_TIMEOUT,
            tcp_idle_timeout: None,
            tls: None,
        }
    }
}

/// `tcp.tcpKeepalive`; unset fields keep the operating system's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Keepalive {
    pub time: Option<Duration>,
    pub interval: Option<Duration>,
    pub probes: Option<u32>,
}

/// TLS origination (`tls.mode` SIMPLE or MUTUAL).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct TlsSpec {
    /// The SNI to send; unset sends the request's Host (auto SNI), or none for TCP.
    pub sni: Option<String>,
    /// Exact SANs one of which the server certificate must carry.
    pub subject_alt_names: Vec<String>,
    pub insecure_skip_verify: bool,
    /// Where the material came from (files or a credential), for logs and the admin page.
    pub source: String,
    /// The material, or why it could not be loaded (every connection then fails).
    #[serde(skip)]
    pub material: Result<TlsMaterial, String>,
}

/// Trust anchors and the client certificate of an upstream TLS origination.
#[derive(Clone)]
pub struct TlsMaterial {
    /// `None`: the system's roots, as Envoy without `caCertificates`.
    pub roots: Option<Vec<CertificateDer<'static>>>,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    pub client: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
}

impl TlsMaterial {
    /// Every byte that defines the material, for equality and hashing (keys included, never shown).
    fn bytes(&self) -> impl Iterator<Item = &[u8]> {
        let roots = self.roots.iter().flatten().map(|c| c.as_ref());
        let crls = self.crls.iter().map(|c| c.as_ref());
        let client = self.client.iter().flat_map(|(chain, key)| {
            chain
                .iter()
                .map(|c| c.as_ref())
                .chain(std::iter::once(key.secret_der()))
        });
        roots.chain(crls).chain(client)
    }
}

impl PartialEq for TlsMaterial {
    fn eq(&self, other: &Self) -> bool {
        self.roots.is_some() == other.roots.is_some()
            && self.client.is_some() == other.client.is_some()
            && self.bytes().eq(other.bytes())
    }
}

impl Eq for TlsMaterial {}

impl std::hash::Hash for TlsMaterial {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.roots.is_some().hash(state);
        self.client.is_some().hash(state);
        self.bytes().for_each(|b| b.hash(state));
    }
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("roots", &self.roots.as_ref().map(Vec::len))
            .field("crls", &self.crls.len())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

/// A cluster's way to open connections, built once from its [`TransportSpec`].
pub struct Transport {
    pub spec: TransportSpec,
    /// Identifies the settings in pool keys: connections are shared only between equal ones.
    id: u64,
    tls: Option<Result<Origination, TlsFailure>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// Client configurations for one TLS origination: with SNI (HTTP, or a fixed `sni`) and without
/// (TCP streams with auto SNI, which have no Host).
struct Origination {
    with_sni: TlsConnector,
    without_sni: TlsConnector,
    fixed_sni: Option<ServerName<'static>>,
}

impl Transport {
    /// `http2` asks the server for h2 by ALPN, as Envoy does for HTTP/2 clusters only.
    pub fn new(spec: TransportSpec, http2: bool) -> Self {
        let tls = spec.tls.as_ref().map(|tls| match &tls.material {
            Ok(material) => Origination::new(tls, material, http2).map_err(|e| {
                tracing::warn!(source = %tls.source, error = %e, "upstream TLS unavailable");
                TlsFailure::NoCredential
            }),
            Err(_) => Err(TlsFailure::NoCredential),
        });
        Transport {
            id: super::lb::stable_hash(&spec),
            spec,
            tls,
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether the SNI (and so the pooled connection) depends on the request's host.
    pub fn auto_sni(&self) -> bool {
        matches!(&self.tls, Some(Ok(o)) if o.fixed_sni.is_none())
    }

    /// The pool key part of these settings, for a connection made with `sni`.
    pub fn pool_id(&self, sni: Option<&str>) -> u64 {
        match sni {
            Some(sni) => super::lb::stable_hash(&(self.id, sni)),
            None => self.id,
        }
    }

    /// A connection to `addr`: TCP within the connect timeout, then TLS when originating, with
    /// `sni` (the request's host; `None` for TCP streams) unless the rule fixes one.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        sni: Option<&str>,
    ) -> Result<Conn, UpstreamError> {
        let deadline = tokio::time::Instant::now() + self.spec.connect_timeout;
        let tcp = tcp_connect(addr, deadline, self.spec.keepalive.as_ref()).await?;
        let origination = match &self.tls {
            None => return Ok(Conn::Plain(tcp)),
            Some(Err(failure)) => return Err(UpstreamError::Tls(*failure)),
            Some(Ok(o)) => o,
        };
        let auto = sni
            .and_then(|s| ServerName::try_from(s).ok())
            .map(|n| n.to_owned());
        let (connector, name) = match (&origination.fixed_sni, auto) {
            (Some(fixed), _) => (&origination.with_sni, fixed.clone()),
            (None, Some(auto)) => (&origination.with_sni, auto),
            // No SNI is sent; the name only satisfies the API (chain and SAN checks apply).
            (None, None) => (
                &origination.without_sni,
                ServerName::IpAddress(addr.ip().into()),
            ),
        };
        match tokio::time::timeout_at(deadline, connector.connect(name, tcp)).await {
            Ok(Ok(stream)) => Ok(Conn::Tls(Box::new(stream))),
            Ok(Err(e)) => {
                tracing::debug!(%addr, error = %e, "upstream TLS handshake failed");
                Err(UpstreamError::Tls(TlsFailure::of(&e)))
            }
            Err(_) => Err(UpstreamError::Connect(std::io::ErrorKind::TimedOut)),
        }
    }
}

/// A TCP connection to `addr` by `deadline`, with TCP_NODELAY and the cluster's keep-alive.
pub async fn tcp_connect(
    addr: SocketAddr,
    deadline: tokio::time::Instant,
    keepalive: Option<&Keepalive>,
) -> Result<TcpStream, UpstreamError> {
    match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            if let Some(ka) = keepalive {
                set_keepalive(&stream, ka);
            }
            Ok(stream)
        }
        Ok(Err(e)) => Err(UpstreamError::Connect(e.kind())),
        Err(_) => Err(UpstreamError::Connect(std::io::ErrorKind::TimedOut)),
    }
}

fn set_keepalive(stream: &TcpStream, ka: &Keepalive) {
    let mut params = socket2::TcpKeepalive::new();
    if let Some(time) = ka.time {
        params = params.with_time(time);
    }
    if let Some(interval) = ka.interval {
        params = params.with_interval(interval);
    }
    if let Some(probes) = ka.probes {
        params = params.with_retries(probes);
    }
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&params) {
        tracing::debug!(error = %e, "cannot set TCP keep-alive");
    }
}

impl TlsSpec {
    /// Whether a client configuration can be built from this spec (for `tollgate check`).
    pub fn check(&self) -> Result<(), String> {
        let material = self.material.as_ref().map_err(Clone::clone)?;
        Origination::new(self, material, false).map(|_| ())
    }
}

impl Origination {
    fn new(tls: &TlsSpec, material: &TlsMaterial, http2: bool) -> Result<Self, String> {
        let fixed_sni = match &tls.sni {
            Some(sni) => Some(
                ServerName::try_from(sni.as_str())
                    .map_err(|e| format!("sni {sni:?}: {e}"))?
                    .to_owned(),
            ),
            None => None,
        };
        let roots = match &material.roots {
            Some(certs) => {
                let mut store = RootCertStore::empty();
                let (added, _) = store.add_parsable_certificates(certs.iter().cloned());
                if added == 0 {
                    return Err("caCertificates holds no usable CA certificate".into());
                }
                Arc::new(store)
            }
            None => system_roots()?,
        };
        let pins = Pins::new(&tls.subject_alt_names, &[], &[]);
        let check = |sni_sent: bool| {
            if tls.insecure_skip_verify {
                NameCheck::Skip
            } else if !pins.is_empty() {
                NameCheck::SubjectAltNames(pins.clone())
            } else if sni_sent && fixed_sni.is_none() {
                // Auto SAN validation: the certificate must be valid for the request's host.
                NameCheck::ServerName
            } else {
                NameCheck::ChainOnly
            }
        };
        let config = |sni_sent: bool| -> Result<TlsConnector, String> {
            let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
                .with_crls(material.crls.iter().cloned())
                .build()
                .map_err(|e| e.to_string())?;
            let verifier = Arc::new(UpstreamVerifier {
                inner: verifier,
                check: check(sni_sent),
            });
            let builder = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .dangerous()
                .with_custom_certificate_verifier(verifier);
            let mut config = match &material.client {
                Some((chain, key)) => builder
                    .with_client_auth_cert(chain.clone(), key.clone_key())
                    .map_err(|e| format!("client certificate: {e}"))?,
                None => builder.with_no_client_auth(),
            };
            config.enable_sni = sni_sent;
            if http2 {
                config.alpn_protocols = vec![b"h2".to_vec()];
            }
            Ok(TlsConnector::from(Arc::new(config)))
        };
        Ok(Origination {
            with_sni: config(true)?,
            without_sni: config(fixed_sni.is_some())?,
            fixed_sni,
        })
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The system's trust anchors, loaded once.
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            store.add_parsable_certificates(loaded.certs);
            if store.is_empty() {
                return Err("no caCertificates given and no system CA certificates found".into());
            }
            Ok(Arc::new(store))
        })
        .clone()
}

/// What the server certificate must match besides its chain (reference §3.7).
#[derive(Debug)]
enum NameCheck {
    /// The SNI sent (auto SAN validation against the request's host).
    ServerName,
    /// One of `subjectAltNames`, exactly.
    SubjectAltNames(Pins),
    /// The chain alone (`sni` set without `subjectAltNames`, or a TCP stream).
    ChainOnly,
    /// `insecureSkipVerify`: nothing but the handshake signatures.
    Skip,
}

#[derive(Debug)]
struct UpstreamVerifier {
    inner: Arc<WebPkiServerVerifier>,
    check: NameCheck,
}

impl ServerCertVerifier for UpstreamVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if matches!(self.check, NameCheck::Skip) {
            return Ok(ServerCertVerified::assertion());
        }
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        if matches!(self.check, NameCheck::ServerName) {
            return verified;
        }
        // webpki checks the name only after the chain (and revocation): a name error means the
        // chain is good, which is all the other checks need from it.
        if let Err(e) = verified {
            if !is_name_error(&e) {
                return Err(e);
            }
        }
        match &self.check {
            NameCheck::SubjectAltNames(pins) if !pins.admit(end_entity) => Err(
                rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure),
            ),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Whether `e` means "valid chain, other name".
fn is_name_error(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    )
}

/// An upstream connection: plain TCP or TLS over it.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    /// The TCP socket under the stream (for resets).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
