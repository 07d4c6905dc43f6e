//! A request's consistent-hash key for DestinationRule `consistentHash` (reference §3.4): a
//! header, a cookie (generated, as Envoy does, when the policy has a `ttl` and the request has
//! none), the client's IP, or a query parameter.

use http::request::Parts;
use http::HeaderValue;

use crate::upstream::lb::stable_hash;
use crate::upstream::{CookieHash, HashOn};

/// The request's consistent-hash key, if what the policy hashes on is present; for a cookie
/// with a `ttl` that the request lacks, a generated one and its `Set-Cookie`.
pub fn hash_key(
    on: &HashOn,
    parts: &Parts,
    peer: std::net::SocketAddr,
) -> (Option<u64>, Option<HeaderValue>) {
    let key = match on {
        HashOn::Header(name) => parts
            .headers
            .get(name.as_str())
            .map(|v| stable_hash(&v.as_bytes())),
        HashOn::SourceIp => Some(stable_hash(&peer.ip())),
        HashOn::Cookie(cookie) => match cookie_value(parts, &cookie.name) {
            Some(value) => Some(stable_hash(&value)),
            None => return generated_cookie(cookie, peer),
        },
        HashOn::QueryParameter(name) => parts.uri.query().and_then(|query| {
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| k == name)
                .map(|(_, v)| stable_hash(&v))
        }),
    };
    (key, None)
}

/// The value of cookie `name`, without the quotes a generated cookie carries.
fn cookie_value<'p>(parts: &'p Parts, name: &str) -> Option<&'p str> {
    parts
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// Envoy's generated hash cookie: a hash of the client's address, quoted, with `Max-Age` (none
/// for a zero ttl: a session cookie), the policy's `Path`, and `HttpOnly`.
fn generated_cookie(
    cookie: &CookieHash,
    peer: std::net::SocketAddr,
) -> (Option<u64>, Option<HeaderValue>) {
    let Some(ttl) = cookie.ttl else {
        return (None, None);
    };
    let value = format!("{:016x}", stable_hash(&peer.to_string()));
    let mut header = format!("{}=\"{value}\"", cookie.name);
    if !ttl.is_zero() {
        header.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if let Some(path) = &cookie.path {
        header.push_str(&format!("; Path={path}"));
    }
    header.push_str("; HttpOnly");
    let key = stable_hash(&value.as_str());
    (Some(key), HeaderValue::from_str(&header).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parts(cookie: Option<&str>) -> Parts {
        let mut req = http::Request::builder().uri("/?user=ann");
        if let Some(c) = cookie {
            req = req.header(http::header::COOKIE, c);
        }
        req.body(()).unwrap().into_parts().0
    }

    fn on(ttl: Option<Duration>) -> HashOn {
        HashOn::Cookie(CookieHash {
            name: "user".into(),
            path: Some("/".into()),
            ttl,
        })
    }

    #[test]
    fn a_generated_cookie_hashes_as_the_cookie_sent_back() {
        let peer: std::net::SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let (key, set) = hash_key(&on(Some(Duration::from_secs(60))), &parts(None), peer);
        let set = set.expect("generated").to_str().unwrap().to_string();
        let value = set
            .strip_prefix("user=\"")
            .and_then(|r| r.split_once('"'))
            .unwrap()
            .0;
        assert!(set.ends_with("; Max-Age=60; Path=/; HttpOnly"), "{set}");
        for sent in [format!("user=\"{value}\""), format!("a=b; user={value}")] {
            let (again, none) = hash_key(&on(None), &parts(Some(&sent)), peer);
            assert_eq!(again, key, "{sent}");
            assert!(none.is_none());
        }
    }

    #[test]
    fn without_a_ttl_a_missing_cookie_gives_no_key() {
        let peer: std::net::SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(hash_key(&on(None), &parts(None), peer), (None, None));
        let (_, set) = hash_key(&on(Some(Duration::ZERO)), &parts(None), peer);
        let set = set.unwrap();
        assert!(!set.to_str().unwrap().contains("Max-Age"), "session cookie");
    }

    #[test]
    fn query_parameter_and_header_keys() {
        let peer: std::net::SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let q = hash_key(&HashOn::QueryParameter("user".into()), &parts(None), peer).0;
        assert_eq!(q, Some(stable_hash(&"ann")));
        let h = hash_key(&HashOn::Header("x-user".into()), &parts(None), peer).0;
        assert_eq!(h, None);
    }
}
