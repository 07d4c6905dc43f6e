//! HTTP routing as Envoy does it for Istio gateways: virtual host by Host (exact, then longest
//! wildcard suffix, then `*`), then the first route whose match applies. Pure: no IO, no
//! allocation per request on the matching path.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, Method};
use regex::Regex;

use crate::hostmap::HostMap;
use crate::upstream::Cluster;

/// Compiles an Istio (RE2) regex for a full-string match, as Envoy's safe_regex does.
pub fn compile_regex(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
}

/// Compiled regexes by pattern. Each snapshot keeps the ones it uses, and the next compile starts
/// from them: compiling a regex costs tens of microseconds, and configs repeat patterns.
#[derive(Debug, Default, Clone)]
pub struct RegexCache(HashMap<Box<str>, Regex>);

impl RegexCache {
    /// The compiled `pattern`, from this cache, else from `previous`, else compiled now.
    pub fn get(&mut self, previous: &RegexCache, pattern: &str) -> Option<Regex> {
        if let Some(re) = self.0.get(pattern) {
            return Some(re.clone());
        }
        let re = match previous.0.get(pattern) {
            Some(re) => re.clone(),
            None => compile_regex(pattern).ok()?,
        };
        self.0.insert(pattern.into(), re.clone());
        Some(re)
    }
}

/// The request facts routing looks at.
pub struct RequestView<'a> {
    /// Path without the query string.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub method: &'a Method,
    pub scheme: &'a str,
    /// Host or `:authority` as received (port included).
    pub authority: &'a str,
    pub headers: &'a HeaderMap,
}

/// One route table: `http.<port>` for a plaintext port, one per HTTPS server otherwise.
#[derive(Debug, Default)]
pub struct RouteTable {
    pub name: String,
    pub vhosts: Vec<VirtualHost>,
    /// Index into `vhosts` by domain.
    domains: HostMap<usize>,
}

#[derive(Debug)]
pub struct VirtualHost {
    /// The domain, lower-cased: `a.example.com`, `*.example.com` or `*`.
    pub domain: String,
    /// Shared: a VirtualService's routes serve every host name it attaches to.
    pub routes: Vec<Arc<Route>>,
    /// Plain HTTP servers with `tls.httpsRedirect`: every request is redirected before routing.
    pub https_redirect: bool,
}

#[derive(Debug, Clone)]
pub struct Route {
    /// `<ns>/<virtualservice>` and the rule's position, for logs and explanations.
    pub name: String,
    /// Envoy's route name, `%ROUTE_NAME%` in access logs: the rule's `name`, with `.<match name>`
    /// when the match has one; none for unnamed rules.
    pub log_name: Option<Box<str>>,
    pub matcher: RouteMatch,
    pub action: Action,
    /// Timeout, retries, fault, rewrite and headers of a forwarding rule (shared by its matches).
    pub policy: Arc<crate::policy::RoutePolicy>,
}

#[derive(Debug, Clone)]
pub enum Action {
    Forward(WeightedClusters),
    Redirect(Redirect),
    Direct(DirectReply),
}

#[derive(Debug, Clone)]
pub struct Redirect {
    pub code: u16,
    pub scheme: Option<String>,
    pub authority: Option<String>,
    pub port: Option<u16>,
    pub uri: Option<String>,
    /// `derivePort: FROM_REQUEST_PORT` uses the gateway port the request arrived on.
    pub port_from_request: bool,
}

#[derive(Debug, Clone)]
pub struct DirectReply {
    pub status: u16,
    pub body: bytes::Bytes,
}

/// Where a route's traffic goes: clusters with cumulative weights.
#[derive(Debug, Clone)]
pub struct WeightedClusters {
    targets: Vec<(u64, Target)>,
    total: u64,
    /// `route[].headers` of each target, in `targets` order; empty when no destination has any.
    headers: Vec<Option<Arc<crate::policy::DestinationHeaders>>>,
}

/// A destination as a rule lists it: weight, target and its own header operations.
pub type WeightedDestination = (
    Option<i64>,
    Target,
    Option<Arc<crate::policy::DestinationHeaders>>,
);

