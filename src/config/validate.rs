//! Istio's admission rules, per resource: what istiod's validating webhook would reject (errors)
//! or accept with a warning. Rules that need other resources live in the snapshot compiler.

use std::collections::HashSet;
use std::net::IpAddr;

use super::model::*;
use super::resource::{Resource, Spec};
use super::{Finding, Severity};
use crate::hosts;

/// Collects findings for one resource.
#[derive(Default)]
pub struct Findings(pub Vec<Finding>);

impl Findings {
    pub(super) fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Finding::new(
            Severity::Error,
            &field.into(),
            message.into(),
            None,
        ));
    }
    pub(super) fn error_hint(
        &mut self,
        field: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.0.push(Finding::new(
            Severity::Error,
            &field.into(),
            message.into(),
            Some(hint.into()),
        ));
    }
    pub(super) fn warn(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Finding::new(
            Severity::Warning,
            &field.into(),
            message.into(),
            None,
        ));
    }
}

pub const PROTOCOLS: &[&str] = &[
    "HTTP", "HTTPS", "HTTP2", "GRPC", "GRPC-WEB", "TLS", "TCP", "MONGO", "REDIS", "MYSQL", "UDP",
];
const TLS_MODES: &[&str] = &[
    "PASSTHROUGH",
    "SIMPLE",
    "MUTUAL",
    "AUTO_PASSTHROUGH",
    "ISTIO_MUTUAL",
    "OPTIONAL_MUTUAL",
];
const TLS_VERSIONS: &[&str] = &["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"];
const RESOLUTIONS: &[&str] = &["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"];
const LOCATIONS: &[&str] = &["MESH_EXTERNAL", "MESH_INTERNAL"];
const REDIRECT_CODES: &[i64] = &[301, 302, 303, 307, 308];
const DERIVE_PORTS: &[&str] = &["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"];

/// Validates one resource on its own.
pub fn validate(resource: &Resource) -> Vec<Finding> {
    let mut f = Findings::default();
    match &resource.spec {
        Spec::Gateway(spec) => gateway(spec, &resource.meta.name, &mut f),
        Spec::VirtualService(spec) => virtual_service(spec, &mut f),
        Spec::DestinationRule(spec) => destination_rule(spec, &mut f),
        Spec::ServiceEntry(spec) => service_entry(spec, &mut f),
        Spec::WorkloadEntry(spec) => workload_entry(spec, "spec", &mut f),
        Spec::Telemetry(spec) => telemetry(spec, &mut f),
        Spec::Secret(_) => {}
    }
    f.0
}

fn in_port_range(n: i64) -> bool {
    (1..=65535).contains(&n)
}

fn port_number(n: i64, field: &str, f: &mut Findings) {
    if !in_port_range(n) {
        f.error(field, format!("port number {n} is out of range 1-65535"));
    }
}

fn one_of(value: &str, allowed: &[&str], field: &str, what: &str, f: &mut Findings) -> bool {
    if allowed.contains(&value) {
        return true;
    }
    let hint = closest(value, allowed).map_or_else(
        || format!("one of {}", allowed.join(", ")),
        |c| format!("did you mean {c}?"),
    );
    f.error_hint(field, format!("unknown {what} {value:?}"), hint);
    false
}

fn closest<'a>(value: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| {
            (
                strsim::jaro_winkler(&a.to_ascii_uppercase(), &value.to_ascii_uppercase()),
                *a,
            )
        })
        .filter(|(s, _)| *s > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, a)| a)
}

// ------------------------------------------------------------------------------------------
// Gateway

fn gateway(spec: &GatewaySpec, name: &str, f: &mut Findings) {
    // Names with `~` are istiod's own, generated from Kubernetes Gateway API resources.
    if !hosts::is_dns1123_label(name) && !name.contains('~') {
        f.error(
            "metadata.name",
            format!("Gateway name {name:?} is not a valid DNS-1123 label"),
        );
    }
    if spec.servers.is_empty() {
        f.error("spec.servers", "a Gateway needs at least one server");
    }
    let mut port_names = HashSet::new();
    let mut server_names = HashSet::new();
    for (i, server) in spec.servers.iter().enumerate() {
        let field = format!("spec.servers[{i}]");
        gateway_server(server, &field, f);
        if let Some(port) = &server.port {
            if !port.name.is_empty() && !port_names.insert(port.name.as_str()) {
                f.error(
                    format!("{field}.port.name"),
                    format!(
                        "port name {:?} is used by another server of this Gateway",
                        port.name
                    ),
                );
            }
        }
        if let Some(n) = server.name.as_deref().filter(|n| !n.is_empty()) {
            if !server_names.insert(n) {
                f.warn(
                    format!("{field}.name"),
                    format!("server name {n:?} is not unique in this Gateway"),
                );
            }
        }
    }
}

