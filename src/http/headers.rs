//! Header hygiene between downstream and upstream, as Envoy does it at the edge (reference §5.2–5.3).

use std::net::IpAddr;

use http::header::{
    Entry, HeaderMap, HeaderName, HeaderValue, CONNECTION, TE, TRANSFER_ENCODING, UPGRADE,
};

use crate::telemetry::access_log::RequestId;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_ENVOY_EXTERNAL_ADDRESS: HeaderName =
    HeaderName::from_static("x-envoy-external-address");
pub const X_ENVOY_UPSTREAM_SERVICE_TIME: HeaderName =
    HeaderName::from_static("x-envoy-upstream-service-time");
pub const X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
pub const X_ENVOY_ATTEMPT_COUNT: HeaderName = HeaderName::from_static("x-envoy-attempt-count");
pub const X_ENVOY_INTERNAL: HeaderName = HeaderName::from_static("x-envoy-internal");

/// `x-envoy-*` request headers Envoy strips from external requests: clients must not steer the proxy.
const ENVOY_INTERNAL: [&str; 16] = [
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-force-trace",
    "x-envoy-ip-tags",
    "x-envoy-original-url",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
];

/// Whether the request asks for a WebSocket (or other) upgrade that must pass through.
/// Only WebSocket upgrades pass through, as Envoy's default `upgrade_configs` allow; any other
/// `Upgrade` (h2c, for one) is dropped as hop-by-hop and the request proxied as usual.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        && headers.get_all(CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// Removes hop-by-hop headers, including those the `Connection` header names. Upgrade requests
/// keep `connection: upgrade` and `upgrade`.
///
/// Runs on every request and response: one pass over the (few) names finds which hop-by-hop
/// fields are there (comparing a standard name is an integer compare), and only those cost a
/// removal (a hash probe each). Allocates only for a repeated `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let present = hop_by_hop_present(headers);
    if present.connection > 0 {
        if present.connection == 1 {
            if let Some(connection) = headers.remove(CONNECTION) {
                remove_named(headers, &connection, keep_upgrade);
            }
        } else {
            let values: Vec<HeaderValue> = headers.get_all(CONNECTION).iter().cloned().collect();
            headers.remove(CONNECTION);
            for connection in &values {
                remove_named(headers, connection, keep_upgrade);
            }
        }
    }
    if present.other {
        headers.remove(TRANSFER_ENCODING);
        headers.remove(KEEP_ALIVE);
        headers.remove(PROXY_CONNECTION);
    }
    if present.upgrade && !keep_upgrade {
        headers.remove(UPGRADE);
    }
    if present.te {
        let te_ok = headers
            .get(TE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
        if !te_ok {
            headers.remove(TE);
        }
    }
    if keep_upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The hop-by-hop fields a header map holds.
#[derive(Default)]
struct HopByHop {
    /// `Connection` field lines.
    connection: usize,
    te: bool,
    upgrade: bool,
    /// `Transfer-Encoding`, `Keep-Alive` or `Proxy-Connection`.
    other: bool,
}

fn hop_by_hop_present(headers: &HeaderMap) -> HopByHop {
    let mut present = HopByHop::default();
    for (name, _) in headers {
        if name == CONNECTION {
            present.connection += 1;
        } else if name == TE {
            present.te = true;
        } else if name == UPGRADE {
            present.upgrade = true;
        } else if name == TRANSFER_ENCODING || name == KEEP_ALIVE || name == PROXY_CONNECTION {
            present.other = true;
        }
    }
    present
}

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes the headers a `Connection` value lists (RFC 9110: those are hop-by-hop too), except
/// `upgrade` on an upgrade. `close` and `keep-alive` name no header worth a lookup.
fn remove_named(headers: &mut HeaderMap, connection: &HeaderValue, keep_upgrade: bool) {
    let Ok(value) = connection.to_str() else {
        return;
    };
    for token in value.split(',').map(str::trim) {
        let skip = token.is_empty()
            || token.eq_ignore_ascii_case("close")
            || token.eq_ignore_ascii_case("keep-alive")
            || (keep_upgrade && token.eq_ignore_ascii_case("upgrade"));
        if !skip {
            // A lookup by `&str` ignores case; a token that is no header name matches nothing.
            headers.remove(token);
        }
    }
}

/// The names present in `headers` that `doomed` selects, in one pass over the (few) names a
/// request carries rather than a hash lookup per candidate; allocates only when one matches.
fn matching_names(headers: &HeaderMap, doomed: impl Fn(&HeaderName) -> bool) -> Vec<HeaderName> {
    headers
        .keys()
        .filter(|name| doomed(name))
        .cloned()
        .collect()
}

/// What the gateway knows about the downstream connection.
pub struct Downstream<'a> {
    /// The client address, preformatted once per connection.
    pub peer: &'a HeaderValue,
    /// The verified client certificate, as `x-forwarded-client-cert`.
    pub client_cert: Option<&'a HeaderValue>,
    pub scheme: &'static str,
    /// `--num-trusted-proxies`: hops in front of the gateway whose headers are believed.
    pub trusted_hops: u32,
}