/// A destination: its cluster, or the name of a cluster that does not exist (503 `NC`).
#[derive(Debug, Clone)]
pub enum Target {
    Cluster(Arc<Cluster>),
    Missing(Arc<str>),
}

impl WeightedClusters {
    /// Istio's rule: one destination takes everything; otherwise zero weights drop out and the
    /// rest share by `weight / sum` (weights absent on several destinations count as equal).
    pub fn new(destinations: Vec<(Option<i64>, Target)>) -> Self {
        Self::with_headers(
            destinations
                .into_iter()
                .map(|(w, t)| (w, t, None))
                .collect(),
        )
    }

    /// As [`Self::new`], each destination with its own header operations.
    pub fn with_headers(destinations: Vec<WeightedDestination>) -> Self {
        let single = destinations.len() == 1;
        let all_unset = destinations.iter().all(|(w, _, _)| w.is_none());
        let any_headers = destinations.iter().any(|(_, _, h)| h.is_some());
        let mut total = 0u64;
        let mut targets = Vec::with_capacity(destinations.len());
        let mut headers = Vec::new();
        for (weight, target, ops) in destinations {
            let w = if single || all_unset {
                1
            } else {
                weight.unwrap_or(0).max(0) as u64
            };
            if w > 0 {
                total = total.saturating_add(w);
                targets.push((total, target));
                if any_headers {
                    headers.push(ops);
                }
            }
        }
        WeightedClusters {
            targets,
            total,
            headers,
        }
    }

    /// Picks a target; `roll` is a uniform random number (tests pass their own).
    pub fn pick(&self, roll: u64) -> Option<&Target> {
        self.pick_index(roll).map(|i| &self.targets[i].1)
    }

    /// Picks a target with its destination's header operations, if it has any.
    pub fn pick_with_headers(
        &self,
        roll: u64,
    ) -> Option<(&Target, Option<&Arc<crate::policy::DestinationHeaders>>)> {
        let i = self.pick_index(roll)?;
        let headers = self.headers.get(i).and_then(Option::as_ref);
        Some((&self.targets[i].1, headers))
    }

    fn pick_index(&self, roll: u64) -> Option<usize> {
        if self.targets.len() == 1 {
            return Some(0);
        }
        let point = roll % self.total.max(1);
        let i = self
            .targets
            .partition_point(|(cumulative, _)| *cumulative <= point);
        (i < self.targets.len()).then_some(i)
    }

    /// Each target with its own weight (not cumulative) and the total, for explanations.
    pub fn weighted_targets(&self) -> (Vec<(u64, &Target)>, u64) {
        let mut previous = 0;
        let list = self
            .targets
            .iter()
            .map(|(cumulative, t)| {
                let w = cumulative - previous;
                previous = *cumulative;
                (w, t)
            })
            .collect();
        (list, self.total)
    }

    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.targets.iter().map(|(_, t)| t)
    }
}

/// A compiled `HTTPMatchRequest`; every present condition must hold.
#[derive(Debug, Default, Clone)]
pub struct RouteMatch {
    pub uri: Option<UriMatch>,
    pub method: Option<StrMatch>,
    pub scheme: Option<StrMatch>,
    pub authority: Option<StrMatch>,
    pub headers: Vec<(http::HeaderName, StrMatch)>,
    pub without_headers: Vec<(http::HeaderName, StrMatch)>,
    pub query: Vec<(String, StrMatch)>,
}

#[derive(Debug, Clone)]
pub struct UriMatch {
    pub matcher: StrMatch,
    pub ignore_case: bool,
}

#[derive(Debug, Clone)]
pub enum StrMatch {
    Exact(Box<str>),
    Prefix(Box<str>),
    Regex(Regex),
    /// `{}`: the header or parameter must be present, any value.
    Present,
}

