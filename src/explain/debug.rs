//! Admin `GET /debug/route?port=&scheme=&sni=&host=&path=&method=&header=k:v&format=text`:
//! the explanation of one request against the live snapshot (JSON, or text with `format=text`).

use http::header::{HeaderName, HeaderValue};
use http::{Method, StatusCode};

use super::{explain, Query};
use crate::state::Shared;

/// Status, content type and body of `/debug/route` for the raw query string.
pub fn debug_route(shared: &Shared, query: Option<&str>) -> (StatusCode, &'static str, String) {
    let (mut parsed, text) = match parse(query.unwrap_or("")) {
        Ok(parsed) => parsed,
        Err(e) => {
            let usage = "usage: /debug/route?host=H[&path=/p][&method=GET][&port=N][&scheme=https][&sni=S][&header=k:v]...[&format=text]";
            return (
                StatusCode::BAD_REQUEST,
                "text/plain",
                format!("{e}\n{usage}\n"),
            );
        }
    };
    parsed.https_redirect_port = shared.settings.https_redirect_port;
    parsed.path_normalization = shared.settings.path_normalization;
    let explanation = explain(&shared.snapshot.load(), &parsed);
    if text {
        return (StatusCode::OK, "text/plain", explanation.to_string());
    }
    let json = serde_json::to_string_pretty(&explanation).unwrap_or_default();
    (StatusCode::OK, "application/json", json + "\n")
}

/// The query, and whether text was asked for.
fn parse(raw: &str) -> Result<(Query, bool), String> {
    let mut query = Query::get("", "/");
    let mut text = false;
    let mut host = None;
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value)?;
        match key {
            "host" => host = Some(value),
            "path" => query.path = value,
            "port" => {
                let port = value
                    .parse()
                    .map_err(|_| format!("port {value:?} is not a port number"))?;
                query.port = Some(port);
            }
            "scheme" if value == "http" || value == "https" => query.scheme = Some(value),
            "scheme" => return Err(format!("scheme {value:?} is not http or https")),
            "sni" => query.sni = Some(value),
            "method" => {
                query.method = Method::from_bytes(value.as_bytes())
                    .map_err(|_| format!("method {value:?} is not a method"))?;
            }
            "header" => {
                let (name, value) = parse_header(&value)?;
                query.headers.append(name, value);
            }
            "format" => text = value == "text",
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    query.authority = host.ok_or("host is required")?;
    if !query.path.starts_with('/') {
        query.path.insert(0, '/');
    }
    Ok((query, text))
}

/// `name: value` (or `name:value`) as a request header; shared with the CLI's `-H`.
pub(crate) fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("header {s:?} is not name:value"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("header name {:?} is not valid", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("header value {:?} is not valid", value.trim()))?;
    Ok((name, value))
}

/// `application/x-www-form-urlencoded` value decoding: `%XX` and `+` for space.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-encoding in {s:?}"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_query_string() {
        let (q, text) = parse(
            "host=a.com%3A8080&path=/api%3Fv%3D1&method=POST&header=x-user:+jason&header=x-b:2&port=80&format=text",
        )
        .unwrap();
        assert_eq!(q.authority, "a.com:8080");
        assert_eq!(q.path, "/api?v=1");
        assert_eq!(q.method, Method::POST);
        assert_eq!(q.headers.get("x-user").unwrap(), "jason");
        assert_eq!(q.headers.get("x-b").unwrap(), "2");
        assert_eq!(q.port, Some(80));
        assert!(text);
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(parse("path=/x").unwrap_err().contains("host is required"));
        assert!(parse("host=a&port=x").is_err());
        assert!(parse("host=a&header=nocolon").is_err());
        assert!(parse("host=a&bogus=1").is_err());
        assert!(parse("host=%zz").is_err());
        assert!(parse("host=a&scheme=ftp").is_err());
    }
}