fn gateway_server(server: &Server, field: &str, f: &mut Findings) {
    let Some(port) = &server.port else {
        f.error(format!("{field}.port"), "is required");
        return;
    };
    let unix_bind = server
        .bind
        .as_deref()
        .is_some_and(|b| b.starts_with("unix://"));
    if !(unix_bind && port.number == 0) {
        port_number(port.number, &format!("{field}.port.number"), f);
    }
    let protocol = port.protocol.to_ascii_uppercase();
    one_of(
        &protocol,
        PROTOCOLS,
        &format!("{field}.port.protocol"),
        "protocol",
        f,
    );
    if port.name.is_empty() {
        f.error(format!("{field}.port.name"), "is required");
    }
    if port.target_port.is_some_and(|t| t != 0) {
        f.error(
            format!("{field}.port.targetPort"),
            "has no effect on a Gateway and is rejected",
        );
    }
    if server.hosts.is_empty() {
        f.error(format!("{field}.hosts"), "a server needs at least one host");
    }
    for (i, host) in server.hosts.iter().enumerate() {
        if let Err(problem) = hosts::validate_gateway_host(host) {
            f.error(format!("{field}.hosts[{i}]"), problem);
        }
    }
    if let Some(bind) = &server.bind {
        if !unix_bind && bind.parse::<IpAddr>().is_err() {
            f.error(
                format!("{field}.bind"),
                format!("{bind:?} is not an IP address or unix:// path"),
            );
        }
    }
    server_tls(server.tls.as_ref(), &protocol, &format!("{field}.tls"), f);
}

fn is_http_family(protocol: &str) -> bool {
    matches!(protocol, "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB")
}

fn server_tls(tls: Option<&ServerTls>, protocol: &str, field: &str, f: &mut Findings) {
    let Some(tls) = tls else {
        if matches!(protocol, "HTTPS" | "TLS") {
            f.error(field, format!("{protocol} servers require tls settings"));
        }
        return;
    };
    let only_redirect = *tls
        == ServerTls {
            https_redirect: tls.https_redirect,
            ..ServerTls::default()
        };
    if is_http_family(protocol) || !matches!(protocol, "HTTPS" | "TLS") {
        if !only_redirect {
            f.error(
                field,
                format!("a {protocol} server cannot have TLS settings other than httpsRedirect"),
            );
        } else if tls.https_redirect && !is_http_family(protocol) {
            f.warn(
                format!("{field}.httpsRedirect"),
                format!("has no effect on a {protocol} server"),
            );
        }
        return;
    }
    if tls.https_redirect {
        f.warn(
            format!("{field}.httpsRedirect"),
            format!("has no effect on a {protocol} server"),
        );
    }
    let mode = tls.mode.as_deref().unwrap_or("PASSTHROUGH");
    if !one_of(mode, TLS_MODES, &format!("{field}.mode"), "TLS mode", f) {
        return;
    }
    tls_sources(tls, mode, field, f);
    for (name, value) in [
        ("minProtocolVersion", &tls.min_protocol_version),
        ("maxProtocolVersion", &tls.max_protocol_version),
    ] {
        if let Some(v) = value {
            one_of(
                v,
                TLS_VERSIONS,
                &format!("{field}.{name}"),
                "TLS version",
                f,
            );
        }
    }
}