/// What Envoy's connection manager does to every request on arrival, before routing (so logs and
/// local replies see it too): the client appended to x-forwarded-for, and a fresh x-request-id
/// unless trusted proxies vouch for the client's. Returns the request's id, for its record.
pub fn on_arrival(headers: &mut HeaderMap, peer: &HeaderValue, trusted_hops: u32) -> RequestId {
    append_forwarded_for(headers, peer);
    // One hash for the field whichever way it goes (a lookup, then an insert, was two).
    let fresh = match headers.entry(X_REQUEST_ID) {
        Entry::Occupied(id) if trusted_hops > 0 => return RequestId::of(Some(id.get())),
        Entry::Occupied(mut id) => {
            id.insert(new_request_id());
            id.into_mut()
        }
        Entry::Vacant(slot) => slot.insert(new_request_id()),
    };
    RequestId::of(Some(fresh))
}

/// Request headers towards the upstream (after [`on_arrival`]): XFP overwritten, Envoy-internal
/// headers stripped, the gateway's own markers set.
pub fn prepare_request(headers: &mut HeaderMap, down: &Downstream<'_>) {
    let trusted = down.trusted_hops > 0;
    // Client certificate identity and internal-traffic markers are the gateway's to set, never
    // the client's, whatever proxies are trusted.
    let doomed = matching_names(headers, |name| {
        name == X_FORWARDED_CLIENT_CERT
            || name == X_ENVOY_INTERNAL
            || (!trusted
                && name.as_str().starts_with("x-envoy-")
                && ENVOY_INTERNAL.contains(&name.as_str()))
    });
    for name in doomed {
        headers.remove(name);
    }
    if let Some(xfcc) = down.client_cert {
        headers.insert(X_FORWARDED_CLIENT_CERT, xfcc.clone());
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(down.scheme));
    // Istio turns on attempt counting for gateway routes; retries will count up from here.
    headers.insert(X_ENVOY_ATTEMPT_COUNT, HeaderValue::from_static("1"));
    headers.insert(X_ENVOY_EXTERNAL_ADDRESS, down.peer.clone());
}

fn append_forwarded_for(headers: &mut HeaderMap, peer: &HeaderValue) {
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Vacant(slot) => {
            slot.insert(peer.clone());
        }
        Entry::Occupied(mut field) => {
            let joined = match field.get().to_str() {
                Ok(existing) if !existing.is_empty() => HeaderValue::from_str(&format!(
                    "{existing},{}",
                    peer.to_str().unwrap_or_default()
                ))
                .ok(),
                _ => None,
            };
            // Replaces every x-forwarded-for line, as `insert` does.
            field.insert(joined.unwrap_or_else(|| peer.clone()));
        }
    }
}

fn new_request_id() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static(
        "00000000-0000-4000-8000-000000000000",
    ))
}

