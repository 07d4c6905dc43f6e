//! Resolving a Gateway server's credential, in Istio's order (reference §1.5): a
//! `<certs-dir>/<name>/` folder, else a `Secret` named `<name>` in the gateway's namespace, then in
//! the Gateway resource's own namespace. Key names: `cert`/`key`/`cacert` before
//! `tls.crt`/`tls.key`/`ca.crt`; the client CA may come from a separate `<name>-cacert`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use super::ocsp::{self, Staple};
use super::pem;
use crate::config::model::SecretData;
use crate::config::{Resource, Spec};

/// Key names that hold a private key.
const PRIVATE_KEYS: &[&str] = &["key", "tls.key"];

/// Key names a credential folder or Secret may carry.
const KNOWN_KEYS: &[&str] = &[
    "cert",
    "key",
    "cacert",
    "crl",
    "tls.crt",
    "tls.key",
    "ca.crt",
    "ca.crl",
    "tls.ocsp-staple",
];

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error(
        "credential {0:?} not found (no folder {1} and no Secret of that name in namespace {2})"
    )]
    NotFound(String, String, String),
    #[error("credential {0:?}: {1}")]
    Unsupported(String, &'static str),
    #[error("credential {name} ({source_desc}): {problem}")]
    Invalid {
        name: String,
        source_desc: String,
        problem: String,
    },
}

/// A validated server credential. `Debug` leaves the private key out.
#[derive(Clone)]
pub struct Credential {
    pub name: String,
    /// Where it came from: a folder path or `Secret ns/name`.
    pub source: String,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
    /// Client CA bundle (MUTUAL / OPTIONAL_MUTUAL) and its CRLs.
    pub client_ca: Option<Vec<CertificateDer<'static>>>,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// The leaf's notAfter, Unix seconds.
    pub not_after: i64,
    /// The OCSP response stapled to handshakes (`tls.ocsp-staple`), when the credential has one.
    pub ocsp: Option<Staple>,
}

/// What a DestinationRule's `credentialName` provides for TLS origination.
#[derive(Debug)]
pub struct UpstreamCredential {
    pub client: Option<Credential>,
    pub ca: Option<Vec<CertificateDer<'static>>>,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
}

/// Key/value material of one credential, before validation.
struct Material {
    source: String,
    entries: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("certificates", &self.chain.len())
            .field("client_ca", &self.client_ca.as_ref().map(Vec::len))
            .field("crls", &self.crls.len())
            .field("not_after", &self.not_after)
            .field("ocsp", &self.ocsp)
            .finish_non_exhaustive()
    }
}

/// Where credentials are looked up.
pub struct Credentials<'a> {
    certs_dir: &'a Path,
    gateway_namespace: &'a str,
    secrets: HashMap<(&'a str, &'a str), &'a SecretData>,
}

impl<'a> Credentials<'a> {
    pub fn new(
        certs_dir: &'a Path,
        gateway_namespace: &'a str,
        resources: &'a [Arc<Resource>],
    ) -> Self {
        let secrets = resources
            .iter()
            .filter_map(|r| match &r.spec {
                Spec::Secret(s) => Some(((r.key.namespace.as_str(), r.key.name.as_str()), s)),
                _ => None,
            })
            .collect();
        Credentials {
            certs_dir,
            gateway_namespace,
            secrets,
        }
    }

    /// Resolves and validates `name` for a Gateway in `gateway_ns`; `client_ca` when the server verifies clients.
    pub fn resolve(
        &self,
        name: &str,
        gateway_ns: &str,
        client_ca: bool,
    ) -> Result<Credential, CredentialError> {
        let name = match name.split_once("://") {
            None => name,
            // istiod's forms for Kubernetes Secrets: `kubernetes://[ns/]name`, `kubernetes-gateway://ns/name`.
            Some(("kubernetes" | "kubernetes-gateway", rest)) => rest,
            Some(("builtin", _)) => {
                let why = "builtin:// (the mesh workload certificate) has no meaning at a standalone gateway";
                return Err(CredentialError::Unsupported(name.into(), why));
            }
            Some(_) => {
                return Err(CredentialError::Unsupported(
                    name.into(),
                    "unsupported credential URI scheme",
                ))
            }
        };
        let material = self.find(name, gateway_ns)?;
        let invalid = |problem: String| CredentialError::Invalid {
            name: name.to_string(),
            source_desc: material.source.clone(),
            problem,
        };
        let (chain, key) = key_pair(&material.entries).map_err(invalid)?;
        let mut credential = validate(name, &material.source, chain, key).map_err(invalid)?;
        credential.ocsp = staple(&material.entries, &credential.chain[0]).map_err(invalid)?;
        if client_ca {
            let ca_material = self
                .find(&format!("{name}-cacert"), gateway_ns)
                .unwrap_or(material);
            let (ca, crls) = client_ca_bundle(&ca_material.entries).map_err(|problem| {
                CredentialError::Invalid {
                    name: name.to_string(),
                    source_desc: ca_material.source.clone(),
                    problem,
                }
            })?;
            credential.client_ca = Some(ca);
            credential.crls = crls;
        }
        Ok(credential)
    }

