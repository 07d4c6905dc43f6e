//! Forwarding a routed request: fault injection, rewrite and header operations, then the
//! upstream attempts under the route's timeout and retry policy (reference §2.6–2.8), and the
//! response back with Envoy's headers.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST, SERVER};
use http::request::Parts;
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, Either, Full, Limited};
use tokio::time::Instant;

use super::exchange::Exchange;
use super::headers::{self, Downstream, X_ENVOY_ATTEMPT_COUNT, X_ENVOY_UPSTREAM_SERVICE_TIME};
use super::local::{self, ConnectFailure, Generated, LocalReply, SERVER_NAME};
use super::proxy::ConnContext;
use super::{Body, RequestIn, UpstreamBody};
use crate::policy::{self, Abort, Failure, RetryPolicy, RoutePolicy};
use crate::route::{Route, StrMatch, Target};
use crate::telemetry::Flags;
use crate::upstream::client::clone_head;
use crate::upstream::{
    ActiveRequest, Admission, Cluster, Endpoint, Observation, RequestBody, ResponseBody,
    UpgradeSlot, UpstreamError, UpstreamProtocol,
};

/// How long a mirrored request may take when the route has no timeout.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(30);

const X_ENVOY_EXPECTED_RQ_TIMEOUT_MS: HeaderName =
    HeaderName::from_static("x-envoy-expected-rq-timeout-ms");

#[allow(clippy::manual_async_fn)] // arguments held once, not twice: see the body
pub fn forward<'a>(
    mut req: Request<RequestIn>,
    target: Target,
    route: Arc<Route>,
    destination: Option<Arc<policy::DestinationHeaders>>,
    conn: &'a ConnContext,
    exchange: &'a mut Exchange,
) -> impl Future<Output = Response<Body>> + 'a {
    // A block rather than an `async fn`: an `async fn` keeps its arguments twice in its state
    // (as captured and as moved into the body), and the request is 264 bytes copied per move.
    async move {
        let policy = &route.policy;
        let destination = destination.as_deref();
        // Envoy's filter order on an Istio gateway: CORS, then fault, then the router.
        let cors_origin = match &policy.cors {
            Some(cors) => match cors_check(&req, cors) {
                Cors::Answer(response) => return response,
                Cors::Allowed(origin) => Some((cors, origin)),
                Cors::NotAllowed => None,
            },
            None => None,
        };
        let mut response = match inject_fault(policy, exchange).await {
            Some(response) => response,
            None => match target {
                Target::Cluster(cluster) => {
                    rewrite(&mut req, &route, destination);
                    let mut response = attempts(req, &cluster, policy, conn, exchange).await;
                    if response.extensions().get::<local::Generated>().is_none() {
                        let route_ops = &policy.response_headers;
                        let dest_ops = destination.map(|d| &d.response);
                        in_order(
                            policy.single_destination,
                            route_ops,
                            dest_ops,
                            response.headers_mut(),
                        );
                    }
                    response
                }
                Target::Missing(_) => LocalReply::ClusterNotFound.response(),
            },
        };
        if let Some((cors, origin)) = cors_origin {
            cors.response_headers(&origin, response.headers_mut());
        }
        response
    }
}

/// Route and destination header operations: with a single destination the destination's run
/// last (they win), with several the route's do, as Istio configures Envoy.
fn in_order(
    single: bool,
    route: &policy::HeaderOps,
    destination: Option<&policy::HeaderOps>,
    headers: &mut http::HeaderMap,
) {
    let Some(destination) = destination else {
        route.apply(headers);
        return;
    };
    let (first, second) = if single {
        (route, destination)
    } else {
        (destination, route)
    };
    first.apply(headers);
    second.apply(headers);
}

enum Cors {
    /// A preflight answered here.
    Answer(Response<Body>),
    /// An allowed origin: its responses get the CORS headers.
    Allowed(HeaderValue),
    NotAllowed,
}

