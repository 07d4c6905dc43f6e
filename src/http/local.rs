//! Locally generated responses, byte for byte as Envoy sends them on an Istio gateway
//! (reference §5.1). One place maps each failure to its status and body.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, SERVER};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

use super::Body;
use crate::telemetry::Flags;

pub const SERVER_NAME: HeaderValue = HeaderValue::from_static("istio-envoy");

/// Why the gateway answered itself; also the Envoy response flag for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalReply {
    /// No virtual host or route matched (404, empty, `NR`).
    NoRoute,
    /// The route's cluster does not exist (503, empty, `NC`).
    ClusterNotFound,
    /// The cluster has no endpoint (503, `UH`).
    NoHealthyUpstream,
    /// Upstream refused or timed out the connection (503, `UF`).
    ConnectFailure(ConnectFailure),
    /// Upstream reset or closed before response headers (503, `UC`).
    ConnectionTermination,
    /// HTTP/1.0 request (426), as Istio's default `accept_http_10: false`.
    UpgradeRequired,
    /// A Host served by another server of the TLS port than the one the SNI chose (421).
    MisdirectedRequest,
    /// The route timeout expired before response headers (504, `UT`).
    UpstreamTimeout,
    /// The last try's per-try timeout expired (504, `UT`).
    PerTryTimeout,
    /// The cluster's circuit breaker is full (503, `UO`, `x-envoy-overloaded: true`).
    Overflow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    Refused,
    Timeout,
    /// TLS origination failed.
    Tls(crate::upstream::TlsFailure),
    Other,
}

impl LocalReply {
    pub fn flag(self) -> Flags {
        match self {
            LocalReply::NoRoute => Flags::NO_ROUTE,
            LocalReply::ClusterNotFound => Flags::NO_CLUSTER,
            LocalReply::NoHealthyUpstream => Flags::NO_HEALTHY_UPSTREAM,
            LocalReply::ConnectFailure(_) => Flags::UPSTREAM_CONNECTION_FAILURE,
            LocalReply::ConnectionTermination => Flags::UPSTREAM_CONNECTION_TERMINATION,
            LocalReply::UpstreamTimeout | LocalReply::PerTryTimeout => Flags::UPSTREAM_TIMEOUT,
            LocalReply::Overflow => Flags::UPSTREAM_OVERFLOW,
            LocalReply::UpgradeRequired | LocalReply::MisdirectedRequest => Flags::NONE,
        }
    }