    /// A DestinationRule's `credentialName` for TLS origination (reference §3.7): the client
    /// certificate and key (required for MUTUAL) and the CA that verifies the upstream, from the
    /// credential itself or its `<name>-cacert`; none means the system's roots.
    pub fn resolve_upstream(
        &self,
        name: &str,
        rule_ns: &str,
        mutual: bool,
    ) -> Result<UpstreamCredential, CredentialError> {
        let name = name.strip_prefix("kubernetes://").unwrap_or(name);
        let material = self.find(name, rule_ns)?;
        let invalid = |source: &str, problem: String| CredentialError::Invalid {
            name: name.to_string(),
            source_desc: source.to_string(),
            problem,
        };
        let client = if mutual {
            let (chain, key) =
                key_pair(&material.entries).map_err(|p| invalid(&material.source, p))?;
            let credential = validate(name, &material.source, chain, key)
                .map_err(|p| invalid(&material.source, p))?;
            Some(credential)
        } else {
            None
        };
        let has_ca = |m: &Material| {
            ["cacert", "ca.crt"]
                .iter()
                .any(|k| m.entries.contains_key(*k))
        };
        let ca_material = Some(material)
            .filter(has_ca)
            .or_else(|| self.find(&format!("{name}-cacert"), rule_ns).ok());
        let (ca, crls) = match &ca_material {
            Some(m) => {
                let (ca, crls) = client_ca_bundle(&m.entries).map_err(|p| invalid(&m.source, p))?;
                (Some(ca), crls)
            }
            None => (None, Vec::new()),
        };
        Ok(UpstreamCredential { client, ca, crls })
    }

    /// The folder first, then the Secret in the gateway's namespace, then in the Gateway's.
    fn find(&self, name: &str, gateway_ns: &str) -> Result<Material, CredentialError> {
        let (explicit_ns, bare) = match name.split_once('/') {
            Some((ns, n)) => (Some(ns), n),
            None => (None, name),
        };
        if bare.is_empty() || bare == "." || bare == ".." || bare.contains('/') {
            return Err(CredentialError::Unsupported(
                name.into(),
                "not a credential name",
            ));
        }
        // Istio honours an explicit namespace only where the gateway may read Secrets.
        if explicit_ns.is_some_and(|ns| ns != self.gateway_namespace && ns != gateway_ns) {
            return Err(CredentialError::Unsupported(
                name.into(),
                "Secrets are read only from the gateway's namespace or the Gateway's own",
            ));
        }
        let folder = self.certs_dir.join(bare);
        if explicit_ns.is_none() && folder.is_dir() {
            return Ok(read_folder(&folder));
        }
        let mut namespaces = match explicit_ns {
            Some(ns) => vec![ns],
            None => vec![self.gateway_namespace, gateway_ns],
        };
        namespaces.dedup();
        namespaces
            .iter()
            .find_map(|ns| self.secrets.get(&(*ns, bare)).map(|s| (ns, s)))
            .map(|(ns, s)| Material {
                source: format!("Secret {ns}/{bare}"),
                entries: s.entries.clone(),
            })
            .ok_or_else(|| {
                CredentialError::NotFound(
                    name.to_string(),
                    folder.display().to_string(),
                    namespaces.join(" or "),
                )
            })
    }
}

/// Reads the known key files of a credential folder (following Kubernetes' `..data` links);
/// a private key file others may read is warned about.
fn read_folder(folder: &Path) -> Material {
    let entries = KNOWN_KEYS
        .iter()
        .filter_map(|k| {
            let path = folder.join(k);
            let bytes = std::fs::read(&path).ok()?;
            if PRIVATE_KEYS.contains(k) {
                super::permissions::warn_if_loose(&path);
            }
            Some(((*k).to_string(), bytes))
        })
        .collect();
    Material {
        source: folder.display().to_string(),
        entries,
    }
}