/// `corsPolicy`: a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from an
/// allowed origin is answered at the gateway; from another origin it goes upstream
/// (`unmatchedPreflights: FORWARD`, the default) or is answered without CORS headers (`IGNORE`).
fn cors_check(req: &Request<RequestIn>, cors: &policy::Cors) -> Cors {
    let Some(origin) = req.headers().get(http::header::ORIGIN) else {
        return Cors::NotAllowed;
    };
    let allowed = origin.to_str().is_ok_and(|o| cors.allows(o));
    let preflight = req.method() == http::Method::OPTIONS
        && req
            .headers()
            .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD);
    match (preflight, allowed) {
        (true, true) => {
            let mut response = local::text(StatusCode::OK, Bytes::new());
            cors.preflight_headers(origin, response.headers_mut());
            Cors::Answer(response)
        }
        (true, false) if !cors.forward_unmatched => {
            Cors::Answer(local::text(StatusCode::OK, Bytes::new()))
        }
        (_, true) => Cors::Allowed(origin.clone()),
        (_, false) => Cors::NotAllowed,
    }
}

/// `fault`: a delay and/or an abort, each drawn independently for its share of requests.
async fn inject_fault(policy: &RoutePolicy, exchange: &mut Exchange) -> Option<Response<Body>> {
    let fault = policy.fault.as_ref()?;
    if let Some((delay, percent)) = fault.delay {
        if policy::sampled(percent, fastrand::f64()) {
            exchange.flags.insert(Flags::DELAY_INJECTED);
            tokio::time::sleep(delay).await;
        }
    }
    let (abort, percent) = fault.abort?;
    if !policy::sampled(percent, fastrand::f64()) {
        return None;
    }
    Some(match abort {
        Abort::Http(status) => local::reply(
            status,
            Bytes::from_static(b"fault filter abort"),
            Generated::FAULT_ABORT,
        ),
        Abort::Grpc(code) => local::grpc_status(code, "fault filter abort", Generated::FAULT_ABORT),
    })
}

/// `rewrite` (path, authority) and the request header operations, before any attempt.
fn rewrite(
    req: &mut Request<RequestIn>,
    route: &Route,
    destination: Option<&policy::DestinationHeaders>,
) {
    let policy = &route.policy;
    if let Some(rw) = &policy.rewrite {
        let prefix = match route.matcher.uri.as_ref().map(|u| &u.matcher) {
            Some(StrMatch::Prefix(p)) => Some(&**p),
            _ => None,
        };
        if let Some(path) = rw.path(req.uri().path(), prefix) {
            super::path::set_path(req.uri_mut(), &path);
        }
        if let Some(authority) = &rw.authority {
            set_authority(req, authority);
        }
    }
    let dest_ops = destination.map(|d| &d.request);
    in_order(
        policy.single_destination,
        &policy.request_headers,
        dest_ops,
        req.headers_mut(),
    );
    let authority = [Some(&policy.request_headers), dest_ops]
        .into_iter()
        .flatten()
        .filter_map(|ops| ops.authority.as_ref())
        .next_back();
    if let Some(authority) = authority {
        set_authority(req, authority);
    }
}

/// The upstream sees the new authority in Host (HTTP/1.1) or `:authority` (HTTP/2).
fn set_authority(req: &mut Request<RequestIn>, authority: &HeaderValue) {
    super::path::set_uri_authority(req.uri_mut(), authority);
    req.headers_mut().insert(HOST, authority.clone());
}

/// How one attempt ended.
enum Outcome {
    Response(Response<ResponseBody>),
    Failed(UpstreamError),
    PerTryTimeout,
    /// The route timeout: no more attempts.
    Timeout,
}