    /// Envoy's `%RESPONSE_CODE_DETAILS%` for this reply.
    fn details(self) -> Cow<'static, str> {
        let reset = |reason: &str| {
            Cow::Owned(format!(
                "upstream_reset_before_response_started{{{}}}",
                reason
                    .replace(", transport failure reason: ", ",")
                    .replace(' ', "_")
            ))
        };
        match self {
            LocalReply::NoRoute => Cow::Borrowed("route_not_found"),
            LocalReply::ClusterNotFound => Cow::Borrowed("cluster_not_found"),
            LocalReply::NoHealthyUpstream => Cow::Borrowed("no_healthy_upstream"),
            LocalReply::UpgradeRequired => Cow::Borrowed("low_version"),
            LocalReply::MisdirectedRequest => Cow::Borrowed("misdirected_request"),
            LocalReply::UpstreamTimeout => Cow::Borrowed("response_timeout"),
            LocalReply::PerTryTimeout => Cow::Borrowed("upstream_per_try_timeout"),
            other => match other.status_and_body().1 {
                Says::Reset(reason) => reset(reason),
                Says::Fixed(_) => Cow::Borrowed("local_reply"),
            },
        }
    }

    /// Envoy's `%UPSTREAM_TRANSPORT_FAILURE_REASON%`: why the upstream connection failed.
    fn transport_failure(self) -> Option<&'static str> {
        match self.status_and_body() {
            (_, Says::Reset(reason)) => reason
                .split_once("transport failure reason: ")
                .map(|(_, why)| why),
            _ => None,
        }
    }

    fn status_and_body(self) -> (StatusCode, Says) {
        use ConnectFailure::*;
        use Says::{Fixed, Reset};
        let unavailable = StatusCode::SERVICE_UNAVAILABLE;
        match self {
            LocalReply::NoRoute => (StatusCode::NOT_FOUND, Fixed("")),
            LocalReply::ClusterNotFound => (unavailable, Fixed("")),
            LocalReply::NoHealthyUpstream => (unavailable, Fixed("no healthy upstream")),
            LocalReply::ConnectFailure(Refused) => (
                unavailable,
                Reset("remote connection failure, transport failure reason: delayed connect error: Connection refused"),
            ),
            LocalReply::ConnectFailure(Timeout) => (unavailable, Reset("connection timeout")),
            LocalReply::ConnectFailure(Tls(failure)) => (unavailable, Reset(tls_reason(failure))),
            LocalReply::ConnectFailure(Other) => (unavailable, Reset("remote connection failure")),
            LocalReply::ConnectionTermination => (unavailable, Reset("connection termination")),
            LocalReply::UpgradeRequired => (StatusCode::UPGRADE_REQUIRED, Fixed("")),
            LocalReply::MisdirectedRequest => (StatusCode::MISDIRECTED_REQUEST, Fixed("")),
            LocalReply::UpstreamTimeout | LocalReply::PerTryTimeout => {
                (StatusCode::GATEWAY_TIMEOUT, Fixed("upstream request timeout"))
            }
            LocalReply::Overflow => (unavailable, Reset("overflow")),
        }
    }

    pub fn response(self) -> Response<Body> {
        self.response_after(false)
    }

    /// As [`Self::response`]; after retries, Envoy's upstream-failure bodies say so
    /// (`retried and the latest reset reason: ...`).
    pub fn response_after(self, retried: bool) -> Response<Body> {
        let (status, says) = self.status_and_body();
        let body = match says {
            Says::Fixed(text) => Bytes::from_static(text.as_bytes()),
            Says::Reset(reason) => {
                let retried = if retried {
                    "retried and the latest "
                } else {
                    ""
                };
                Bytes::from(format!(
                    "upstream connect error or disconnect/reset before headers. {retried}reset reason: {reason}"
                ))
            }
        };
        let mut flags = self.flag();
        if retried {
            flags.insert(Flags::RETRY_LIMIT_EXCEEDED);
        }
        let generated = Generated {
            flags,
            details: self.details(),
            failure: self.transport_failure().map(Cow::Borrowed),
        };
        let mut response = reply(status, body, generated);
        if self == LocalReply::Overflow {
            response
                .headers_mut()
                .insert("x-envoy-overloaded", HeaderValue::from_static("true"));
        }
        response
    }
}

/// What a local reply's body says: a fixed text, or Envoy's upstream-failure text around the
/// reset reason.
enum Says {
    Fixed(&'static str),
    Reset(&'static str),
}

/// Marks a response the gateway generated itself, with what the access log and metrics say of it.
#[derive(Clone, Debug)]
pub struct Generated {
    pub flags: Flags,
    pub details: Cow<'static, str>,
    pub failure: Option<Cow<'static, str>>,
}

impl Generated {
    /// A configured answer: redirect, direct response, CORS preflight.
    pub const DIRECT: Generated = Generated {
        flags: Flags::NONE,
        details: Cow::Borrowed("direct_response"),
        failure: None,
    };

    pub const FAULT_ABORT: Generated = Generated {
        flags: Flags::FAULT_INJECTED,
        details: Cow::Borrowed("fault_filter_abort"),
        failure: None,
    };
}

/// A configured local response; non-empty bodies are `text/plain`, as Envoy's.
pub fn text(status: StatusCode, body: Bytes) -> Response<Body> {
    reply(status, body, Generated::DIRECT)
}

/// A local response and what caused it.
pub fn reply(status: StatusCode, body: Bytes, generated: Generated) -> Response<Body> {
    let mut response = Response::new(Either::Right(Full::new(body.clone())));
    response.extensions_mut().insert(generated);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(SERVER, SERVER_NAME);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    if !body.is_empty() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    response
}

/// Envoy answers gRPC requests' local errors as trailers-only gRPC responses: HTTP 200 with
/// `grpc-status` mapped from the HTTP status and `grpc-message` carrying the body.
pub fn grpc_error(status: StatusCode, body: &[u8], generated: Generated) -> Response<Body> {
    let code = match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    };
    grpc_status(code, &String::from_utf8_lossy(body), generated)
}

/// A trailers-only gRPC answer with status `code` and, if not empty, `message`.
pub fn grpc_status(code: u8, message: &str, generated: Generated) -> Response<Body> {
    let mut grpc = reply(StatusCode::OK, Bytes::new(), generated);
    let headers = grpc.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(u16::from(code)));
    if let Ok(value) = HeaderValue::from_str(message) {
        if !message.is_empty() {
            headers.insert("grpc-message", value);
        }
    }
    grpc
}