/// Reads `serverCertificate`/`privateKey` (and for client verification `caCertificates` and
/// `caCrl`) given as file paths.
pub fn from_files(
    cert: &Path,
    key: &Path,
    ca: Option<&Path>,
    crl: Option<&Path>,
) -> Result<Credential, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let chain = pem::certificates(&read(cert)?).map_err(|e| format!("{}: {e}", cert.display()))?;
    let key_der = pem::private_key(&read(key)?).map_err(|e| format!("{}: {e}", key.display()))?;
    super::permissions::warn_if_loose(key);
    let mut credential = validate(
        &cert.display().to_string(),
        &cert.display().to_string(),
        chain,
        key_der,
    )?;
    if let Some(ca) = ca {
        credential.client_ca =
            Some(pem::certificates(&read(ca)?).map_err(|e| format!("{}: {e}", ca.display()))?);
    }
    if let Some(crl) = crl {
        credential.crls = pem::crls(&read(crl)?).map_err(|e| format!("{}: {e}", crl.display()))?;
    }
    Ok(credential)
}

/// Istio's `GetCertInfo`: `cert`+`key` first, then `tls.crt`+`tls.key`.
fn key_pair(
    entries: &BTreeMap<String, Vec<u8>>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let pair = [("cert", "key"), ("tls.crt", "tls.key")]
        .into_iter()
        .find(|(c, k)| entries.contains_key(*c) && entries.contains_key(*k));
    let Some((cert_key, key_key)) = pair else {
        let found: Vec<_> = entries.keys().take(3).map(String::as_str).collect();
        return Err(format!("no certificate and key found: expected keys tls.crt and tls.key (or cert and key); found {found:?}"));
    };
    let (cert, key) = (&entries[cert_key], &entries[key_key]);
    if cert.is_empty() || key.is_empty() {
        return Err(format!(
            "found keys {cert_key} and {key_key} but they were empty"
        ));
    }
    let chain = pem::certificates(cert).map_err(|e| format!("{cert_key}: {e}"))?;
    let key = pem::private_key(key).map_err(|e| format!("{key_key}: {e}"))?;
    Ok((chain, key))
}

/// `tls.ocsp-staple`, validated against the leaf; an empty or missing entry means no staple.
fn staple(
    entries: &BTreeMap<String, Vec<u8>>,
    leaf: &CertificateDer<'_>,
) -> Result<Option<Staple>, String> {
    let Some(der) = entries.get("tls.ocsp-staple").filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("cannot parse the certificate: {e}"))?;
    ocsp::parse(der, parsed.tbs_certificate.raw_serial())
        .map(Some)
        .map_err(|e| format!("tls.ocsp-staple: {e}"))
}

/// `cacert` (+`crl`) first, then `ca.crt` (+`ca.crl`).
fn client_ca_bundle(
    entries: &BTreeMap<String, Vec<u8>>,
) -> Result<
    (
        Vec<CertificateDer<'static>>,
        Vec<CertificateRevocationListDer<'static>>,
    ),
    String,
> {
    let (ca_key, crl_key) = if entries.get("cacert").is_some_and(|v| !v.is_empty()) {
        ("cacert", "crl")
    } else {
        ("ca.crt", "ca.crl")
    };
    let ca = entries
        .get(ca_key)
        .filter(|v| !v.is_empty())
        .ok_or("no client CA found: expected key ca.crt (or cacert)")?;
    let ca = pem::certificates(ca).map_err(|e| format!("{ca_key}: {e}"))?;
    let crls = match entries.get(crl_key) {
        Some(crl) => pem::crls(crl).map_err(|e| format!("{crl_key}: {e}"))?,
        None => Vec::new(),
    };
    Ok((ca, crls))
}

/// The key must match the leaf, and the leaf must be within its validity period.
fn validate(
    name: &str,
    source: &str,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Credential, String> {
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("unsupported private key: {e}"))?;
    let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing_key);
    certified
        .keys_match()
        .map_err(|e| format!("the private key does not match the certificate ({e})"))?;
    let (not_before, not_after) = validity(&chain[0])?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if not_after < now {
        return Err(format!(
            "the certificate expired on {}",
            httpdate_of(not_after)
        ));
    }
    if not_before > now {
        return Err(format!(
            "the certificate is not valid before {}",
            httpdate_of(not_before)
        ));
    }
    Ok(Credential {
        name: name.to_string(),
        source: source.to_string(),
        chain,
        key: Arc::new(key),
        client_ca: None,
        crls: Vec::new(),
        not_after,
        ocsp: None,
    })
}

fn validity(cert: &CertificateDer<'_>) -> Result<(i64, i64), String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| format!("cannot parse the certificate: {e}"))?;
    Ok((
        parsed.validity().not_before.timestamp(),
        parsed.validity().not_after.timestamp(),
    ))
}

fn httpdate_of(unix: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    httpdate::fmt_http_date(time)
}