/// The upstream exchange: up to 1 + `attempts` tries, each on an endpoint from the cluster's
/// balancer (another one than the last when the cluster has several), within the route timeout.
#[allow(clippy::manual_async_fn)] // arguments held once, not twice: see the body
fn attempts<'a>(
    mut req: Request<RequestIn>,
    cluster: &'a Arc<Cluster>,
    policy: &'a RoutePolicy,
    conn: &'a ConnContext,
    exchange: &'a mut Exchange,
) -> impl Future<Output = Response<Body>> + 'a {
    // A block: see `forward`.
    async move {
        let upgrade = headers::is_upgrade(req.headers());
        let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let deadline = policy.timeout.map(|t| Instant::now() + t);
        let (parts, body) = req.into_parts();
        let (hash_key, set_cookie) = match cluster.hash_on() {
            Some(on) => super::hash::hash_key(on, &parts, conn.peer),
            None => (None, None),
        };
        let mirrors = sampled_mirrors(policy);
        let mirror_parts = (!mirrors.is_empty()).then(|| clone_head(&parts));
        let protocol = cluster.spec.protocol;
        let Some(mut parts) = upstream_parts(parts, protocol, conn, upgrade) else {
            return LocalReply::NoRoute.response();
        };
        let retry = &policy.retry;
        if let Some(expected) = expected_timeout(policy.timeout, retry.per_try_timeout) {
            let ms = HeaderValue::from(expected.as_millis() as u64);
            parts.headers.insert(X_ENVOY_EXPECTED_RQ_TIMEOUT_MS, ms);
        }
        // Bodies up to `--max-request-body-buffer` are kept so that retries can resend them; larger
        // or unsized ones stream, without retries.
        let buffer = (retry.attempts > 0 || mirror_parts.is_some())
            .then_some(conn.shared.settings.limits.max_request_body_buffer);
        let (mut body, replay) = match replayable(body, buffer, upgrade).await {
            Ok(bodies) => bodies,
            Err(response) => return response,
        };
        if let (Some(mirror), Some(bytes)) = (mirror_parts, &replay) {
            send_mirrors(&mirror, bytes, &mirrors, policy, conn);
        }
        // The cluster's circuit breaker: overflow is answered at once, never retried.
        let Ok(admission) = cluster.breaker().admit().await else {
            cluster.stats().overflows.increment(1);
            return LocalReply::Overflow.response();
        };
        let mut retries_left = if replay.is_some() { retry.attempts } else { 0 };
        let mut previous = None;
        let mut attempt: u32 = 1;
        let mut _retry_in_flight = None;
        loop {
            let Some(endpoint) = pick(cluster, hash_key, previous, retry).await else {
                return LocalReply::NoHealthyUpstream.response();
            };
            previous = Some(endpoint.addr);
            exchange.upstream_host = Some(endpoint.addr);
            if attempt > 1 {
                // `prepare_request` wrote 1 for the first try.
                parts
                    .headers
                    .insert(X_ENVOY_ATTEMPT_COUNT, HeaderValue::from(attempt));
            }
            let active = ActiveRequest::start(endpoint);
            let started = Instant::now();
            // The head is lent: it stays here for a retry. Pinned where it is made: the send is the
            // largest part of a request's state, and every move of it is a copy.
            let send = pin!(conn
                .shared
                .upstreams
                .send(cluster, active.0.addr, &parts, body));
            // A wanted retry also needs room under the cluster's `maxRetries`.
            let mut retry_admitted = |wanted: bool| {
                if wanted && retries_left > 0 {
                    _retry_in_flight = cluster.breaker().admit_retry();
                    if _retry_in_flight.is_none() {
                        cluster.stats().overflows.increment(1);
                    }
                    _retry_in_flight.is_some()
                } else {
                    false
                }
            };
            let (timer, per_try_first) = attempt_timer(deadline, retry.per_try_timeout);
            let outcome = within(send, pin!(timer), per_try_first).await;
            cluster.report(&active.0, observation(&outcome));
            match outcome {
                Outcome::Response(response) => {
                    let grpc = upstream_grpc_status(&response);
                    let wanted = retry.retries_status(response.status(), grpc);
                    if !retry_admitted(wanted) {
                        if wanted && retry.attempts > 0 {
                            exchange.flags.insert(Flags::RETRY_LIMIT_EXCEEDED);
                        }
                        let service_time = started.elapsed().as_millis() as u64;
                        exchange.upstream_service_time = Some(service_time);
                        let held = (active, admission);
                        let mut response =
                            finish_response(response, service_time, downstream_upgrade, held);
                        if let Some(cookie) = set_cookie {
                            response
                                .headers_mut()
                                .append(http::header::SET_COOKIE, cookie);
                        }
                        return response;
                    }
                }
                Outcome::Failed(err) => {
                    if matches!(err, UpstreamError::Connect(_) | UpstreamError::Tls(_)) {
                        cluster.stats().connect_failures.increment(1);
                    }
                    if !retry_admitted(retry.retries_failure(failure(err))) {
                        return upstream_error(err).response_after(attempt > 1);
                    }
                }
                Outcome::PerTryTimeout => {
                    if !retry_admitted(retry.retries_failure(Failure::PerTryTimeout)) {
                        return LocalReply::PerTryTimeout.response_after(attempt > 1);
                    }
                }
                Outcome::Timeout => return LocalReply::UpstreamTimeout.response(),
            }
            retries_left -= 1;
            cluster.stats().retries.increment(1);
            let wake = Instant::now() + retry.backoff(attempt, fastrand::f64());
            match deadline {
                // The route timeout runs out during the back-off: answer when it does, as Envoy.
                Some(d) if d <= wake => {
                    tokio::time::sleep_until(d).await;
                    return LocalReply::UpstreamTimeout.response();
                }
                _ => tokio::time::sleep_until(wake).await,
            }
            attempt += 1;
            body = Either::Right(Full::new(replay.clone().unwrap_or_default()));
        }
    }
}