impl StrMatch {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StrMatch::Exact(e) => value == &**e,
            StrMatch::Prefix(p) => value.starts_with(&**p),
            StrMatch::Regex(r) => r.is_match(value),
            StrMatch::Present => true,
        }
    }

    fn matches_ignore_case(&self, value: &str) -> bool {
        match self {
            StrMatch::Exact(e) => value.eq_ignore_ascii_case(e),
            StrMatch::Prefix(p) => {
                value.len() >= p.len()
                    && value.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            }
            other => other.matches(value),
        }
    }

    /// A match that any request satisfies (prefix `/` or regex `.*`): moved last, as Istio does.
    pub fn is_catch_all(&self) -> bool {
        match self {
            StrMatch::Prefix(p) => &**p == "/",
            StrMatch::Regex(r) => r.as_str() == "^(?:.*)$",
            _ => false,
        }
    }
}

impl RouteMatch {
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        if let Some(uri) = &self.uri {
            let ok = if uri.ignore_case {
                uri.matcher.matches_ignore_case(req.path)
            } else {
                uri.matcher.matches(req.path)
            };
            if !ok {
                return false;
            }
        }
        let simple = [
            (&self.method, req.method.as_str()),
            (&self.scheme, req.scheme),
            (&self.authority, req.authority),
        ];
        if simple
            .iter()
            .any(|(m, v)| m.as_ref().is_some_and(|m| !m.matches(v)))
        {
            return false;
        }
        self.headers
            .iter()
            .all(|(name, m)| header_matches(req.headers, name, m))
            && self
                .without_headers
                .iter()
                .all(|(name, m)| !header_matches(req.headers, name, m))
            && self
                .query
                .iter()
                .all(|(name, m)| query_param(req.query, name).is_some_and(|v| m.matches(v)))
    }

    /// No conditions beyond a catch-all URI: every request matches.
    pub fn is_catch_all(&self) -> bool {
        self.method.is_none()
            && self.scheme.is_none()
            && self.authority.is_none()
            && self.headers.is_empty()
            && self.without_headers.is_empty()
            && self.query.is_empty()
            && self.uri.as_ref().is_none_or(|u| u.matcher.is_catch_all())
    }
}

impl StrMatch {
    /// The condition in words: `exact "v1"`, `prefix /api`, `regex v[0-9]+`, `present`.
    pub fn describe(&self) -> String {
        match self {
            StrMatch::Exact(e) => format!("exact {e:?}"),
            StrMatch::Prefix(p) => format!("prefix {p}"),
            StrMatch::Regex(r) => {
                let full = r.as_str();
                // Shown as written: compile_regex wraps the pattern for a full-string match.
                let pattern = full
                    .strip_prefix("^(?:")
                    .and_then(|p| p.strip_suffix(")$"))
                    .unwrap_or(full);
                format!("regex {pattern}")
            }
            StrMatch::Present => "present".to_string(),
        }
    }
}

impl RouteMatch {
    /// The first condition `req` fails, in words (`None` exactly when [`Self::matches`] holds).
    pub fn mismatch(&self, req: &RequestView<'_>) -> Option<String> {
        self.mismatches(req).into_iter().next()
    }

    /// Every condition `req` fails, in the order [`Self::matches`] checks them; for
    /// explanations, not for the data path (it allocates).
    pub fn mismatches(&self, req: &RequestView<'_>) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(uri) = &self.uri {
            let ok = if uri.ignore_case {
                uri.matcher.matches_ignore_case(req.path)
            } else {
                uri.matcher.matches(req.path)
            };
            if !ok {
                let case = if uri.ignore_case {
                    " (ignoring case)"
                } else {
                    ""
                };
                out.push(format!(
                    "uri {}{case} does not match {}",
                    uri.matcher.describe(),
                    req.path
                ));
            }
        }
        let simple = [
            ("method", &self.method, req.method.as_str()),
            ("scheme", &self.scheme, req.scheme),
            ("authority", &self.authority, req.authority),
        ];
        for (what, m, value) in simple {
            if let Some(m) = m.as_ref().filter(|m| !m.matches(value)) {
                out.push(format!("{what} {} does not match {value:?}", m.describe()));
            }
        }
        for (name, m) in &self.headers {
            if !header_matches(req.headers, name, m) {
                out.push(header_mismatch(req.headers, name, m));
            }
        }
        for (name, m) in &self.without_headers {
            if header_matches(req.headers, name, m) {
                out.push(format!(
                    "withoutHeaders {name} {} matches, so the route does not apply",
                    m.describe()
                ));
            }
        }
        for (name, m) in &self.query {
            match query_param(req.query, name) {
                None => out.push(format!("query param {name} {} missing", m.describe())),
                Some(v) if !m.matches(v) => out.push(format!(
                    "query param {name} {} does not match {v:?}",
                    m.describe()
                )),
                Some(_) => {}
            }
        }
        out
    }
}