fn tls_sources(tls: &ServerTls, mode: &str, field: &str, f: &mut Findings) {
    let file_mode = tls.server_certificate.is_some() || tls.private_key.is_some();
    let sources = [
        tls.credential_name.is_some(),
        !tls.credential_names.is_empty(),
        file_mode,
        !tls.tls_certificates.is_empty(),
    ];
    let count = sources.iter().filter(|s| **s).count();
    if count > 1 {
        f.error(field, "only one of credentialName, credentialNames, serverCertificate/privateKey and tlsCertificates may be set");
    }
    if tls.credential_names.len() > 2 {
        f.error(
            format!("{field}.credentialNames"),
            "at most two credentials (one RSA, one ECDSA) may be given",
        );
    }
    if tls.tls_certificates.len() > 2 {
        f.warn(
            format!("{field}.tlsCertificates"),
            "only the first two certificates are used",
        );
    }
    let terminating = matches!(mode, "SIMPLE" | "MUTUAL" | "OPTIONAL_MUTUAL");
    if terminating && count == 0 {
        f.error(field, format!("{mode} mode requires a certificate: set credentialName or serverCertificate and privateKey"));
    }
    if terminating && file_mode && (tls.server_certificate.is_none() || tls.private_key.is_none()) {
        f.error(
            field,
            "serverCertificate and privateKey must be set together",
        );
    }
    if matches!(mode, "MUTUAL" | "OPTIONAL_MUTUAL") && file_mode && tls.ca_certificates.is_none() {
        f.error(
            format!("{field}.caCertificates"),
            format!("{mode} mode with file certificates requires a client CA bundle"),
        );
    }
    if mode == "ISTIO_MUTUAL" && (count > 0 || tls.ca_certificates.is_some()) {
        f.error(
            field,
            "ISTIO_MUTUAL mode uses the mesh certificates; certificate fields are not allowed",
        );
    }
    if tls.ca_crl.is_some() && (tls.credential_name.is_some() || mode == "SIMPLE") {
        f.error(
            format!("{field}.caCrl"),
            "caCrl cannot be used with credentialName or SIMPLE mode",
        );
    }
    if mode == "PASSTHROUGH" && (count > 0 || tls.ca_certificates.is_some()) {
        let why = if tls.mode.is_none() {
            "tls.mode is not set, so it defaults to PASSTHROUGH"
        } else {
            "mode is PASSTHROUGH"
        };
        f.warn(
            field,
            format!("{why}: the certificate settings are ignored and TLS is not terminated"),
        );
    }
}

// ------------------------------------------------------------------------------------------
// VirtualService

fn virtual_service(spec: &VirtualServiceSpec, f: &mut Findings) {
    let delegate = spec.hosts.is_empty();
    if delegate && (!spec.gateways.is_empty() || !spec.tcp.is_empty() || !spec.tls.is_empty()) {
        f.error(
            "spec.hosts",
            "a VirtualService needs at least one host (only HTTP delegates may omit them)",
        );
    }
    if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
        f.error(
            "spec",
            "at least one of http, tcp or tls routes must be given",
        );
    }
    let mesh_applies = spec.gateways.is_empty() || spec.gateways.iter().any(|g| g == "mesh");
    vs_hosts(&spec.hosts, mesh_applies, f);
    for (i, gw) in spec.gateways.iter().enumerate() {
        if let Err(problem) = hosts::validate_gateway_ref(gw) {
            f.error(format!("spec.gateways[{i}]"), problem);
        }
    }
    for (i, route) in spec.http.iter().enumerate() {
        http_route(route, &format!("spec.http[{i}]"), f);
    }
    for (i, route) in spec.tls.iter().enumerate() {
        let field = format!("spec.tls[{i}]");
        if route.matches.is_empty() {
            f.error(
                format!("{field}.match"),
                "TLS routes need at least one match with sniHosts",
            );
        }
        for (j, m) in route.matches.iter().enumerate() {
            if m.sni_hosts.is_empty() {
                f.error(format!("{field}.match[{j}].sniHosts"), "is required");
            }
            for (k, sni) in m.sni_hosts.iter().enumerate() {
                // Istio's rule: an SNI host must be one of (or under) the VirtualService's hosts.
                let short = !sni.contains('.') && sni != "*";
                if !short && !spec.hosts.iter().any(|h| hosts::subset_of(sni, h)) {
                    f.error(
                        format!("{field}.match[{j}].sniHosts[{k}]"),
                        format!(
                            "SNI host {sni:?} is not a subset of any of the VirtualService's hosts"
                        ),
                    );
                }
            }
            if let Some(p) = m.port {
                port_number(p, &format!("{field}.match[{j}].port"), f);
            }
        }
        destinations(
            route.route.iter().map(|d| (&d.destination, d.weight)),
            &field,
            f,
        );
    }
    for (i, route) in spec.tcp.iter().enumerate() {
        let field = format!("spec.tcp[{i}]");
        for (j, m) in route.matches.iter().enumerate() {
            if let Some(p) = m.port {
                port_number(p, &format!("{field}.match[{j}].port"), f);
            }
        }
        destinations(
            route.route.iter().map(|d| (&d.destination, d.weight)),
            &field,
            f,
        );
    }
}

