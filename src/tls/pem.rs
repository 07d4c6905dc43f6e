//! The one place that touches `rustls-pemfile` (in maintenance mode upstream): swapping it means
//! rewriting only this module.

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

/// Every certificate in a PEM bundle; an error if there is none.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate found".into());
    }
    Ok(certs)
}

/// The first private key (PKCS#1, PKCS#8 or SEC1).
pub fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| format!("invalid PEM: {e}"))?
        .ok_or_else(|| "no PEM private key found".into())
}

/// Every CRL in a PEM bundle.
pub fn crls(pem: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    rustls_pemfile::crls(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid PEM CRL: {e}"))
}
