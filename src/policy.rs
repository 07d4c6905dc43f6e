//! A route's HTTP traffic policy, compiled from the VirtualService (reference §2.6–2.8):
//! timeout, retries (Istio's default policy when `retries` is absent), fault injection,
//! rewrites and header operations. Pure: the proxy applies it, tests check it table by table.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use regex::Regex;

use crate::config::duration;
use crate::config::model::{HeaderOperations, HttpFault, HttpRetry, HttpRewrite, HttpRoute};

/// Everything a forwarding route does besides choosing the cluster.
#[derive(Debug, Clone, Default)]
pub struct RoutePolicy {
    /// The whole exchange, retries included (`timeout`); none by default, as Istio sets.
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub fault: Option<Fault>,
    pub rewrite: Option<Rewrite>,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    /// Only one destination: its header operations run after the route's (so they win); with
    /// several, before (the route's win), as Istio configures Envoy.
    pub single_destination: bool,
    pub mirrors: Vec<Mirror>,
    pub cors: Option<Cors>,
}

#[derive(Debug, Clone, Default)]
pub struct DestinationHeaders {
    pub request: HeaderOps,
    pub response: HeaderOps,
}

/// A copy of each request sent, fire and forget, to another cluster (`mirror`, `mirrors`).
#[derive(Debug, Clone)]
pub struct Mirror {
    pub target: crate::route::Target,
    /// Share of requests mirrored, 0–100 (absent in the YAML means 100).
    pub percent: f64,
}

/// `corsPolicy`: preflights from allowed origins are answered here; other responses to allowed
/// origins get the CORS headers.
#[derive(Debug, Clone)]
pub struct Cors {
    pub origins: Vec<crate::route::StrMatch>,
    pub allow_methods: Option<HeaderValue>,
    pub allow_headers: Option<HeaderValue>,
    pub expose_headers: Option<HeaderValue>,
    pub max_age: Option<HeaderValue>,
    pub allow_credentials: bool,
    /// `unmatchedPreflights: FORWARD` (the default): preflights from other origins go upstream.
    pub forward_unmatched: bool,
}

impl Cors {
    pub fn allows(&self, origin: &str) -> bool {
        self.origins.iter().any(|m| m.matches(origin))
    }