fn vs_hosts(list: &[String], mesh_applies: bool, f: &mut Findings) {
    let mut seen = HashSet::new();
    for (i, host) in list.iter().enumerate() {
        let field = format!("spec.hosts[{i}]");
        if host == "*" && mesh_applies {
            f.error(&field, "`*` is not allowed when the VirtualService applies to the mesh (no gateways or `mesh` listed)");
        } else if let Err(problem) = hosts::validate_vs_host(host) {
            f.error(&field, problem);
        }
        if !seen.insert(host.to_ascii_lowercase()) {
            f.error(&field, format!("duplicate host {host:?}"));
        }
    }
}

fn http_route(route: &HttpRoute, field: &str, f: &mut Findings) {
    let actions = [
        !route.route.is_empty(),
        route.redirect.is_some(),
        route.direct_response.is_some(),
        route.delegate.is_some(),
    ];
    match actions.iter().filter(|a| **a).count() {
        0 => f.error(
            field,
            "an HTTP route needs one of route, redirect, directResponse or delegate",
        ),
        1 => {}
        _ => f.error(
            field,
            "only one of route, redirect, directResponse and delegate may be set",
        ),
    }
    if (route.redirect.is_some() || route.direct_response.is_some())
        && (route.rewrite.is_some() || route.fault.is_some())
    {
        f.error(
            field,
            "rewrite and fault cannot be combined with redirect or directResponse",
        );
    }
    if route.mirror.is_some() && !route.mirrors.is_empty() {
        f.error(
            format!("{field}.mirrors"),
            "mirror and mirrors are mutually exclusive",
        );
    }
    for (j, m) in route.matches.iter().enumerate() {
        http_match(m, &format!("{field}.match[{j}]"), f);
    }
    destinations(
        route.route.iter().map(|d| (&d.destination, d.weight)),
        field,
        f,
    );
    if let Some(r) = &route.redirect {
        redirect(r, &format!("{field}.redirect"), f);
    }
    super::policy::http_route(route, field, f);
    if let Some(d) = &route.direct_response {
        if !(200..=599).contains(&d.status) {
            f.error(
                format!("{field}.directResponse.status"),
                format!("status {} is outside 200-599", d.status),
            );
        }
    }
}

fn redirect(r: &HttpRedirect, field: &str, f: &mut Findings) {
    if let Some(code) = r.redirect_code {
        if !REDIRECT_CODES.contains(&code) {
            f.error(
                format!("{field}.redirectCode"),
                format!("redirect code {code} is not one of 301, 302, 303, 307, 308"),
            );
        }
    }
    if let Some(p) = r.port {
        port_number(p, &format!("{field}.port"), f);
    }
    if let Some(d) = &r.derive_port {
        one_of(
            d,
            DERIVE_PORTS,
            &format!("{field}.derivePort"),
            "derivePort",
            f,
        );
    }
    if let Some(s) = &r.scheme {
        if !matches!(s.as_str(), "http" | "https") {
            f.error(
                format!("{field}.scheme"),
                format!("scheme {s:?} must be http or https"),
            );
        }
    }
}

fn http_match(m: &HttpMatch, field: &str, f: &mut Findings) {
    let simple = [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ];
    for (name, sm) in simple {
        if let Some(sm) = sm {
            string_match(sm, &format!("{field}.{name}"), name == "uri", false, f);
        }
    }
    for (group, map) in [
        ("headers", &m.headers),
        ("queryParams", &m.query_params),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (key, sm) in map {
            string_match(sm, &format!("{field}.{group}.{key}"), false, true, f);
        }
    }
    if let Some(p) = m.port {
        port_number(p, &format!("{field}.port"), f);
    }
}

