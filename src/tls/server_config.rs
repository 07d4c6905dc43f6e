//! A terminating server's rustls configuration: certificate(s), client verification, protocol
//! versions and cipher suites as Istio treats them (reference §1.4), ALPN, and the session
//! resumption state shared by every configuration across reloads.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use rustls::crypto::CryptoProvider;
use rustls::server::{
    ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache,
    WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};

use super::credential::Credential;

/// Session tickets and IDs, one ticket key and cache per security policy (a server's hosts,
/// client-auth mode, CA, CRLs and pins, hashed into a fingerprint). Kept for the process's life,
/// so reloads that leave a policy unchanged keep resumption working; a session issued under one
/// policy cannot resume under another (its ticket does not decrypt and its ID is unknown), so a
/// server that turns MUTUAL or gains a CRL verifies every client again.
#[derive(Debug, Clone)]
pub struct Resumption {
    enabled: bool,
    by_policy: Arc<Mutex<HashMap<u64, PolicySessions>>>,
}

#[derive(Debug, Clone)]
struct PolicySessions {
    ticketer: Arc<dyn ProducesTickets>,
    cache: Arc<ServerSessionMemoryCache>,
}

/// Policies remembered at most; beyond, the oldest sessions are simply forgotten.
const MAX_POLICIES: usize = 4096;

impl Resumption {
    /// No tickets and no session cache: every handshake is a full one.
    pub fn disabled() -> Self {
        Resumption {
            enabled: false,
            by_policy: Arc::default(),
        }
    }

    /// Resumption on (TLS 1.3 tickets, TLS 1.2 session IDs), or off (`--no-session-resumption`).
    pub fn new(enabled: bool) -> Self {
        Resumption {
            enabled,
            by_policy: Arc::default(),
        }
    }

    fn for_policy(&self, fingerprint: u64) -> Result<Option<PolicySessions>, String> {
        if !self.enabled {
            return Ok(None);
        }
        let mut map = self
            .by_policy
            .lock()
            .map_err(|_| "resumption state poisoned".to_string())?;
        if let Some(sessions) = map.get(&fingerprint) {
            return Ok(Some(sessions.clone()));
        }
        if map.len() >= MAX_POLICIES {
            map.clear();
        }
        let ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|e| format!("session tickets: {e}"))?;
        let sessions = PolicySessions {
            ticketer,
            cache: ServerSessionMemoryCache::new(4096),
        };
        map.insert(fingerprint, sessions.clone());
        Ok(Some(sessions))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientAuth {
    None,
    Required,
    Optional,
}

/// What a Gateway server's `tls` block asks for, resolved.
pub struct TlsSettings<'a> {
    pub credentials: &'a [Credential],
    pub client_auth: ClientAuth,
    pub min_version: Option<&'a str>,
    pub max_version: Option<&'a str>,
    pub cipher_suites: &'a [String],
    /// `subjectAltNames`, `verifyCertificateSpki`, `verifyCertificateHash` for client certificates.
    pub pins: super::client_verify::Pins,
    /// The server's security policy, hashed (see [`Resumption`]).
    pub fingerprint: u64,
    /// HTTPS offers ALPN `h2` and `http/1.1`; a `TLS` server forwarding opaque bytes offers none.
    pub http: bool,
}

/// Builds the configuration; warnings say what was adjusted (a version below 1.2, a suite rustls lacks).
pub fn build(
    settings: &TlsSettings<'_>,
    resumption: &Resumption,
) -> Result<(Arc<ServerConfig>, Vec<String>), String> {
    let mut warnings = Vec::new();
    let provider = Arc::new(provider(settings.cipher_suites, &mut warnings)?);
    let versions = versions(settings.min_version, settings.max_version, &mut warnings)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("no usable TLS version and cipher suite: {e}"))?;
    let builder = match client_verifier(settings, provider)? {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let keys = settings
        .credentials
        .iter()
        .map(certified_key)
        .collect::<Result<Vec<_>, _>>()?;
    let mut config = builder.with_cert_resolver(Arc::new(ByClientSupport(keys)));
    if settings.http {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    match resumption.for_policy(settings.fingerprint)? {
        Some(sessions) => {
            config.ticketer = sessions.ticketer;
            config.session_storage = sessions.cache;
        }
        None => {
            config.send_tls13_tickets = 0;
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        }
    }
    Ok((Arc::new(config), warnings))
}

/// ring's provider, restricted to the listed suites when `cipherSuites` is set. Istio's names
/// are OpenSSL's and apply to TLS 1.2; rustls has no CBC suites, so those are dropped with a warning.
fn provider(names: &[String], warnings: &mut Vec<String>) -> Result<CryptoProvider, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    if names.is_empty() {
        return Ok(provider);
    }
    let wanted: Vec<rustls::CipherSuite> = names
        .iter()
        .filter_map(|name| {
            let suite = openssl_suite(name);
            if suite.is_none() {
                warnings.push(format!("cipher suite {name} is not available (rustls offers only AEAD suites); dropped"));
            }
            suite
        })
        .collect();
    provider
        .cipher_suites
        .retain(|s| s.version() == &rustls::version::TLS13 || wanted.contains(&s.suite()));
    if !provider
        .cipher_suites
        .iter()
        .any(|s| s.version() == &rustls::version::TLS12)
    {
        warnings.push(
            "no listed cipher suite is usable for TLS 1.2; only TLS 1.3 suites remain".into(),
        );
    }
    Ok(provider)
}