/// Why `name` fails `m`: absent, or its (joined) value does not match.
fn header_mismatch(headers: &HeaderMap, name: &http::HeaderName, m: &StrMatch) -> String {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or("<not text>"))
        .collect();
    if values.is_empty() {
        format!("header {name} {} missing", m.describe())
    } else {
        format!(
            "header {name} {} does not match {:?}",
            m.describe(),
            values.join(",")
        )
    }
}

/// Envoy joins repeated headers with `,` before matching; a single value (the common case) is
/// matched in place without allocating.
fn header_matches(headers: &HeaderMap, name: &http::HeaderName, m: &StrMatch) -> bool {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return false;
    };
    let Some(second) = values.next() else {
        return first.to_str().is_ok_and(|v| m.matches(v));
    };
    let mut joined = String::from(first.to_str().unwrap_or_default());
    for v in std::iter::once(second).chain(values) {
        joined.push(',');
        joined.push_str(v.to_str().unwrap_or_default());
    }
    m.matches(&joined)
}

/// The first occurrence of `name` in the query string (not percent-decoded, as Envoy).
fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

impl RouteTable {
    pub fn new(name: String, vhosts: Vec<VirtualHost>) -> Self {
        let mut domains = HostMap::new();
        for (i, vh) in vhosts.iter().enumerate() {
            // Names are unique per table (merged when built).
            let _ = domains.insert(&vh.domain, i);
        }
        RouteTable {
            name,
            vhosts,
            domains,
        }
    }

    /// The virtual host for a Host header: port ignored, case-insensitive, exact beats the longest
    /// wildcard suffix beats `*`. IP literals only match `*`.
    pub fn find_vhost(&self, authority: &str) -> Option<&VirtualHost> {
        self.domains
            .get(strip_port(authority))
            .map(|&i| &self.vhosts[i])
    }

    /// Host names this table serves (for diagnostics).
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.vhosts.iter().map(|v| v.domain.as_str())
    }
}

impl VirtualHost {
    pub fn find_route(&self, req: &RequestView<'_>) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.matcher.matches(req))
    }
}

