//! A terminating server's rustls configuration: certificate(s), client verification, protocol
//! versions and cipher suites as Istio treats them (reference §1.4), ALPN, and the session
//! resumption state shared by every configuration across reloads.
//!
//! The TLS posture is fixed below what a Gateway can ask for: TLS 1.2 and 1.3 only, ECDHE key
//! exchange (X25519, P-256, P-384) and AEAD ciphers (AES-GCM, ChaCha20-Poly1305) only, the
//! server's suite order, OCSP stapling when the credential carries a response. rustls has no
//! renegotiation, no compression and no CBC, RC4, 3DES, static-RSA or export suites at all.

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
    // The server's order (strongest first), not the client's: what testssl.sh calls "cipher order".
    config.ignore_client_order = true;
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

/// TLS 1.2 suites tollgate offers: ECDHE key exchange (forward secrecy) with an AEAD cipher.
/// Every TLS 1.3 suite is both by construction.
const TLS12_SUITES: &[rustls::CipherSuite] = &[
    rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// Key exchange groups: X25519, then the NIST curves P-256 and P-384 (no finite-field DH).
const KX_GROUPS: &[rustls::NamedGroup] = &[
    rustls::NamedGroup::X25519,
    rustls::NamedGroup::secp256r1,
    rustls::NamedGroup::secp384r1,
];

/// ring's provider held to tollgate's posture (forward-secret AEAD suites, ECDHE groups), then
/// restricted to the listed suites when `cipherSuites` is set. Istio's names are OpenSSL's and
/// apply to TLS 1.2; a suite outside the posture (CBC, static RSA, ...) is dropped with a warning,
/// so a Gateway can narrow the set but never weaken it.
fn provider(names: &[String], warnings: &mut Vec<String>) -> Result<CryptoProvider, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .retain(|s| s.version() == &rustls::version::TLS13 || TLS12_SUITES.contains(&s.suite()));
    provider.kx_groups.retain(|g| KX_GROUPS.contains(&g.name()));
    if names.is_empty() {
        return Ok(provider);
    }
    let wanted: Vec<rustls::CipherSuite> = names
        .iter()
        .filter_map(|name| {
            let suite = openssl_suite(name);
            if suite.is_none() {
                warnings.push(format!("cipher suite {name} is not offered (tollgate offers only forward-secret AEAD suites: ECDHE with AES-GCM or ChaCha20-Poly1305); dropped"));
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

/// Istio's TLS_AUTO is TLS 1.2–1.3. tollgate never speaks TLS 1.0 or 1.1: a minimum or maximum
/// below 1.2 is raised to TLSV1_2, with a warning.
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
    let (mut lo, mut hi) = (rank(min, 12), rank(max, 13));
    if lo < 12 {
        warnings.push(format!("minProtocolVersion {} is below TLS 1.2, which is the lowest tollgate speaks; raised to TLSV1_2", min.unwrap_or_default()));
        lo = 12;
    }
    if hi < 12 {
        warnings.push(format!("maxProtocolVersion {} is below TLS 1.2, which is the lowest tollgate speaks; raised to TLSV1_2", max.unwrap_or_default()));
        hi = 12;
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

/// A credential as rustls serves it: with its OCSP staple while the staple is fresh, and the
/// same certificate without one after the staple's `nextUpdate` (Envoy's lenient stapling).
struct Served {
    stapled: Arc<CertifiedKey>,
    plain: Arc<CertifiedKey>,
    /// The staple's `nextUpdate`, Unix seconds (`None`: no staple, or no `nextUpdate`).
    staple_until: Option<i64>,
}

impl Served {
    fn key(&self, now: i64) -> &Arc<CertifiedKey> {
        match self.staple_until {
            Some(until) if now >= until => &self.plain,
            _ => &self.stapled,
        }
    }
}

fn certified_key(credential: &Credential) -> Result<Served, String> {
    let key = rustls::crypto::ring::sign::any_supported_type(&credential.key)
        .map_err(|e| format!("{}: {e}", credential.name))?;
    let plain = Arc::new(CertifiedKey::new(credential.chain.clone(), key));
    let Some(ocsp) = &credential.ocsp else {
        return Ok(Served {
            stapled: plain.clone(),
            plain,
            staple_until: None,
        });
    };
    let mut stapled = (*plain).clone();
    stapled.ocsp = Some(ocsp.der.clone());
    Ok(Served {
        stapled: Arc::new(stapled),
        plain,
        staple_until: ocsp.next_update,
    })
}

/// `credentialNames` may give an RSA and an ECDSA certificate: serve the first the client can verify.
struct ByClientSupport(Vec<Served>);

impl fmt::Debug for ByClientSupport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ByClientSupport({} certificates)", self.0.len())
    }
}

impl ResolvesServerCert for ByClientSupport {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        let served = self
            .0
            .iter()
            .find(|s| s.plain.key.choose_scheme(schemes).is_some())
            .or_else(|| self.0.first())?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Some(served.key(now).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_forward_secret_aead_suites_and_ecdhe_groups_are_offered() {
        let mut warnings = Vec::new();
        let provider = provider(&[], &mut warnings).unwrap();
        assert!(warnings.is_empty());
        let names: Vec<String> = provider
            .cipher_suites
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert_eq!(names.len(), 9, "3 TLS 1.3 + 6 TLS 1.2 suites: {names:?}");
        for name in &names {
            let tls13 = name.starts_with("TLS13_");
            let fs_aead = name.starts_with("TLS_ECDHE_")
                && (name.contains("_GCM_") || name.contains("CHACHA20_POLY1305"));
            assert!(tls13 || fs_aead, "{name} is neither TLS 1.3 nor ECDHE+AEAD");
        }
        let groups: Vec<_> = provider.kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(groups, KX_GROUPS);
    }

    #[test]
    fn cipher_suites_narrow_but_never_weaken() {
        let mut warnings = Vec::new();
        let names = [
            "AES128-SHA",
            "ECDHE-RSA-AES128-SHA",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ]
        .map(String::from);
        let provider = provider(&names, &mut warnings).unwrap();
        let tls12: Vec<_> = provider
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .map(|s| s.suite())
            .collect();
        assert_eq!(
            tls12,
            [rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("AES128-SHA") && warnings[0].contains("dropped"));
    }

    #[test]
    fn a_staple_is_served_until_its_next_update_then_left_out() {
        let cert = rcgen::generate_simple_self_signed(vec!["staple.test".into()]).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).unwrap();
        let credential = Credential {
            name: "staple".into(),
            source: "test".into(),
            chain: vec![cert.cert.der().clone()],
            key: Arc::new(key),
            client_ca: None,
            crls: Vec::new(),
            not_after: 0,
            ocsp: Some(super::super::ocsp::Staple {
                der: vec![0x30, 0x00],
                next_update: Some(1_000),
            }),
        };
        let served = certified_key(&credential).unwrap();
        assert_eq!(served.key(999).ocsp.as_deref(), Some(&[0x30, 0x00][..]));
        assert_eq!(served.key(1_000).ocsp, None, "stale at nextUpdate");
        let plain = certified_key(&Credential {
            ocsp: None,
            ..credential
        })
        .unwrap();
        assert_eq!(plain.key(0).ocsp, None);
    }

    #[test]
    fn versions_below_tls12_are_raised_with_a_warning() {
        let mut warnings = Vec::new();
        let v = versions(Some("TLSV1_0"), Some("TLSV1_1"), &mut warnings).unwrap();
        assert_eq!(v, [&rustls::version::TLS12]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("minProtocolVersion TLSV1_0"));
        assert!(warnings[1].contains("maxProtocolVersion TLSV1_1"));
        let mut warnings = Vec::new();
        let v = versions(None, None, &mut warnings).unwrap();
        assert_eq!(v, [&rustls::version::TLS12, &rustls::version::TLS13]);
        assert!(warnings.is_empty());
        assert!(versions(Some("TLSV1_3"), Some("TLSV1_2"), &mut warnings).is_err());
    }
}