fn openssl_suite(name: &str) -> Option<rustls::CipherSuite> {
    use rustls::CipherSuite::*;
    Some(match name {
        "ECDHE-ECDSA-AES128-GCM-SHA256" => TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-ECDSA-AES256-GCM-SHA384" => TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-ECDSA-CHACHA20-POLY1305" => TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "ECDHE-RSA-AES128-GCM-SHA256" => TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-RSA-AES256-GCM-SHA384" => TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-RSA-CHACHA20-POLY1305" => TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        _ => return None,
    })
}

/// Istio's TLS_AUTO is TLS 1.2–1.3. rustls has no TLS 1.0/1.1: a lower minimum becomes 1.2.
fn versions(
    min: Option<&str>,
    max: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let rank = |v: Option<&str>, default: u8| match v {
        Some("TLSV1_0") => 10,
        Some("TLSV1_1") => 11,
        Some("TLSV1_2") => 12,
        Some("TLSV1_3") => 13,
        _ => default,
    };
    let (mut lo, hi) = (rank(min, 12), rank(max, 13));
    if lo < 12 {
        warnings.push(format!("minProtocolVersion {} is below TLS 1.2, which is the lowest tollgate speaks; raised to TLSV1_2", min.unwrap_or_default()));
        lo = 12;
    }
    let versions: Vec<_> = [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
        .into_iter()
        .filter(|(v, _)| (lo..=hi).contains(v))
        .map(|(_, v)| v)
        .collect();
    if versions.is_empty() {
        return Err(format!(
            "no TLS version between {} and {} is available (tollgate speaks TLS 1.2 and 1.3)",
            min.unwrap_or("TLS_AUTO"),
            max.unwrap_or("TLS_AUTO")
        ));
    }
    Ok(versions)
}

fn client_verifier(
    settings: &TlsSettings<'_>,
    provider: Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>, String> {
    if settings.client_auth == ClientAuth::None {
        return Ok(None);
    }
    let Some(first) = settings.credentials.first() else {
        return Err("no credential".into());
    };
    let Some(ca) = &first.client_ca else {
        return Err("MUTUAL and OPTIONAL_MUTUAL need a client CA (ca.crt)".into());
    };
    let mut roots = RootCertStore::empty();
    for cert in ca {
        roots
            .add(cert.clone())
            .map_err(|e| format!("client CA certificate rejected: {e}"))?;
    }
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .with_crls(first.crls.iter().cloned());
    if settings.client_auth == ClientAuth::Optional {
        builder = builder.allow_unauthenticated();
    }
    let verifier = builder
        .build()
        .map_err(|e| format!("client verification: {e}"))?;
    if settings.pins.is_empty() {
        return Ok(Some(verifier));
    }
    let pins = settings.pins.clone();
    Ok(Some(Arc::new(super::client_verify::PinnedClientVerifier {
        inner: verifier,
        pins,
    })))
}

fn certified_key(credential: &Credential) -> Result<Arc<CertifiedKey>, String> {
    let key = rustls::crypto::ring::sign::any_supported_type(&credential.key)
        .map_err(|e| format!("{}: {e}", credential.name))?;
    Ok(Arc::new(CertifiedKey::new(credential.chain.clone(), key)))
}

/// `credentialNames` may give an RSA and an ECDSA certificate: serve the first the client can verify.
struct ByClientSupport(Vec<Arc<CertifiedKey>>);

impl fmt::Debug for ByClientSupport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ByClientSupport({} certificates)", self.0.len())
    }
}

impl ResolvesServerCert for ByClientSupport {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        self.0
            .iter()
            .find(|k| k.key.choose_scheme(schemes).is_some())
            .or_else(|| self.0.first())
            .cloned()
    }
}