/// What the upstream is told to expect (`x-envoy-expected-rq-timeout-ms`): the per-try timeout
/// when it is the tighter one, else the route timeout, as Envoy's router sets it.
fn expected_timeout(route: Option<Duration>, per_try: Option<Duration>) -> Option<Duration> {
    match (route, per_try) {
        (Some(r), Some(t)) => Some(r.min(t)),
        (r, t) => r.or(t),
    }
}

/// The timer of one attempt: the per-try timeout or the route's deadline, whichever comes
/// first, and whether that is the per-try timeout.
fn attempt_timer(
    deadline: Option<Instant>,
    per_try: Option<Duration>,
) -> (Option<tokio::time::Sleep>, bool) {
    let try_deadline = per_try.map(|t| Instant::now() + t);
    let end = match (deadline, try_deadline) {
        (Some(d), Some(t)) => Some((d.min(t), t < d)),
        (Some(d), None) => Some((d, false)),
        (None, Some(t)) => Some((t, true)),
        (None, None) => None,
    };
    (
        end.map(|(at, _)| tokio::time::sleep_until(at)),
        end.is_some_and(|(_, per_try_first)| per_try_first),
    )
}

/// The send raced against its timer, both polled where they lie (borrowed, not moved in).
async fn within<F>(
    mut send: Pin<&mut F>,
    mut timer: Pin<&mut Option<tokio::time::Sleep>>,
    per_try_first: bool,
) -> Outcome
where
    F: Future<Output = Result<Response<ResponseBody>, UpstreamError>>,
{
    poll_fn(|cx| {
        if let Poll::Ready(result) = send.as_mut().poll(cx) {
            return Poll::Ready(result.map_or_else(Outcome::Failed, Outcome::Response));
        }
        match timer.as_mut().as_pin_mut().map(|timer| timer.poll(cx)) {
            Some(Poll::Ready(())) if per_try_first => Poll::Ready(Outcome::PerTryTimeout),
            Some(Poll::Ready(())) => Poll::Ready(Outcome::Timeout),
            _ => Poll::Pending,
        }
    })
    .await
}

/// The first attempt's body, and the bytes to resend on retries when the request can be
/// retried: no body, or one small enough to buffer. Other bodies stream once.
async fn replayable(
    body: RequestIn,
    buffer: Option<u64>,
    upgrade: bool,
) -> Result<(RequestBody, Option<Bytes>), Response<Body>> {
    let body = match body {
        Some(body) if !body.is_end_stream() => body,
        _ => return Ok((Either::Right(Full::new(Bytes::new())), Some(Bytes::new()))),
    };
    let Some(limit) = buffer else {
        return Ok((Either::Left(body), None));
    };
    let small = body.size_hint().exact().is_some_and(|n| n <= limit);
    if upgrade || !small {
        return Ok((Either::Left(body), None));
    }
    match Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .collect()
        .await
    {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            Ok((Either::Right(Full::new(bytes.clone())), Some(bytes)))
        }
        // The client's body ended badly: nothing sensible to send upstream.
        Err(_) => Err(local::text(StatusCode::BAD_REQUEST, Bytes::new())),
    }
}

