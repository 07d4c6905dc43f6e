//! `x-forwarded-client-cert` for requests on a connection that presented a client certificate, as
//! Istio's gateway sets it (SANITIZE_SET: the client's own value is always removed first):
//! `Hash=<sha256 hex>;Cert="<url-encoded PEM>";Subject="<RFC 2253>";URI=<each>;DNS=<each>`.

use base64::Engine;
use http::HeaderValue;
use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

/// The header for a client leaf certificate; `None` if it cannot be parsed.
pub fn header(client: &CertificateDer<'_>) -> Option<HeaderValue> {
    let (_, cert) = x509_parser::parse_x509_certificate(client).ok()?;
    let mut out = format!(
        "Hash={}",
        hex(ring::digest::digest(&ring::digest::SHA256, client).as_ref())
    );
    out.push_str(";Cert=\"");
    url_encode(&pem(client), &mut out);
    out.push_str("\";Subject=\"");
    out.push_str(&rfc2253(&cert.subject().to_string()).replace('"', "\\\""));
    out.push('"');
    let sans = cert.subject_alternative_name().ok().flatten();
    let names = sans.iter().flat_map(|s| s.value.general_names.iter());
    let (mut uris, mut dns) = (String::new(), String::new());
    for name in names {
        match name {
            GeneralName::URI(uri) => {
                uris.push_str(";URI=");
                uris.push_str(uri);
            }
            GeneralName::DNSName(name) => {
                dns.push_str(";DNS=");
                dns.push_str(name);
            }
            _ => {}
        }
    }
    out.push_str(&uris);
    out.push_str(&dns);
    HeaderValue::from_str(&out).ok()
}

/// Lower-case hex, as Envoy prints digests.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters, with lower-case hex as Envoy.
fn url_encode(text: &str, out: &mut String) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            // Envoy's lower-case hex, without a format call per byte.
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            out.push('%');
            out.push(DIGITS[usize::from(b >> 4)] as char);
            out.push(DIGITS[usize::from(b & 0xf)] as char);
        }
    }
}

/// x509-parser prints `C=US, O=Org, CN=name` in certificate order; RFC 2253 (Envoy's format)
/// lists the most specific first, comma-separated: `CN=name,O=Org,C=US`.
fn rfc2253(subject: &str) -> String {
    let mut parts: Vec<&str> = subject.split(", ").collect();
    parts.reverse();
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_print_most_specific_first() {
        assert_eq!(
            rfc2253("C=US, ST=Denial, O=Dis, CN=webapp.istioinaction.io"),
            "CN=webapp.istioinaction.io,O=Dis,ST=Denial,C=US"
        );
    }

    #[test]
    fn describes_the_client_certificate_like_envoy() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["client.example.com".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Dis");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "webapp");
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://cluster.local/ns/a/sa/b".try_into().unwrap(),
        ));
        let cert = params.self_signed(&key).unwrap();
        let value = header(cert.der()).unwrap();
        let text = value.to_str().unwrap();
        let hash = hex(ring::digest::digest(&ring::digest::SHA256, cert.der()).as_ref());
        assert!(
            text.starts_with(&format!(
                "Hash={hash};Cert=\"-----BEGIN%20CERTIFICATE-----%0a"
            )),
            "{text}"
        );
        assert!(
            text.contains(";Subject=\"") && text.contains("CN=webapp"),
            "{text}"
        );
        assert!(
            text.ends_with(";URI=spiffe://cluster.local/ns/a/sa/b;DNS=client.example.com"),
            "{text}"
        );
    }
}