/// Exactly one matcher (or none where presence matching is allowed); non-empty prefix/regex; RE2 regexes compile.
pub(super) fn string_match(
    sm: &StringMatch,
    field: &str,
    empty_prefix_ok: bool,
    presence_ok: bool,
    f: &mut Findings,
) {
    let set = [sm.exact.is_some(), sm.prefix.is_some(), sm.regex.is_some()]
        .iter()
        .filter(|s| **s)
        .count();
    if set > 1 {
        f.error(field, "only one of exact, prefix and regex may be set");
    }
    if set == 0 && !presence_ok {
        f.error(field, "one of exact, prefix or regex is required");
    }
    if sm.prefix.as_deref() == Some("") && !empty_prefix_ok {
        f.error(format!("{field}.prefix"), "must not be empty");
    }
    if let Some(re) = &sm.regex {
        if re.is_empty() {
            f.error(format!("{field}.regex"), "must not be empty");
        } else if re.len() > 1024 {
            f.error(format!("{field}.regex"), "is longer than 1024 characters");
        } else if let Err(e) = (re != "*")
            .then(|| crate::route::compile_regex(re))
            .transpose()
        {
            f.error(
                format!("{field}.regex"),
                format!("does not compile: {}", last_line(&e.to_string())),
            );
        }
    }
}

/// The regex crate's messages end with the useful line.
fn last_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

fn destinations<'a>(
    list: impl Iterator<Item = (&'a Destination, Option<i64>)>,
    field: &str,
    f: &mut Findings,
) {
    let mut total = 0i64;
    let mut count = 0;
    for (i, (dest, weight)) in list.enumerate() {
        let at = format!("{field}.route[{i}]");
        count += 1;
        if dest.host.is_empty() {
            f.error(format!("{at}.destination.host"), "is required");
        } else if let Err(problem) = hosts::validate_destination_host(&dest.host) {
            f.error(format!("{at}.destination.host"), problem);
        }
        if let Some(subset) = &dest.subset {
            if !hosts::is_dns1123_label(subset) {
                f.error(
                    format!("{at}.destination.subset"),
                    format!("subset name {subset:?} is not a valid DNS-1123 label"),
                );
            }
        }
        if let Some(port) = &dest.port {
            port_number(port.number, &format!("{at}.destination.port.number"), f);
        }
        match weight {
            Some(w) if w < 0 => f.error(
                format!("{at}.weight"),
                format!("weight {w} must not be negative"),
            ),
            // Istio's weight is an int32.
            Some(w) if w > i64::from(i32::MAX) => f.error(
                format!("{at}.weight"),
                format!("weight {w} is larger than {}", i32::MAX),
            ),
            Some(w) => total += w,
            None => {}
        }
    }
    if count > 1 && total == 0 {
        f.error(
            format!("{field}.route"),
            "the destinations' weights add up to 0",
        );
    }
}

// ------------------------------------------------------------------------------------------
// DestinationRule, ServiceEntry, WorkloadEntry

fn destination_rule(spec: &DestinationRuleSpec, f: &mut Findings) {
    if spec.host.is_empty() {
        f.error("spec.host", "is required");
    } else if let Err(problem) = hosts::validate_destination_host(&spec.host) {
        f.error("spec.host", problem);
    }
    let mut names = HashSet::new();
    for (i, subset) in spec.subsets.iter().enumerate() {
        let field = format!("spec.subsets[{i}].name");
        if !hosts::is_dns1123_label(&subset.name) {
            f.error(
                &field,
                format!(
                    "subset name {:?} is not a valid DNS-1123 label",
                    subset.name
                ),
            );
        }
        if !names.insert(subset.name.as_str()) {
            f.error(&field, format!("duplicate subset name {:?}", subset.name));
        }
        if let Some(tp) = &subset.traffic_policy {
            super::traffic_policy::traffic_policy(
                tp,
                &format!("spec.subsets[{i}].trafficPolicy"),
                f,
            );
        }
    }
    if let Some(tp) = &spec.traffic_policy {
        super::traffic_policy::traffic_policy(tp, "spec.trafficPolicy", f);
    }
}

