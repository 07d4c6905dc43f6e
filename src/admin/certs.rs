//! `/certs`: every credential loaded for terminating servers, as Envoy lists TLS contexts: the
//! chain and client CA certificates with subject, issuer, serial, SANs and validity. Private keys
//! never appear: only certificates are read.

use std::collections::BTreeMap;
use std::net::IpAddr;

use rustls::pki_types::CertificateDer;
use serde_json::json;
use x509_parser::extensions::GeneralName;

use crate::snapshot::Snapshot;
use crate::tls::Credential;

const DAY_SECONDS: i64 = 86_400;

/// `{"certificates": [...]}`, one entry per distinct credential (name and source), with the
/// servers (`ns/gateway port-name`) that use it.
pub fn certificates(snapshot: &Snapshot) -> serde_json::Value {
    let now = unix_now();
    let mut by_credential: BTreeMap<(&str, &str), (&Credential, Vec<String>)> = BTreeMap::new();
    for ((gateway, port), credentials) in &snapshot.credentials {
        for c in credentials {
            let entry = by_credential
                .entry((c.name.as_str(), c.source.as_str()))
                .or_insert_with(|| (c, Vec::new()));
            entry.1.push(format!("{gateway} {port}"));
        }
    }
    let list: Vec<_> = by_credential
        .into_values()
        .map(|(c, mut servers)| {
            servers.sort();
            json!({
                "name": c.name,
                "source": c.source,
                "servers": servers,
                "cert_chain": c.chain.iter().map(|d| certificate(d, &c.source, now)).collect::<Vec<_>>(),
                "ca_cert": c.client_ca.iter().flatten().map(|d| certificate(d, &c.source, now)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "certificates": list })
}

fn certificate(der: &CertificateDer<'_>, path: &str, now: i64) -> serde_json::Value {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return json!({ "path": path, "error": "cannot parse the certificate" });
    };
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    let sans: Vec<_> = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext.value.general_names.iter().filter_map(san).collect(),
        _ => Vec::new(),
    };
    json!({
        "path": path,
        "subject": cert.subject().to_string(),
        "issuer": cert.issuer().to_string(),
        "serial_number": hex(cert.raw_serial()),
        "subject_alt_names": sans,
        "valid_from": rfc3339(not_before),
        "expiration_time": rfc3339(not_after),
        "expiration_unix_seconds": not_after,
        // Envoy counts whole days left, and 0 once expired.
        "days_until_expiration": (not_after - now).max(0) / DAY_SECONDS,
    })
}

/// Envoy's SAN objects: `{"dns": ...}`, `{"uri": ...}`, `{"ip_address": ...}`, `{"email": ...}`.
fn san(name: &GeneralName<'_>) -> Option<serde_json::Value> {
    match name {
        GeneralName::DNSName(d) => Some(json!({ "dns": d })),
        GeneralName::URI(u) => Some(json!({ "uri": u })),
        GeneralName::RFC822Name(e) => Some(json!({ "email": e })),
        GeneralName::IPAddress(bytes) => {
            let ip = match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                _ => None,
            };
            ip.map(|ip| json!({ "ip_address": ip.to_string() }))
        }
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (the civil-from-days algorithm, proleptic Gregorian).
fn rfc3339(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(DAY_SECONDS), unix.rem_euclid(DAY_SECONDS));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn serials_are_lower_hex() {
        assert_eq!(hex(&[0x0a, 0xff, 0x10]), "0aff10");
    }
}
