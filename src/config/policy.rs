//! Validation of an HTTP route's traffic policy: timeout, retries, fault, rewrite, headers,
//! mirrors and CORS (reference §2.6–2.8), with Istio's admission rules.

use super::duration;
use super::model::{CorsPolicy, Headers, HttpFault, HttpRetry, HttpRewrite, HttpRoute, Percent};
use super::validate::{string_match, Findings};

/// Envoy's `retry_on` conditions Istio accepts (numeric HTTP statuses are accepted too).
pub const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

pub(super) fn http_route(route: &HttpRoute, field: &str, f: &mut Findings) {
    if let Some(t) = &route.timeout {
        duration_at_least(t, 1, &format!("{field}.timeout"), f);
    }
    if let Some(r) = &route.retries {
        retries(r, &format!("{field}.retries"), f);
    }
    if let Some(fault) = &route.fault {
        self::fault(fault, &format!("{field}.fault"), f);
    }
    if let Some(r) = &route.rewrite {
        rewrite(r, &format!("{field}.rewrite"), f);
    }
    if let Some(h) = &route.headers {
        headers(h, route.rewrite.as_ref(), &format!("{field}.headers"), f);
    }
    for (i, d) in route.route.iter().enumerate() {
        if let Some(h) = &d.headers {
            headers(
                h,
                route.rewrite.as_ref(),
                &format!("{field}.route[{i}].headers"),
                f,
            );
        }
    }
    if let Some(p) = &route.mirror_percentage {
        percent(p, &format!("{field}.mirrorPercentage"), f);
    }
    if let Some(p) = route.mirror_percent {
        int_percent(p, &format!("{field}.mirrorPercent"), f);
    }
    for (i, m) in route.mirrors.iter().enumerate() {
        if m.destination.host.is_empty() {
            f.error(
                format!("{field}.mirrors[{i}].destination.host"),
                "is required",
            );
        }
        if let Some(p) = &m.percentage {
            percent(p, &format!("{field}.mirrors[{i}].percentage"), f);
        }
    }
    if let Some(m) = &route.mirror {
        if m.host.is_empty() {
            f.error(format!("{field}.mirror.host"), "is required");
        }
    }
    if let Some(c) = &route.cors_policy {
        cors(c, &format!("{field}.corsPolicy"), f);
    }
}

/// A duration of at least `min_ms` milliseconds.
pub(super) fn duration_at_least(text: &str, min_ms: u64, field: &str, f: &mut Findings) {
    match duration::parse(text) {
        Ok(d) if d.as_millis() < u128::from(min_ms) && !d.is_zero() => {
            f.error(field, format!("{text:?} is shorter than {min_ms}ms"))
        }
        Ok(_) => {}
        Err(e) => f.error(field, e),
    }
}

fn retries(r: &HttpRetry, field: &str, f: &mut Findings) {
    if r.attempts < 0 {
        f.error(format!("{field}.attempts"), "must not be negative");
    }
    if let Some(t) = &r.per_try_timeout {
        duration_at_least(t, 1, &format!("{field}.perTryTimeout"), f);
    }
    if let Some(b) = &r.backoff {
        duration_at_least(b, 1, &format!("{field}.backoff"), f);
    }
    for token in r.retry_on.iter().flat_map(|s| s.split(',')).map(str::trim) {
        let status = token.parse::<u16>().is_ok_and(|c| (100..=599).contains(&c));
        if !status && !RETRY_ON.contains(&token) {
            f.error(
                format!("{field}.retryOn"),
                format!("{token:?} is not a valid retryOn policy (Envoy's conditions, such as 5xx, gateway-error, reset, connect-failure, or an HTTP status)"),
            );
        }
    }
}