fn service_entry(spec: &ServiceEntrySpec, f: &mut Findings) {
    if spec.hosts.is_empty() {
        f.error("spec.hosts", "a ServiceEntry needs at least one host");
    }
    for (i, host) in spec.hosts.iter().enumerate() {
        if host == "*" {
            f.error(
                format!("spec.hosts[{i}]"),
                "`*` is not allowed as a ServiceEntry host",
            );
        } else if let Err(problem) = hosts::validate_destination_host(host) {
            f.error(format!("spec.hosts[{i}]"), problem);
        }
    }
    let port_names = service_ports(&spec.ports, f);
    let resolution = spec.resolution.as_deref().unwrap_or("NONE");
    one_of(resolution, RESOLUTIONS, "spec.resolution", "resolution", f);
    if let Some(location) = &spec.location {
        one_of(location, LOCATIONS, "spec.location", "location", f);
    }
    if spec.workload_selector.is_some() && !spec.endpoints.is_empty() {
        f.error("spec.workloadSelector", "cannot be combined with endpoints");
    }
    if resolution == "DNS_ROUND_ROBIN" && spec.endpoints.len() > 1 {
        f.error(
            "spec.endpoints",
            "DNS_ROUND_ROBIN allows at most one endpoint",
        );
    }
    if resolution == "NONE" && !spec.endpoints.is_empty() {
        f.warn("spec.endpoints", "resolution NONE forwards to the original destination; endpoints are ignored at a gateway");
    }
    for (i, ep) in spec.endpoints.iter().enumerate() {
        let field = format!("spec.endpoints[{i}]");
        workload_entry(ep, &field, f);
        if resolution == "STATIC"
            && !ep.address.starts_with("unix://")
            && ep.address.parse::<IpAddr>().is_err()
        {
            f.error(
                format!("{field}.address"),
                format!(
                    "{:?} is not an IP address (required with resolution STATIC)",
                    ep.address
                ),
            );
        }
        for name in ep.ports.keys() {
            if !port_names.contains(name.as_str()) {
                f.error(
                    format!("{field}.ports.{name}"),
                    format!("{name:?} is not the name of a port of this ServiceEntry"),
                );
            }
        }
    }
}

fn service_ports<'a>(ports: &'a [ServicePort], f: &mut Findings) -> HashSet<&'a str> {
    let mut names = HashSet::new();
    let mut numbers = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        port_number(port.number, &format!("{field}.number"), f);
        if let Some(t) = port.target_port {
            port_number(t, &format!("{field}.targetPort"), f);
        }
        if port.name.is_empty() {
            f.error(format!("{field}.name"), "is required");
        } else if !names.insert(port.name.as_str()) {
            f.error(
                format!("{field}.name"),
                format!("duplicate port name {:?}", port.name),
            );
        }
        if !numbers.insert(port.number) {
            f.error(
                format!("{field}.number"),
                format!("duplicate port number {}", port.number),
            );
        }
        if let Some(p) = &port.protocol {
            one_of(
                &p.to_ascii_uppercase(),
                PROTOCOLS,
                &format!("{field}.protocol"),
                "protocol",
                f,
            );
        }
    }
    names
}

/// What a gateway does with a Telemetry: access logging through the built-in `envoy` provider.
fn telemetry(spec: &TelemetrySpec, f: &mut Findings) {
    if spec.target_ref.is_some() || !spec.target_refs.is_empty() {
        f.warn("spec.targetRef", "targetRef selects Gateway API resources; tollgate applies this Telemetry by namespace and selector only");
    }
    if !spec.metrics.is_empty() {
        f.warn("spec.metrics", "metrics overrides are accepted but not applied by tollgate: Istio's standard metrics are always reported");
    }
    if !spec.tracing.is_empty() {
        f.warn("spec.tracing", "tracing is accepted but not applied by tollgate: trace headers are propagated, no spans are reported");
    }
    for (i, logging) in spec.access_logging.iter().enumerate() {
        let field = format!("spec.accessLogging[{i}]");
        for (j, provider) in logging.providers.iter().enumerate() {
            if provider.name != crate::telemetry::ENVOY_PROVIDER {
                f.warn(format!("{field}.providers[{j}].name"), format!("provider {:?} is not available at tollgate; only the built-in \"envoy\" file provider (--access-log) is", provider.name));
            }
        }
        if logging.filter.is_some() {
            f.warn(
                format!("{field}.filter"),
                "CEL filters are not evaluated by tollgate: every request and stream is logged",
            );
        }
        if logging.match_.is_some() {
            f.warn(
                format!("{field}.match"),
                "match (client/server mode) is ignored: a gateway logs as the client side",
            );
        }
    }
}

fn workload_entry(spec: &WorkloadEntrySpec, field: &str, f: &mut Findings) {
    if spec.address.is_empty() && spec.network.is_none() {
        f.error(format!("{field}.address"), "is required");
    }
    for (name, port) in &spec.ports {
        port_number(*port, &format!("{field}.ports.{name}"), f);
    }
    if let Some(w) = spec.weight {
        if !(0..=i64::from(u32::MAX)).contains(&w) {
            f.error(
                format!("{field}.weight"),
                format!("weight {w} is out of range"),
            );
        }
    }
}