/// `host:port` → `host`, `[v6]:port` → `[v6]`.
pub fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |i| &authority[..=i]);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vh(domain: &str) -> VirtualHost {
        VirtualHost {
            domain: domain.into(),
            routes: Vec::new(),
            https_redirect: false,
        }
    }

    #[test]
    fn vhost_selection_prefers_exact_then_longest_wildcard_then_star() {
        let table = RouteTable::new(
            "t".into(),
            vec![
                vh("*"),
                vh("*.example.com"),
                vh("*.b.example.com"),
                vh("a.b.example.com"),
            ],
        );
        let pick = |h: &str| table.find_vhost(h).map(|v| v.domain.as_str());
        assert_eq!(pick("a.b.example.com"), Some("a.b.example.com"));
        assert_eq!(pick("A.B.Example.com:8080"), Some("a.b.example.com"));
        assert_eq!(pick("x.b.example.com"), Some("*.b.example.com"));
        assert_eq!(pick("x.y.b.example.com"), Some("*.b.example.com"));
        assert_eq!(pick("x.example.com"), Some("*.example.com"));
        assert_eq!(pick("example.com"), Some("*"));
        assert_eq!(pick("10.0.0.1:80"), Some("*"));
        assert_eq!(pick("[::1]:80"), Some("*"));
        let no_star = RouteTable::new("t".into(), vec![vh("*.example.com")]);
        assert!(no_star.find_vhost("example.com").is_none());
    }

    #[test]
    fn string_matches() {
        assert!(StrMatch::Prefix("/api".into()).matches("/apix"));
        assert!(!StrMatch::Exact("/a".into()).matches("/a/"));
        let re = StrMatch::Regex(compile_regex("/v[0-9]+").unwrap());
        assert!(re.matches("/v12"));
        assert!(!re.matches("/v12/x"), "regex is a full match");
        assert!(StrMatch::Prefix("/API".into()).matches_ignore_case("/api/x"));
    }

    #[test]
    fn mismatches_agree_with_matches_and_say_why() {
        let m = RouteMatch {
            uri: Some(UriMatch {
                matcher: StrMatch::Prefix("/API".into()),
                ignore_case: true,
            }),
            method: Some(StrMatch::Exact("POST".into())),
            headers: vec![(
                http::HeaderName::from_static("x-v"),
                StrMatch::Regex(compile_regex("v[0-9]").unwrap()),
            )],
            without_headers: vec![(http::HeaderName::from_static("x-debug"), StrMatch::Present)],
            query: vec![("k".into(), StrMatch::Present)],
            ..Default::default()
        };
        let mut headers = HeaderMap::new();
        headers.append("x-v", "v1".parse().unwrap());
        headers.append("x-v", "v2".parse().unwrap());
        fn view<'a>(
            path: &'a str,
            query: Option<&'a str>,
            method: &'a Method,
            headers: &'a HeaderMap,
        ) -> RequestView<'a> {
            RequestView {
                path,
                query,
                method,
                scheme: "http",
                authority: "a",
                headers,
            }
        }
        let empty = HeaderMap::new();
        let cases: [(RequestView<'_>, &[&str]); 3] = [
            (
                view("/api/x", Some("k"), &Method::POST, &empty),
                &["header x-v regex v[0-9] missing"],
            ),
            (
                view("/web", None, &Method::GET, &headers),
                &[
                    "uri prefix /API (ignoring case) does not match /web",
                    "method exact \"POST\" does not match \"GET\"",
                    "header x-v regex v[0-9] does not match \"v1,v2\"",
                    "query param k present missing",
                ],
            ),
            (
                view("/api", Some("k=1"), &Method::POST, &empty),
                &["header x-v regex v[0-9] missing"],
            ),
        ];
        for (req, want) in cases {
            assert_eq!(m.mismatches(&req), want);
            assert_eq!(m.matches(&req), want.is_empty());
        }
        let mut ok = HeaderMap::new();
        ok.insert("x-v", "v3".parse().unwrap());
        let req = view("/Api", Some("k="), &Method::POST, &ok);
        assert!(m.matches(&req) && m.mismatch(&req).is_none());
        let mut ok = ok.clone();
        ok.insert("x-debug", "1".parse().unwrap());
        let req = view("/Api", Some("k="), &Method::POST, &ok);
        assert!(!m.matches(&req));
        assert_eq!(
            m.mismatch(&req).as_deref(),
            Some("withoutHeaders x-debug present matches, so the route does not apply")
        );
    }

    #[test]
    fn query_params_use_first_occurrence() {
        assert_eq!(query_param(Some("a=1&b=2&a=3"), "a"), Some("1"));
        assert_eq!(query_param(Some("flag&x=1"), "flag"), Some(""));
        assert_eq!(query_param(None, "a"), None);
    }

    #[test]
    fn weights_split_proportionally() {
        let t = |n: &str| Target::Missing(n.into());
        let w = WeightedClusters::new(vec![
            (Some(20), t("a")),
            (Some(80), t("b")),
            (Some(0), t("c")),
        ]);
        let mut counts = HashMap::new();
        for roll in 0..100u64 {
            if let Some(Target::Missing(n)) = w.pick(roll) {
                *counts.entry(n.to_string()).or_insert(0) += 1;
            }
        }
        assert_eq!(counts.get("a"), Some(&20));
        assert_eq!(counts.get("b"), Some(&80));
        assert_eq!(counts.get("c"), None);
        let any = WeightedClusters::new(vec![(Some(1), t("a")), (Some(3), t("b"))]);
        let b = (0..400u64)
            .filter(|r| matches!(any.pick(*r), Some(Target::Missing(n)) if &**n == "b"))
            .count();
        assert_eq!(b, 300);
    }
}