fn fault(fault: &HttpFault, field: &str, f: &mut Findings) {
    if fault.delay.is_none() && fault.abort.is_none() {
        f.error(field, "a fault needs a delay or an abort");
    }
    if let Some(d) = &fault.delay {
        let at = format!("{field}.delay");
        match (&d.fixed_delay, &d.exponential_delay) {
            (Some(t), None) => duration_at_least(t, 1, &format!("{at}.fixedDelay"), f),
            (_, Some(_)) => f.error(
                format!("{at}.exponentialDelay"),
                "is not supported (as in Istio)",
            ),
            (None, None) => f.error(format!("{at}.fixedDelay"), "is required"),
        }
        if let Some(p) = &d.percentage {
            percent(p, &format!("{at}.percentage"), f);
        }
        if let Some(p) = d.percent {
            int_percent(p, &format!("{at}.percent"), f);
        }
    }
    if let Some(a) = &fault.abort {
        let at = format!("{field}.abort");
        match (a.http_status, &a.grpc_status, &a.http2_error) {
            (Some(s), None, None) if !(200..=599).contains(&s) => f.error(
                format!("{at}.httpStatus"),
                format!("{s} is outside 200-599"),
            ),
            (Some(_), None, None) | (None, Some(_), None) => {}
            (None, None, Some(_)) => f.error(format!("{at}.http2Error"), "is not supported"),
            (None, None, None) => f.error(&at, "one of httpStatus or grpcStatus is required"),
            _ => f.error(
                &at,
                "only one of httpStatus, grpcStatus and http2Error may be set",
            ),
        }
        if let Some(g) = &a.grpc_status {
            if crate::http::local::grpc_code(g).is_none() {
                f.error(
                    format!("{at}.grpcStatus"),
                    format!("{g:?} is not a gRPC status name"),
                );
            }
        }
        if let Some(p) = &a.percentage {
            percent(p, &format!("{at}.percentage"), f);
        }
    }
}

fn rewrite(r: &HttpRewrite, field: &str, f: &mut Findings) {
    if r.uri.is_some() && r.uri_regex_rewrite.is_some() {
        f.error(field, "uri and uriRegexRewrite are mutually exclusive");
    }
    if let Some(re) = &r.uri_regex_rewrite {
        if let Err(e) = crate::route::compile_regex(&re.pattern) {
            let message = format!(
                "does not compile: {}",
                e.to_string().lines().last().unwrap_or("")
            );
            f.error(format!("{field}.uriRegexRewrite.match"), message);
        }
    }
}

fn headers(h: &Headers, rewrite: Option<&HttpRewrite>, field: &str, f: &mut Findings) {
    for (part, ops) in [("request", &h.request), ("response", &h.response)] {
        let Some(ops) = ops else { continue };
        let names = ops
            .set
            .keys()
            .chain(ops.add.keys())
            .chain(ops.remove.iter());
        for name in names {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() && !name.starts_with(':') {
                f.error(
                    format!("{field}.{part}"),
                    format!("{name:?} is not a valid header name"),
                );
            }
        }
        let sets_authority = ops
            .set
            .keys()
            .chain(ops.add.keys())
            .any(|n| n.eq_ignore_ascii_case("host") || n == ":authority");
        if part == "request" && sets_authority && rewrite.is_some_and(|r| r.authority.is_some()) {
            f.error(
                format!("{field}.request"),
                "the authority is rewritten both by rewrite.authority and by a host header",
            );
        }
    }
}

fn cors(c: &CorsPolicy, field: &str, f: &mut Findings) {
    for (i, sm) in c.allow_origins.iter().enumerate() {
        string_match(sm, &format!("{field}.allowOrigins[{i}]"), false, false, f);
    }
    if let Some(age) = &c.max_age {
        if let Err(e) = duration::parse(age) {
            f.error(format!("{field}.maxAge"), e);
        }
    }
    if let Some(u) = &c.unmatched_preflights {
        if !matches!(u.as_str(), "FORWARD" | "IGNORE" | "UNSPECIFIED") {
            f.error(
                format!("{field}.unmatchedPreflights"),
                format!("{u:?} is not FORWARD or IGNORE"),
            );
        }
    }
}

fn percent(p: &Percent, field: &str, f: &mut Findings) {
    if !(0.0..=100.0).contains(&p.value) {
        f.error(
            format!("{field}.value"),
            format!("{} is outside 0-100", p.value),
        );
    }
}

pub(super) fn int_percent(p: i64, field: &str, f: &mut Findings) {
    if !(0..=100).contains(&p) {
        f.error(field, format!("{p} is outside 0-100"));
    }
}
