//! Client-certificate checks beyond the chain (reference §1.6): when a MUTUAL or OPTIONAL_MUTUAL
//! server lists `subjectAltNames`, the certificate must carry one of them; when it lists
//! `verifyCertificateSpki` or `verifyCertificateHash`, it must match one pin of either list.
//! istiod drops the pins for file-mode certificates; tollgate honours them in both modes.

use std::sync::Arc;

use base64::Engine;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use x509_parser::extensions::GeneralName;

use super::xfcc::hex;

/// What a server's `tls` block pins, normalised for comparison.
#[derive(Debug, Default, Clone, Hash)]
pub struct Pins {
    pub subject_alt_names: Vec<String>,
    /// base64 SHA-256 of the SubjectPublicKeyInfo.
    pub spki: Vec<String>,
    /// Lower-case hex SHA-256 of the certificate, without colons.
    pub hashes: Vec<String>,
}

impl Pins {
    pub fn new(sans: &[String], spki: &[String], hashes: &[String]) -> Self {
        let hashes = hashes
            .iter()
            .map(|h| h.replace(':', "").to_ascii_lowercase())
            .collect();
        Pins {
            subject_alt_names: sans.to_vec(),
            spki: spki.to_vec(),
            hashes,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.subject_alt_names.is_empty() && self.spki.is_empty() && self.hashes.is_empty()
    }

    /// Whether `cert` satisfies the pins (SAN check AND pin check, as Envoy).
    pub fn admit(&self, cert: &CertificateDer<'_>) -> bool {
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
            return false;
        };
        let san_ok = self.subject_alt_names.is_empty()
            || sans(&parsed)
                .iter()
                .any(|s| self.subject_alt_names.contains(s));
        let pinned = !self.spki.is_empty() || !self.hashes.is_empty();
        let pin_ok = !pinned || {
            let hash = hex(ring::digest::digest(&ring::digest::SHA256, cert).as_ref());
            let spki_digest = ring::digest::digest(
                &ring::digest::SHA256,
                parsed.tbs_certificate.subject_pki.raw,
            );
            let spki = base64::engine::general_purpose::STANDARD.encode(spki_digest.as_ref());
            self.hashes.contains(&hash) || self.spki.contains(&spki)
        };
        san_ok && pin_ok
    }
}

/// Every SAN as text, whatever its type (DNS, URI, email, IP), as Istio's exact-string match.
fn sans(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(s) | GeneralName::URI(s) | GeneralName::RFC822Name(s) => {
                Some(s.to_string())
            }
            GeneralName::IPAddress(bytes) => ip_text(bytes),
            _ => None,
        })
        .collect()
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv4Addr::from(b).to_string()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv6Addr::from(b).to_string()),
        _ => None,
    }
}

/// webpki's chain verification, then the pins.
#[derive(Debug)]
pub struct PinnedClientVerifier {
    pub inner: Arc<dyn ClientCertVerifier>,
    pub pins: Pins,
}

impl ClientCertVerifier for PinnedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.pins.admit(end_entity) {
            Ok(verified)
        } else {
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(sans: &[&str]) -> rcgen::Certificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.self_signed(&key).unwrap()
    }

    #[test]
    fn subject_alt_names_and_pins() {
        let c = cert(&["client.example.com"]);
        let der = c.der();
        assert!(Pins::default().admit(der));
        assert!(Pins::new(&["client.example.com".into()], &[], &[]).admit(der));
        assert!(!Pins::new(&["other.example.com".into()], &[], &[]).admit(der));
        let hash = hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref());
        let colons: String = hash
            .as_bytes()
            .chunks(2)
            .map(|p| String::from_utf8_lossy(p).to_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        assert!(
            Pins::new(&[], &[], &[colons]).admit(der),
            "AB:CD form accepted"
        );
        assert!(!Pins::new(&[], &[], &["00".repeat(32)]).admit(der));
        let (_, parsed) = x509_parser::parse_x509_certificate(der).unwrap();
        let spki = base64::engine::general_purpose::STANDARD.encode(
            ring::digest::digest(
                &ring::digest::SHA256,
                parsed.tbs_certificate.subject_pki.raw,
            )
            .as_ref(),
        );
        assert!(
            Pins::new(&[], &[spki], &["00".repeat(32)]).admit(der),
            "either list may match"
        );
        assert!(
            !Pins::new(&["other".into()], &[], &[hash]).admit(der),
            "SAN and pins are both required"
        );
    }
}