/// The client address as a header value, computed once per connection.
pub fn peer_header(peer: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down(peer: &HeaderValue) -> Downstream<'_> {
        Downstream {
            peer,
            client_cert: None,
            scheme: "http",
            trusted_hops: 0,
        }
    }

    #[test]
    fn edge_headers_are_set_and_client_claims_ignored() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        h.insert(X_REQUEST_ID, HeaderValue::from_static("client-chosen"));
        h.insert("x-envoy-retry-on", HeaderValue::from_static("5xx"));
        let peer = peer_header("10.1.2.3".parse().unwrap());
        on_arrival(&mut h, &peer, 0);
        prepare_request(&mut h, &down(&peer));
        assert_eq!(h[X_FORWARDED_FOR], "1.1.1.1,10.1.2.3");
        assert_eq!(h[X_FORWARDED_PROTO], "http");
        assert_ne!(h[X_REQUEST_ID], "client-chosen");
        assert_eq!(h[X_REQUEST_ID].len(), 36);
        assert!(!h.contains_key("x-envoy-retry-on"));
        assert_eq!(h[X_ENVOY_EXTERNAL_ADDRESS], "10.1.2.3");
        assert_eq!(h[X_ENVOY_ATTEMPT_COUNT], "1");
    }

    #[test]
    fn the_request_id_is_the_gateways_unless_trusted_proxies_vouch_for_the_clients() {
        let peer = peer_header("10.1.2.3".parse().unwrap());
        for trusted in [0, 1] {
            let mut h = HeaderMap::new();
            h.append(X_REQUEST_ID, HeaderValue::from_static("client-chosen"));
            h.append(X_REQUEST_ID, HeaderValue::from_static("second"));
            let id = on_arrival(&mut h, &peer, trusted);
            assert_eq!(
                id.as_bytes(),
                h[X_REQUEST_ID].as_bytes(),
                "trusted {trusted}"
            );
            assert_eq!(h.get_all(X_REQUEST_ID).iter().count(), 1 + trusted as usize);
            assert_eq!(h[X_REQUEST_ID] == "client-chosen", trusted > 0);
        }
        let mut h = HeaderMap::new();
        let id = on_arrival(&mut h, &peer, 1);
        assert_eq!(id.as_bytes().len(), 36);
        assert_eq!(id.as_bytes(), h[X_REQUEST_ID].as_bytes());
        assert_eq!(h[X_FORWARDED_FOR], "10.1.2.3");
    }

    #[test]
    fn x_forwarded_for_becomes_one_line_ending_with_the_client() {
        let peer = peer_header("10.1.2.3".parse().unwrap());
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("2.2.2.2"));
        on_arrival(&mut h, &peer, 0);
        let lines: Vec<_> = h.get_all(X_FORWARDED_FOR).iter().collect();
        assert_eq!(lines, ["1.1.1.1,10.1.2.3"]);
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_static(""));
        on_arrival(&mut h, &peer, 0);
        assert_eq!(h[X_FORWARDED_FOR], "10.1.2.3");
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(TE, HeaderValue::from_static("gzip"));
        h.insert("x-app", HeaderValue::from_static("stays"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-app"));
    }

    #[test]
    fn every_connection_header_names_hop_by_hop_headers_in_any_case() {
        let mut h = HeaderMap::new();
        h.append(CONNECTION, HeaderValue::from_static("keep-alive, X-One"));
        h.append(CONNECTION, HeaderValue::from_static("x-TWO,,bad name"));
        h.insert("x-one", HeaderValue::from_static("1"));
        h.insert("x-two", HeaderValue::from_static("2"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(UPGRADE, HeaderValue::from_static("h2c"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert("x-app", HeaderValue::from_static("stays"));
        strip_hop_by_hop(&mut h, false);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["te", "x-app"], "{h:?}");
    }

    #[test]
    fn websocket_upgrades_keep_their_headers() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h[UPGRADE], "websocket");
        assert_eq!(h[CONNECTION], "upgrade");
    }
}