/// An endpoint by the cluster's balancer; on a retry, preferably not the previous one (Envoy's
/// `previous_hosts` predicate, up to 5 selections).
async fn pick(
    cluster: &Arc<Cluster>,
    key: Option<u64>,
    previous: Option<std::net::SocketAddr>,
    retry: &RetryPolicy,
) -> Option<Arc<Endpoint>> {
    let mut endpoint = cluster.pick_for(key).await?;
    // Istio drops the other-host predicate for consistent hashing: the key decides.
    let other_host = retry.other_host && key.is_none();
    if let Some(previous) = previous.filter(|_| other_host) {
        for _ in 0..5 {
            if endpoint.addr != previous {
                break;
            }
            endpoint = cluster.pick_for(key).await?;
        }
    }
    Some(endpoint)
}

/// `mirror`/`mirrors`: a copy of the request (after rewrites, with its buffered body) to each
/// mirror cluster in its share of requests, fire and forget: the response is discarded and
/// neither its time nor its failure touches the client's request.
fn send_mirrors(
    parts: &Parts,
    body: &Bytes,
    mirrors: &[&Arc<Cluster>],
    policy: &RoutePolicy,
    conn: &ConnContext,
) {
    for cluster in mirrors {
        let mut copy = clone_head(parts);
        if conn.shared.settings.mirror_shadow_host {
            shadow_host(&mut copy);
        }
        let Some(copy) = upstream_parts(copy, cluster.spec.protocol, conn, false) else {
            continue;
        };
        let (cluster, shared, body) = (Arc::clone(cluster), conn.shared.clone(), body.clone());
        let limit = policy.timeout.unwrap_or(MIRROR_TIMEOUT);
        tokio::spawn(async move {
            let Some(endpoint) = cluster.pick().await else {
                return;
            };
            let active = ActiveRequest::start(endpoint);
            let body = Either::Right(Full::new(body));
            let send = shared.upstreams.send(&cluster, active.0.addr, &copy, body);
            if let Ok(Ok(response)) = tokio::time::timeout(limit, send).await {
                // Read the body so the connection can be reused; its content is not wanted.
                let _ = tokio::time::timeout(limit, response.into_body().collect()).await;
            }
        });
    }
}

/// The mirror clusters this request is copied to, each drawn for its share of requests.
fn sampled_mirrors(policy: &RoutePolicy) -> Vec<&Arc<Cluster>> {
    policy
        .mirrors
        .iter()
        .filter_map(|m| match &m.target {
            Target::Cluster(c) if policy::sampled(m.percent, fastrand::f64()) => Some(c),
            _ => None,
        })
        .collect()
}

/// Istio before 1.28 sent mirrored requests to `<host>-shadow` (port kept after the suffix).
fn shadow_host(parts: &mut Parts) {
    let host = match parts.uri.authority() {
        Some(a) => a.as_str().to_string(),
        None => match parts.headers.get(HOST).and_then(|h| h.to_str().ok()) {
            Some(h) => h.to_string(),
            None => return,
        },
    };
    let name = crate::route::strip_port(&host);
    let shadowed = format!("{name}-shadow{}", &host[name.len()..]);
    if let Ok(value) = HeaderValue::from_str(&shadowed) {
        super::path::set_uri_authority(&mut parts.uri, &value);
        parts.headers.insert(HOST, value);
    }
}