    /// The preflight answer for an allowed `origin`.
    pub fn preflight_headers(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        use http::header::*;
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        let optional = [
            (ACCESS_CONTROL_ALLOW_METHODS, &self.allow_methods),
            (ACCESS_CONTROL_ALLOW_HEADERS, &self.allow_headers),
            (ACCESS_CONTROL_MAX_AGE, &self.max_age),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                headers.insert(name, v.clone());
            }
        }
        if self.allow_credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    /// Headers added to an ordinary response for an allowed `origin`.
    pub fn response_headers(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        use http::header::*;
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if let Some(v) = &self.expose_headers {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
        }
        if self.allow_credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

/// A CORS policy's fixed parts; the builder adds the compiled origin matchers.
pub fn cors_from_model(
    c: &crate::config::model::CorsPolicy,
    origins: Vec<crate::route::StrMatch>,
) -> Cors {
    let join = |list: &[String]| {
        (!list.is_empty())
            .then(|| HeaderValue::from_str(&list.join(",")).ok())
            .flatten()
    };
    let max_age = c
        .max_age
        .as_deref()
        .and_then(|t| duration::parse(t).ok())
        .map(|d| HeaderValue::from(d.as_secs()));
    Cors {
        origins,
        allow_methods: join(&c.allow_methods),
        allow_headers: join(&c.allow_headers),
        expose_headers: join(&c.expose_headers),
        max_age,
        allow_credentials: c.allow_credentials.unwrap_or(false),
        forward_unmatched: c.unmatched_preflights.as_deref() != Some("IGNORE"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn(u32);

impl RetryOn {
    pub const FIVE_XX: RetryOn = RetryOn(1);
    pub const GATEWAY_ERROR: RetryOn = RetryOn(1 << 1);
    pub const RESET: RetryOn = RetryOn(1 << 2);
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1 << 3);
    pub const REFUSED_STREAM: RetryOn = RetryOn(1 << 4);
    pub const RETRIABLE_4XX: RetryOn = RetryOn(1 << 5);
    pub const STATUS_CODES: RetryOn = RetryOn(1 << 6);
    pub const RESET_BEFORE_REQUEST: RetryOn = RetryOn(1 << 7);
    pub const GRPC_CANCELLED: RetryOn = RetryOn(1 << 8);
    pub const GRPC_DEADLINE_EXCEEDED: RetryOn = RetryOn(1 << 9);
    pub const GRPC_INTERNAL: RetryOn = RetryOn(1 << 10);
    pub const GRPC_RESOURCE_EXHAUSTED: RetryOn = RetryOn(1 << 11);
    pub const GRPC_UNAVAILABLE: RetryOn = RetryOn(1 << 12);

    pub fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 == other.0
    }

    fn insert(&mut self, other: RetryOn) {
        self.0 |= other.0;
    }

    fn token(token: &str) -> Option<RetryOn> {
        Some(match token {
            "5xx" => Self::FIVE_XX,
            "gateway-error" => Self::GATEWAY_ERROR,
            "reset" => Self::RESET,
            "reset-before-request" => Self::RESET_BEFORE_REQUEST,
            "connect-failure" => Self::CONNECT_FAILURE,
            "refused-stream" => Self::REFUSED_STREAM,
            "retriable-4xx" => Self::RETRIABLE_4XX,
            "retriable-status-codes" => Self::STATUS_CODES,
            "cancelled" => Self::GRPC_CANCELLED,
            "deadline-exceeded" => Self::GRPC_DEADLINE_EXCEEDED,
            "internal" => Self::GRPC_INTERNAL,
            "resource-exhausted" => Self::GRPC_RESOURCE_EXHAUSTED,
            "unavailable" => Self::GRPC_UNAVAILABLE,
            _ => return None,
        })
    }
}

/// Istio's `retryOn` when `retries` is absent or names no conditions (reference §2.7).
const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
/// Envoy's retry back-off base; the cap is ten times the base.
const DEFAULT_BACKOFF: Duration = Duration::from_millis(25);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try (0 = none).
    pub attempts: u32,
    pub per_try_timeout: Option<Duration>,
    pub on: RetryOn,
    /// `retriable-status-codes`: numeric `retryOn` tokens.
    pub statuses: Vec<u16>,
    pub backoff: Duration,
    /// Retry on another endpoint when the cluster has one (Envoy's `previous_hosts`).
    pub other_host: bool,
}

impl Default for RetryPolicy {
    /// Istio's mesh default: two retries on connect failure and refused streams.
    fn default() -> Self {
        RetryPolicy::parse(2, None, DEFAULT_RETRY_ON, DEFAULT_BACKOFF, true)
    }
}

impl RetryPolicy {
    fn parse(
        attempts: u32,
        per_try_timeout: Option<Duration>,
        retry_on: &str,
        backoff: Duration,
        other_host: bool,
    ) -> Self {
        let mut on = RetryOn::default();
        let mut statuses = Vec::new();
        for token in retry_on.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if let Ok(code) = token.parse::<u16>() {
                // Istio moves numeric codes to the status list and turns the condition on.
                statuses.push(code);
                on.insert(RetryOn::STATUS_CODES);
            } else if let Some(flag) = RetryOn::token(token) {
                on.insert(flag);
            }
        }
        RetryPolicy {
            attempts,
            per_try_timeout,
            on,
            statuses,
            backoff,
            other_host,
        }
    }

    /// From a VirtualService `retries` block (validated already).
    pub fn from_model(r: &HttpRetry) -> Self {
        let attempts = u32::try_from(r.attempts).unwrap_or(0);
        if attempts == 0 {
            return RetryPolicy {
                attempts: 0,
                ..RetryPolicy::default()
            };
        }
        let on = r
            .retry_on
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or(DEFAULT_RETRY_ON);
        let per_try = r
            .per_try_timeout
            .as_deref()
            .and_then(|t| duration::parse(t).ok());
        let backoff = r
            .backoff
            .as_deref()
            .and_then(|t| duration::parse(t).ok())
            .unwrap_or(DEFAULT_BACKOFF);
        let other_host = r.retry_ignore_previous_hosts.unwrap_or(true);
        RetryPolicy::parse(
            attempts,
            per_try.filter(|d| !d.is_zero()),
            on,
            backoff,
            other_host,
        )
    }

    /// Whether an upstream response with `status` (and gRPC status, if any) is retried.
    pub fn retries_status(&self, status: StatusCode, grpc: Option<u8>) -> bool {
        let code = status.as_u16();
        (self.on.contains(RetryOn::FIVE_XX) && status.is_server_error())
            || (self.on.contains(RetryOn::GATEWAY_ERROR) && matches!(code, 502..=504))
            || (self.on.contains(RetryOn::RETRIABLE_4XX) && code == 409)
            || (self.on.contains(RetryOn::STATUS_CODES) && self.statuses.contains(&code))
            || grpc.is_some_and(|g| self.retries_grpc(g))
    }

    fn retries_grpc(&self, code: u8) -> bool {
        let flag = match code {
            1 => RetryOn::GRPC_CANCELLED,
            4 => RetryOn::GRPC_DEADLINE_EXCEEDED,
            8 => RetryOn::GRPC_RESOURCE_EXHAUSTED,
            13 => RetryOn::GRPC_INTERNAL,
            14 => RetryOn::GRPC_UNAVAILABLE,
            _ => return false,
        };
        self.on.contains(flag)
    }

    /// Whether a failure before any response is retried: `sent` says whether the request may
    /// have reached the upstream (a reset after connecting, or a per-try timeout).
    pub fn retries_failure(&self, failure: Failure) -> bool {
        let any_reset = self.on.contains(RetryOn::FIVE_XX)
            || self.on.contains(RetryOn::GATEWAY_ERROR)
            || self.on.contains(RetryOn::RESET);
        match failure {
            Failure::Connect => {
                any_reset
                    || self.on.contains(RetryOn::CONNECT_FAILURE)
                    || self.on.contains(RetryOn::RESET_BEFORE_REQUEST)
            }
            Failure::Reset => any_reset,
            Failure::RefusedStream => any_reset || self.on.contains(RetryOn::REFUSED_STREAM),
            Failure::PerTryTimeout => any_reset,
        }
    }

    /// The wait before retry number `retry` (1-based): exponential with full jitter, capped at
    /// ten times the base, as Envoy does.
    pub fn backoff(&self, retry: u32, roll: f64) -> Duration {
        let cap = self.backoff * 10;
        let ceiling = self
            .backoff
            .saturating_mul(
                1u32.checked_shl(retry.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(cap);
        ceiling.mul_f64(roll.clamp(0.0, 1.0))
    }
}

/// An upstream failure before response headers, as retry conditions see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Connect,
    Reset,
    RefusedStream,
    PerTryTimeout,
}

#[derive(Debug, Clone)]
pub struct Fault {
    /// Delay and the share of requests (0–100) it applies to.
    pub delay: Option<(Duration, f64)>,
    pub abort: Option<(Abort, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    Http(StatusCode),
    Grpc(u8),
}

impl Fault {
    fn from_model(f: &HttpFault) -> Option<Self> {
        let delay = f.delay.as_ref().and_then(|d| {
            let time = duration::parse(d.fixed_delay.as_deref()?).ok()?;
            Some((
                time,
                percent_or(d.percentage.as_ref().map(|p| p.value), d.percent, 0.0),
            ))
        });
        let abort = f.abort.as_ref().and_then(|a| {
            let abort = match (a.http_status, &a.grpc_status) {
                (Some(s), _) => Abort::Http(StatusCode::from_u16(u16::try_from(s).ok()?).ok()?),
                (None, Some(g)) => Abort::Grpc(crate::http::local::grpc_code(g)?),
                (None, None) => return None,
            };
            Some((
                abort,
                percent_or(a.percentage.as_ref().map(|p| p.value), None, 0.0),
            ))
        });
        (delay.is_some() || abort.is_some()).then_some(Fault { delay, abort })
    }
}

/// `percentage.value`, else the deprecated integer form, else `default`, within 0–100. Istio's
/// defaults: faults never (0), mirrors always (100).
fn percent_or(value: Option<f64>, percent: Option<i64>, default: f64) -> f64 {
    value
        .or(percent.map(|p| p as f64))
        .unwrap_or(default)
        .clamp(0.0, 100.0)
}

/// Whether a request falls in `percent` (0–100) given a uniform roll in [0, 1).
pub fn sampled(percent: f64, roll: f64) -> bool {
    roll * 100.0 < percent
}

#[derive(Debug, Clone)]
pub struct Rewrite {
    /// `uri`: replaces the matched prefix (prefix matches) or the whole path.
    pub uri: Option<String>,
    /// `uriRegexRewrite`: replace-all on the path, `\1` references already in `$1` form.
    pub regex: Option<(Regex, String)>,
    pub authority: Option<HeaderValue>,
}

impl Rewrite {
    fn from_model(r: &HttpRewrite) -> Option<Self> {
        let regex = r.uri_regex_rewrite.as_ref().and_then(|re| {
            let compiled = regex::RegexBuilder::new(&re.pattern)
                .size_limit(1 << 20)
                .build()
                .ok()?;
            Some((compiled, envoy_substitution(&re.rewrite)))
        });
        Some(Rewrite {
            uri: r.uri.clone(),
            regex,
            authority: r
                .authority
                .as_deref()
                .and_then(|a| HeaderValue::from_str(a).ok()),
        })
    }

    /// The new path for `path` (no query); `prefix` is the route's matched prefix, if the match
    /// was a prefix match.
    pub fn path(&self, path: &str, prefix: Option<&str>) -> Option<String> {
        if let Some(uri) = &self.uri {
            return Some(match prefix {
                Some(p) if path.starts_with(p) => format!("{uri}{}", &path[p.len()..]),
                _ => uri.clone(),
            });
        }
        let (regex, replacement) = self.regex.as_ref()?;
        Some(regex.replace_all(path, replacement.as_str()).into_owned())
    }
}

/// RE2/Envoy substitutions write `\1`; the regex crate writes `${1}`.
fn envoy_substitution(rewrite: &str) -> String {
    let mut out = String::with_capacity(rewrite.len());
    let mut chars = rewrite.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(|d| d.is_ascii_digit()) => {
                let mut group = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    group.push(*d);
                    chars.next();
                }
                out.push_str(&format!("${{{group}}}"));
            }
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

/// `set` (replace), `add` (append another value) and `remove`, in Envoy's order: remove, set, add.
#[derive(Debug, Clone, Default)]
pub struct HeaderOps {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
    /// A `host` or `:authority` set: an authority rewrite (request side only).
    pub authority: Option<HeaderValue>,
}

impl HeaderOps {
    fn from_model(ops: Option<&HeaderOperations>) -> Self {
        let mut out = HeaderOps::default();
        let Some(ops) = ops else { return out };
        let parse = |(name, value): (&String, &String)| {
            let value = HeaderValue::from_str(value).ok()?;
            if name.eq_ignore_ascii_case("host") || name == ":authority" {
                return Some(Err(value));
            }
            let name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok()?;
            Some(Ok((name, value)))
        };
        for op in ops.set.iter().filter_map(parse) {
            match op {
                Ok(pair) => out.set.push(pair),
                Err(authority) => out.authority = Some(authority),
            }
        }
        for op in ops.add.iter().filter_map(parse) {
            match op {
                Ok(pair) => out.add.push(pair),
                Err(authority) => out.authority = Some(authority),
            }
        }
        out.remove = ops
            .remove
            .iter()
            .filter(|n| !n.starts_with(':') && !n.eq_ignore_ascii_case("host"))
            .filter_map(|n| HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes()).ok())
            .collect();
        out
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

impl RoutePolicy {
    /// The policy of a forwarding rule.
    pub fn from_model(rule: &HttpRoute) -> Self {
        let headers = rule.headers.as_ref();
        RoutePolicy {
            timeout: rule
                .timeout
                .as_deref()
                .and_then(|t| duration::parse(t).ok())
                .filter(|d| !d.is_zero()),
            retry: rule
                .retries
                .as_ref()
                .map_or_else(RetryPolicy::default, RetryPolicy::from_model),
            fault: rule.fault.as_ref().and_then(Fault::from_model),
            rewrite: rule.rewrite.as_ref().and_then(Rewrite::from_model),
            request_headers: HeaderOps::from_model(headers.and_then(|h| h.request.as_ref())),
            response_headers: HeaderOps::from_model(headers.and_then(|h| h.response.as_ref())),
            single_destination: rule.route.len() == 1,
            mirrors: Vec::new(),
            cors: None,
        }
    }
}

impl DestinationHeaders {
    pub fn from_model(h: &crate::config::model::Headers) -> Self {
        DestinationHeaders {
            request: HeaderOps::from_model(h.request.as_ref()),
            response: HeaderOps::from_model(h.response.as_ref()),
        }
    }
}

/// `mirrorPercentage`, else the deprecated `mirrorPercent`, else 100 (every request).
pub fn mirror_percent(value: Option<f64>, percent: Option<i64>) -> f64 {
    percent_or(value, percent, 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(attempts: i64, on: &str) -> RetryPolicy {
        RetryPolicy::from_model(&HttpRetry {
            attempts,
            retry_on: Some(on.into()),
            ..Default::default()
        })
    }

    #[test]
    fn istio_default_retries_connect_failures_only() {
        let p = RetryPolicy::default();
        assert_eq!(p.attempts, 2);
        assert!(p.retries_failure(Failure::Connect));
        assert!(p.retries_failure(Failure::RefusedStream));
        assert!(!p.retries_failure(Failure::Reset));
        assert!(!p.retries_status(StatusCode::SERVICE_UNAVAILABLE, None));
        assert!(
            p.retries_status(StatusCode::OK, Some(14)),
            "grpc unavailable"
        );
    }

    #[test]
    fn retry_on_conditions_follow_envoy() {
        let p = retry(3, "5xx");
        assert!(p.retries_status(StatusCode::INTERNAL_SERVER_ERROR, None));
        assert!(p.retries_failure(Failure::Reset) && p.retries_failure(Failure::PerTryTimeout));
        assert!(!p.retries_status(StatusCode::NOT_FOUND, None));
        let p = retry(3, "gateway-error");
        assert!(p.retries_status(StatusCode::BAD_GATEWAY, None));
        assert!(!p.retries_status(StatusCode::INTERNAL_SERVER_ERROR, None));
        let p = retry(3, "503,reset");
        assert!(p.retries_status(StatusCode::SERVICE_UNAVAILABLE, None));
        assert!(!p.retries_status(StatusCode::INTERNAL_SERVER_ERROR, None));
        assert!(p.retries_failure(Failure::Reset));
        let p = retry(3, "connect-failure");
        assert!(!p.retries_failure(Failure::PerTryTimeout));
        assert_eq!(retry(0, "5xx").attempts, 0);
    }

    #[test]
    fn backoff_is_exponential_with_jitter_and_capped() {
        let p = retry(5, "5xx");
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(25));
        assert_eq!(p.backoff(2, 1.0), Duration::from_millis(50));
        assert_eq!(p.backoff(30, 1.0), Duration::from_millis(250));
        assert_eq!(p.backoff(3, 0.5), Duration::from_millis(50));
    }

    #[test]
    fn prefix_rewrite_replaces_exactly_the_matched_prefix() {
        let r = Rewrite {
            uri: Some("/".into()),
            regex: None,
            authority: None,
        };
        assert_eq!(r.path("/api/x", Some("/api")).as_deref(), Some("//x"));
        assert_eq!(r.path("/api/x", None).as_deref(), Some("/"));
        let r = Rewrite::from_model(&HttpRewrite {
            uri_regex_rewrite: Some(crate::config::model::RegexRewrite {
                pattern: "^/service/([^/]+)(/.*)$".into(),
                rewrite: "\\2/instance/\\1".into(),
            }),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            r.path("/service/foo/v1/api", None).as_deref(),
            Some("/v1/api/instance/foo")
        );
    }

    #[test]
    fn fault_percentages_default_to_never() {
        let f = Fault::from_model(&HttpFault {
            delay: Some(crate::config::model::FaultDelay {
                fixed_delay: Some("7s".into()),
                ..Default::default()
            }),
            abort: None,
        })
        .unwrap();
        assert_eq!(f.delay, Some((Duration::from_secs(7), 0.0)));
        assert!(!sampled(0.0, 0.0));
        assert!(sampled(100.0, 0.999));
        assert!(sampled(50.0, 0.49) && !sampled(50.0, 0.5));
    }

    #[test]
    fn header_operations_remove_then_set_then_add() {
        let mut ops = HeaderOperations::default();
        ops.set.insert("x-a".into(), "1".into());
        ops.add.insert("x-b".into(), "2".into());
        ops.remove.push("x-c".into());
        ops.set.insert("Host".into(), "new.example".into());
        let ops = HeaderOps::from_model(Some(&ops));
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("0"));
        h.insert("x-b", HeaderValue::from_static("0"));
        h.insert("x-c", HeaderValue::from_static("0"));
        ops.apply(&mut h);
        assert_eq!(h.get("x-a").unwrap(), "1");
        assert_eq!(h.get_all("x-b").iter().count(), 2);
        assert!(h.get("x-c").is_none());
        assert_eq!(ops.authority, Some(HeaderValue::from_static("new.example")));
    }
}
