//! OCSP stapling: a credential's `tls.ocsp-staple` (a DER `OCSPResponse`, as Envoy's SDS field
//! `ocsp_staple`) is checked enough to never staple something wrong, then sent as is.
//!
//! Checked at load, as Envoy does: the response is `successful` and a basic response, one of its
//! single responses is for the leaf's serial number, and that status is `good`. Its `nextUpdate`
//! is kept: past it, handshakes go on without a staple (Envoy's lenient stapling). The
//! responder's signature is the client's to verify.

/// A validated staple.
#[derive(Clone, PartialEq, Eq)]
pub struct Staple {
    /// The `OCSPResponse`, DER, as it is sent.
    pub der: Vec<u8>,
    /// The matching single response's `nextUpdate`, Unix seconds (`None`: the responder gave none).
    pub next_update: Option<i64>,
}

impl std::fmt::Debug for Staple {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staple")
            .field("bytes", &self.der.len())
            .field("next_update", &self.next_update)
            .finish()
    }
}

/// id-pkix-ocsp-basic (1.3.6.1.5.5.7.48.1.1), DER content bytes.
const OCSP_BASIC: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];

const SEQUENCE: u8 = 0x30;
const ENUMERATED: u8 = 0x0a;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const INTEGER: u8 = 0x02;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0] EXPLICIT` (constructed, context-specific 0).
const EXPLICIT_0: u8 = 0xa0;
/// certStatus `good`: `[0] IMPLICIT NULL`.
const STATUS_GOOD: u8 = 0x80;
const STATUS_REVOKED: u8 = 0xa1;

/// Validates `der` as an OCSP response for the certificate whose serial number (the DER
/// INTEGER's content bytes) is `serial`.
pub fn parse(der: &[u8], serial: &[u8]) -> Result<Staple, String> {
    let next_update = check(der, serial)?;
    Ok(Staple {
        der: der.to_vec(),
        next_update,
    })
}

fn check(der: &[u8], serial: &[u8]) -> Result<Option<i64>, String> {
    let bad = |what: &str| format!("not a DER OCSP response ({what})");
    let (response, rest) = tlv(der, SEQUENCE).map_err(|_| bad("no OCSPResponse"))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    let (status, rest) = tlv(response, ENUMERATED).map_err(|_| bad("no responseStatus"))?;
    if status != [0] {
        let name = match status {
            [1] => "malformedRequest",
            [2] => "internalError",
            [3] => "tryLater",
            [5] => "sigRequired",
            [6] => "unauthorized",
            _ => "unknown",
        };
        return Err(format!(
            "the OCSP response's status is {name}, not successful"
        ));
    }
    let (bytes, _) = tlv(rest, EXPLICIT_0).map_err(|_| bad("no responseBytes"))?;
    let (bytes, _) = tlv(bytes, SEQUENCE).map_err(|_| bad("no responseBytes"))?;
    let (kind, rest) = tlv(bytes, OID).map_err(|_| bad("no responseType"))?;
    if kind != OCSP_BASIC {
        return Err("the OCSP response is not a basic OCSP response".into());
    }
    let (basic, _) = tlv(rest, OCTET_STRING).map_err(|_| bad("no response"))?;
    let (basic, _) = tlv(basic, SEQUENCE).map_err(|_| bad("no BasicOCSPResponse"))?;
    let (data, _) = tlv(basic, SEQUENCE).map_err(|_| bad("no tbsResponseData"))?;
    let mut rest = data;
    // [0] version (optional), responderID ([1] or [2]), producedAt.
    let (tag, _, after) = any(rest).map_err(|_| bad("no responderID"))?;
    if tag == EXPLICIT_0 {
        rest = after;
    }
    let (_, _, after) = any(rest).map_err(|_| bad("no responderID"))?;
    let (_, after) = tlv(after, GENERALIZED_TIME).map_err(|_| bad("no producedAt"))?;
    let (mut responses, _) = tlv(after, SEQUENCE).map_err(|_| bad("no responses"))?;
    let mut seen = 0;
    while !responses.is_empty() {
        let (single, next) = tlv(responses, SEQUENCE).map_err(|_| bad("bad SingleResponse"))?;
        responses = next;
        seen += 1;
        let (cert_id, rest) = tlv(single, SEQUENCE).map_err(|_| bad("no certID"))?;
        let (_, _, id) = any(cert_id).map_err(|_| bad("no hashAlgorithm"))?;
        let (_, id) = tlv(id, OCTET_STRING).map_err(|_| bad("no issuerNameHash"))?;
        let (_, id) = tlv(id, OCTET_STRING).map_err(|_| bad("no issuerKeyHash"))?;
        let (number, _) = tlv(id, INTEGER).map_err(|_| bad("no serialNumber"))?;
        if number != serial {
            continue;
        }
        let (status, _, rest) = any(rest).map_err(|_| bad("no certStatus"))?;
        match status {
            STATUS_GOOD => {}
            STATUS_REVOKED => {
                return Err("the OCSP response says the certificate is revoked".into())
            }
            _ => return Err("the OCSP response's certificate status is unknown".into()),
        }
        let (_, rest) = tlv(rest, GENERALIZED_TIME).map_err(|_| bad("no thisUpdate"))?;
        let next_update = match tlv(rest, EXPLICIT_0) {
            Ok((next, _)) => {
                let (time, _) = tlv(next, GENERALIZED_TIME).map_err(|_| bad("bad nextUpdate"))?;
                Some(generalized_time(time).ok_or_else(|| bad("bad nextUpdate"))?)
            }
            Err(()) => None,
        };
        return Ok(next_update);
    }
    Err(format!(
        "the OCSP response is for another certificate (none of its {seen} response(s) has the leaf's serial number)"
    ))
}

/// One DER element with the expected tag: (content, what follows).
fn tlv(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), ()> {
    match any(input)? {
        (t, content, rest) if t == tag => Ok((content, rest)),
        _ => Err(()),
    }
}

/// One DER element (single-byte tag, definite length): (tag, content, what follows).
fn any(input: &[u8]) -> Result<(u8, &[u8], &[u8]), ()> {
    let (&tag, rest) = input.split_first().ok_or(())?;
    let (&first, mut rest) = rest.split_first().ok_or(())?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return Err(());
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    if rest.len() < len {
        return Err(());
    }
    let (content, rest) = rest.split_at(len);
    Ok((tag, content, rest))
}

/// `YYYYMMDDHHMMSS[.fff]Z` as Unix seconds.
fn generalized_time(text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?;
    let digits = text.strip_suffix('Z')?;
    let digits = digits.split('.').next()?;
    if digits.len() != 14 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| digits[r].parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(8..10)?, num(10..12)?, num(12..14)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DER element with a short-form length.
    fn el(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        if content.len() < 0x80 {
            v.push(content.len() as u8);
        } else {
            v.push(0x82);
            v.extend_from_slice(&(content.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(content);
        v
    }

    /// A minimal successful basic response for `serial` with `status` and an optional nextUpdate.
    fn response(serial: &[u8], status: &[u8], next: Option<&str>) -> Vec<u8> {
        let mut cert_id = el(SEQUENCE, &el(OID, &[0x2b, 0x0e, 0x03, 0x02, 0x1a]));
        cert_id.extend(el(OCTET_STRING, &[1; 20]));
        cert_id.extend(el(OCTET_STRING, &[2; 20]));
        cert_id.extend(el(INTEGER, serial));
        let mut single = el(SEQUENCE, &cert_id);
        single.extend_from_slice(status);
        single.extend(el(GENERALIZED_TIME, b"20250101000000Z"));
        if let Some(next) = next {
            single.extend(el(EXPLICIT_0, &el(GENERALIZED_TIME, next.as_bytes())));
        }
        let mut data = el(0xa2, &el(OCTET_STRING, &[3; 20]));
        data.extend(el(GENERALIZED_TIME, b"20250101000000Z"));
        data.extend(el(SEQUENCE, &el(SEQUENCE, &single)));
        let mut basic = el(SEQUENCE, &data);
        basic.extend(el(
            SEQUENCE,
            &el(OID, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
        ));
        basic.extend(el(0x03, &[0, 9, 9]));
        let mut bytes = el(OID, OCSP_BASIC);
        bytes.extend(el(OCTET_STRING, &el(SEQUENCE, &basic)));
        let mut outer = el(ENUMERATED, &[0]);
        outer.extend(el(EXPLICIT_0, &el(SEQUENCE, &bytes)));
        el(SEQUENCE, &outer)
    }

    #[test]
    fn a_good_response_for_the_leaf_is_accepted_with_its_next_update() {
        let der = response(&[0x01, 0x02], &[STATUS_GOOD, 0], Some("20300102030405Z"));
        let staple = parse(&der, &[0x01, 0x02]).unwrap();
        assert_eq!(staple.next_update, Some(1_893_553_445));
        assert_eq!(staple.der, der);
        let der = response(&[0x01, 0x02], &[STATUS_GOOD, 0], None);
        assert_eq!(parse(&der, &[0x01, 0x02]).unwrap().next_update, None);
    }

    #[test]
    fn wrong_serial_revoked_failed_and_garbage_are_refused() {
        let der = response(&[0x01, 0x02], &[STATUS_GOOD, 0], None);
        let e = parse(&der, &[0x07]).unwrap_err();
        assert!(e.contains("another certificate"), "{e}");
        let revoked = el(STATUS_REVOKED, &el(GENERALIZED_TIME, b"20250101000000Z"));
        let der = response(&[0x07], &revoked, None);
        assert!(parse(&der, &[0x07]).unwrap_err().contains("revoked"));
        let failed = el(SEQUENCE, &el(ENUMERATED, &[3]));
        assert!(parse(&failed, &[0x07]).unwrap_err().contains("tryLater"));
        assert!(parse(b"-----BEGIN", &[0x07])
            .unwrap_err()
            .contains("not a DER"));
        let mut trailing = response(&[0x07], &[STATUS_GOOD, 0], None);
        trailing.push(0);
        assert!(parse(&trailing, &[0x07]).is_err());
    }

    #[test]
    fn generalized_times_convert_to_unix_seconds() {
        assert_eq!(generalized_time(b"19700101000000Z"), Some(0));
        assert_eq!(generalized_time(b"20000301000000Z"), Some(951_868_800));
        assert_eq!(generalized_time(b"20240229235959.5Z"), Some(1_709_251_199));
        assert_eq!(generalized_time(b"2024022923Z"), None);
    }
}