fn upstream_grpc_status(response: &Response<ResponseBody>) -> Option<u8> {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// What outlier detection learns from an attempt.
fn observation(outcome: &Outcome) -> Observation {
    match outcome {
        Outcome::Response(response) => Observation::Status(response.status().as_u16()),
        Outcome::Failed(_) => Observation::ConnectFailure,
        Outcome::PerTryTimeout | Outcome::Timeout => Observation::Timeout,
    }
}

fn failure(err: UpstreamError) -> Failure {
    match err {
        UpstreamError::Connect(_) | UpstreamError::Tls(_) => Failure::Connect,
        UpstreamError::Reset => Failure::Reset,
    }
}

/// The upstream request's head: same method, path and headers, in the form the upstream
/// protocol wants, with the forwarding headers.
fn upstream_parts(
    mut parts: Parts,
    protocol: UpstreamProtocol,
    conn: &ConnContext,
    upgrade: bool,
) -> Option<Parts> {
    // Routing used the URI's authority when there is one (HTTP/2 :authority, HTTP/1.1
    // absolute form), so the upstream must see that same host, as Envoy's codec ensures.
    if let Some(value) = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        parts.headers.insert(HOST, value);
    }
    let http2 = protocol == UpstreamProtocol::Http2;
    // A URI in origin form (a path, no scheme or authority) is already what HTTP/1.1 sends.
    let origin_form = parts.uri.scheme().is_none()
        && parts.uri.authority().is_none()
        && parts.uri.path_and_query().is_some();
    if http2 || !origin_form {
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = if http2 {
            // HTTP/2 names the host in :authority, never in a Host header.
            let host = parts.headers.remove(HOST)?;
            let authority: http::uri::Authority = host.to_str().ok()?.parse().ok()?;
            Uri::builder()
                .scheme(Scheme::HTTP)
                .authority(authority)
                .path_and_query(path)
                .build()
                .ok()?
        } else {
            // HTTP/1.1 goes out in origin form; the Host header carries the authority.
            Uri::from(path)
        };
    }
    parts.version = if http2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    let down = Downstream {
        peer: &conn.peer_header,
        client_cert: conn.client_cert.as_ref(),
        scheme: conn.scheme,
        trusted_hops: conn.shared.settings.num_trusted_proxies,
    };
    headers::prepare_request(&mut parts.headers, &down);
    Some(parts)
}

fn finish_response(
    mut response: Response<ResponseBody>,
    service_time_ms: u64,
    downstream_upgrade: Option<hyper::upgrade::OnUpgrade>,
    held: (ActiveRequest, Admission),
) -> Response<Body> {
    let upgrade = downstream_upgrade.is_some();
    if let (Some(down), StatusCode::SWITCHING_PROTOCOLS) = (downstream_upgrade, response.status()) {
        if let Some(up) = response.extensions_mut().remove::<UpgradeSlot>() {
            tunnel(down, up);
        }
    }
    let (mut parts, body) = response.into_parts();
    headers::strip_hop_by_hop(
        &mut parts.headers,
        upgrade && parts.status == StatusCode::SWITCHING_PROTOCOLS,
    );
    parts.headers.insert(SERVER, SERVER_NAME);
    parts
        .headers
        .insert(X_ENVOY_UPSTREAM_SERVICE_TIME, milliseconds(service_time_ms));
    Response::from_parts(parts, Either::Left(UpstreamBody::new(body, held)))
}

/// A number of milliseconds as a header value; the few a nearby upstream usually takes are
/// static values, not a formatted and allocated one per response.
fn milliseconds(ms: u64) -> HeaderValue {
    const SMALL: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match usize::try_from(ms).ok().and_then(|i| SMALL.get(i)) {
        Some(digits) => HeaderValue::from_static(digits),
        None => HeaderValue::from(ms),
    }
}

/// Envoy's local reply for an upstream failure before response headers.
fn upstream_error(err: UpstreamError) -> LocalReply {
    match err {
        UpstreamError::Connect(std::io::ErrorKind::ConnectionRefused) => {
            LocalReply::ConnectFailure(ConnectFailure::Refused)
        }
        UpstreamError::Connect(std::io::ErrorKind::TimedOut) => {
            LocalReply::ConnectFailure(ConnectFailure::Timeout)
        }
        UpstreamError::Connect(_) => LocalReply::ConnectFailure(ConnectFailure::Other),
        UpstreamError::Tls(failure) => LocalReply::ConnectFailure(ConnectFailure::Tls(failure)),
        UpstreamError::Reset => LocalReply::ConnectionTermination,
    }
}

/// After a 101, copies bytes both ways between the client and the upstream until both finish.
fn tunnel(down: hyper::upgrade::OnUpgrade, up: UpgradeSlot) {
    tokio::spawn(async move {
        let (Ok(down), Some(mut up)) = (down.await, up.take()) else {
            return;
        };
        let mut down = hyper_util::rt::TokioIo::new(down);
        if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
            tracing::debug!(error = %e, "upgraded connection ended");
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn milliseconds_are_written_in_decimal() {
        for ms in [0, 1, 9, 10, 99, 1234, u64::MAX] {
            assert_eq!(super::milliseconds(ms), ms.to_string().as_str());
        }
    }
}
