//! Host names as Istio treats them: syntax rules and the wildcard algebra of
//! istio/istio `pkg/config/host/name.go` (match, subset, intersection). Pure functions.

use std::net::IpAddr;

/// A Kubernetes DNS-1123 label: lower-case alphanumerics and `-`, at most 63, alphanumeric at both ends.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS label as Istio accepts it in host names (upper case allowed).
fn is_host_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `*`, `*.suffix`, or a plain DNS name (short or fully qualified).
pub fn validate_dns_name(host: &str) -> Result<(), String> {
    if host == "*" {
        return Ok(());
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if host.len() > 253 {
        return Err(format!("host {host:?} is longer than 253 characters"));
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.split('.').all(is_host_label) {
        Ok(())
    } else if host.contains(':') && !host.contains("::") {
        Err(format!("host {host:?} must not contain a port"))
    } else {
        Err(format!(
            "host {host:?} is not a valid DNS name (wildcards are only allowed as a leading `*.`)"
        ))
    }
}

/// Gateway server hosts: `[namespace/]dnsName`, namespace being `*`, `.` or a DNS-1123 label.
pub fn validate_gateway_host(host: &str) -> Result<(), String> {
    let (ns, name) = split_namespace(host);
    if let Some(ns) = ns {
        if ns != "*" && ns != "." && !is_dns1123_label(ns) {
            return Err(format!(
                "namespace {ns:?} in host {host:?} must be `*`, `.` or a namespace name"
            ));
        }
    }
    validate_dns_name(name)
}

/// VirtualService hosts: DNS names, wildcards, `*` or IP addresses; no ports.
pub fn validate_vs_host(host: &str) -> Result<(), String> {
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    validate_dns_name(host)
}

/// Destination and DestinationRule hosts.
pub fn validate_destination_host(host: &str) -> Result<(), String> {
    if host == "*" {
        return Err("`*` is not a routable destination host".into());
    }
    validate_vs_host(host)
}

/// `mesh`, `name`, `ns/name` or legacy `name.ns.svc.cluster.local`.
pub fn validate_gateway_ref(gw: &str) -> Result<(), String> {
    if gw == "mesh" {
        return Ok(());
    }
    let (ns, name) = split_namespace(gw);
    let ns_ok = ns.is_none_or(|ns| ns == "." || is_dns1123_label(ns));
    let name_ok = name
        .split('.')
        .all(|l| is_dns1123_label(l) || l.contains('~'));
    if ns_ok && name_ok {
        Ok(())
    } else {
        Err(format!(
            "{gw:?} is not a gateway reference (`name`, `namespace/name` or `mesh`)"
        ))
    }
}

/// Splits `ns/host` into its parts.
pub fn split_namespace(host: &str) -> (Option<&str>, &str) {
    match host.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, host),
    }
}

/// Whether two host names overlap: equal, or one is a wildcard covering the other (`*` covers all).
pub fn overlaps(a: &str, b: &str) -> bool {
    subset_of(a, b) || subset_of(b, a)
}

/// Whether every name matched by `a` is matched by `b`. A wildcard is never a subset of a plain name.
pub fn subset_of(a: &str, b: &str) -> bool {
    if b == "*" {
        return true;
    }
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (_, None) => a.eq_ignore_ascii_case(b),
        (None, Some(suffix)) => ends_with_ignore_case(a, suffix) && a.len() > suffix.len(),
        (Some(sa), Some(sb)) => ends_with_ignore_case(sa, sb),
    }
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// Istio's gateway/VirtualService host intersection: the more specific of two overlapping names.
pub fn more_specific<'a>(server_host: &'a str, vs_host: &'a str) -> Option<&'a str> {
    if subset_of(vs_host, server_host) {
        Some(vs_host)
    } else if subset_of(server_host, vs_host) {
        Some(server_host)
    } else {
        None
    }
}

/// Expands a short name (no dot, not `*`, not an IP) to `<name>.<ns>.svc.<domain>`.
pub fn resolve_short_name(host: &str, namespace: &str, cluster_domain: &str) -> String {
    if host.contains('.') || host.starts_with('*') || host.parse::<IpAddr>().is_ok() {
        host.to_ascii_lowercase()
    } else {
        format!(
            "{}.{namespace}.svc.{cluster_domain}",
            host.to_ascii_lowercase()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_and_overlap_follow_istio() {
        let cases = [
            ("a.ex.com", "*.ex.com", true),
            ("a.b.ex.com", "*.ex.com", true),
            ("ex.com", "*.ex.com", false),
            ("*.ex.com", "a.ex.com", false),
            ("*.a.ex.com", "*.ex.com", true),
            ("*.ex.com", "*.a.ex.com", false),
            ("anything", "*", true),
            ("A.EX.com", "a.ex.COM", true),
        ];
        for (a, b, want) in cases {
            assert_eq!(subset_of(a, b), want, "subset_of({a}, {b})");
        }
        assert!(overlaps("*.ex.com", "a.ex.com"));
        assert!(!overlaps("ex.com", "*.ex.com"));
    }

    #[test]
    fn intersection_keeps_the_more_specific_name() {
        assert_eq!(more_specific("*.ex.com", "a.ex.com"), Some("a.ex.com"));
        assert_eq!(more_specific("a.ex.com", "*.ex.com"), Some("a.ex.com"));
        assert_eq!(more_specific("*", "*.ex.com"), Some("*.ex.com"));
        assert_eq!(more_specific("*.ex.com", "ex.com"), None);
        assert_eq!(more_specific("*.ex.com", "*"), Some("*.ex.com"));
    }

    #[test]
    fn host_syntax() {
        assert!(validate_gateway_host("ns1/*.example.com").is_ok());
        assert!(validate_gateway_host("./foo.example.com").is_ok());
        assert!(validate_gateway_host("*/*").is_ok());
        assert!(validate_gateway_host("ISTIOD-HOST.DOMAIN").is_ok());
        assert!(validate_gateway_host("Bad_NS/foo.com").is_err());
        assert!(validate_vs_host("foo.com:80").unwrap_err().contains("port"));
        assert!(validate_vs_host("10.0.0.1").is_ok());
        assert!(validate_vs_host("a.*.com").is_err());
        assert!(validate_destination_host("*").is_err());
    }

    #[test]
    fn short_names_expand_relative_to_namespace() {
        assert_eq!(
            resolve_short_name("webapp", "istioinaction", "cluster.local"),
            "webapp.istioinaction.svc.cluster.local"
        );
        assert_eq!(
            resolve_short_name("reviews.prod", "x", "cluster.local"),
            "reviews.prod"
        );
    }
}