/// The gRPC status code named `name` (`UNAVAILABLE`, ...), as fault injection's `grpcStatus` writes it.
pub fn grpc_code(name: &str) -> Option<u8> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.iter().position(|n| *n == name).map(|i| i as u8)
}

/// A redirect with an empty body (`httpsRedirect` and VirtualService `redirect`).
pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut response = text(status, Bytes::new());
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// BoringSSL's error for an alert received from the upstream (code 0x10000000 + 1000 + alert).
fn alert_reason(alert: rustls::AlertDescription) -> &'static str {
    use rustls::AlertDescription::*;
    match alert {
        BadCertificate => "remote connection failure, transport failure reason: TLS_error:|268436498:SSL routines:OPENSSL_internal:SSLV3_ALERT_BAD_CERTIFICATE:TLS_error_end",
        CertificateExpired => "remote connection failure, transport failure reason: TLS_error:|268436501:SSL routines:OPENSSL_internal:SSLV3_ALERT_CERTIFICATE_EXPIRED:TLS_error_end",
        CertificateUnknown => "remote connection failure, transport failure reason: TLS_error:|268436502:SSL routines:OPENSSL_internal:SSLV3_ALERT_CERTIFICATE_UNKNOWN:TLS_error_end",
        UnknownCA => "remote connection failure, transport failure reason: TLS_error:|268436504:SSL routines:OPENSSL_internal:TLSV1_ALERT_UNKNOWN_CA:TLS_error_end",
        ProtocolVersion => "remote connection failure, transport failure reason: TLS_error:|268436526:SSL routines:OPENSSL_internal:TLSV1_ALERT_PROTOCOL_VERSION:TLS_error_end",
        UnrecognisedName => "remote connection failure, transport failure reason: TLS_error:|268436568:SSL routines:OPENSSL_internal:TLSV1_ALERT_UNRECOGNIZED_NAME:TLS_error_end",
        CertificateRequired => "remote connection failure, transport failure reason: TLS_error:|268436572:SSL routines:OPENSSL_internal:TLSV1_ALERT_CERTIFICATE_REQUIRED:TLS_error_end",
        NoApplicationProtocol => "remote connection failure, transport failure reason: TLS_error:|268436576:SSL routines:OPENSSL_internal:TLSV1_ALERT_NO_APPLICATION_PROTOCOL:TLS_error_end",
        _ => "remote connection failure, transport failure reason: TLS_error:|268436496:SSL routines:OPENSSL_internal:SSLV3_ALERT_HANDSHAKE_FAILURE:TLS_error_end",
    }
}

/// Envoy's (BoringSSL's) wording for a failed upstream handshake.
fn tls_reason(failure: crate::upstream::TlsFailure) -> &'static str {
    use crate::upstream::TlsFailure::*;
    match failure {
        CertificateVerifyFailed => "remote connection failure, transport failure reason: TLS_error:|268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:TLS_error_end",
        Rejected(alert) => alert_reason(alert),
        Handshake => "remote connection failure, transport failure reason: TLS_error:|268435703:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER:TLS_error_end",
        NoCredential => "remote connection failure, transport failure reason: TLS_error:|the DestinationRule's TLS certificates are unavailable (see tollgate check):TLS_error_end",
    }
}
