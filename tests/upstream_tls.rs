//! DestinationRule `trafficPolicy.tls` (Istio ClientTLSSettings) end to end on loopback: tollgate
//! originates TLS to an `openssl s_server -www` upstream, which answers any GET with a status page
//! saying whether the client presented a certificate (`no client certificate available` or
//! `Client certificate` followed by the PEM).
//!
//! Covered: SIMPLE with `caCertificates`; MUTUAL with `clientCertificate`/`privateKey` against a
//! server that requires a client certificate (`s_server -Verify 1`, TLS 1.3 and 1.2), and SIMPLE
//! or a foreign client certificate refused there; certificate checks (a foreign CA,
//! `subjectAltNames` DNS and URI, auto SAN validation against the request's Host, a fixed `sni`
//! that checks the chain only, `insecureSkipVerify`); the SNI sent (the request's Host without its
//! port, or `sni`), observed with `s_server -servername <name> -servername_fatal`;
//! `credentialName` from a Secret in the gateway's namespace, a Secret in the rule's namespace and
//! a `<certs-dir>/<name>/` folder; unusable material (an error on the rule's
//! `spec.trafficPolicy.tls` in the config dump and in `tollgate check`, 503 `TLS_error` for that
//! destination, the rest of the config serving); plain text or `mode: DISABLE` to the TLS port
//! failing; and TCP routes originating TLS (no SNI, chain and `subjectAltNames` checks).
//!
//! Certificates are made with rcgen in a temp dir: a CA, a server certificate for
//! `secure.example.com` (plus the URI SAN `spiffe://example/secure`), a client certificate, and an
//! unrelated CA with its own client certificate. Each destination is a STATIC ServiceEntry
//! `<name>.internal` (port 80, HTTP) on the s_server's 127.0.0.1 port with its own
//! DestinationRule; one VirtualService picks the destination by the `x-dest` request header.
//! Every request has a client timeout, and s_server's output is in every failure message.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use support::*;

// ------------------------------------------------------------------------------------------
// Helpers

/// The host whose certificate the upstream serves.
const HOST: &str = "secure.example.com";
/// Another host of the `edge` Gateway, routed to the same destinations.
const OTHER: &str = "other.example.com";
/// The URI SAN of the server certificate.
const SPIFFE: &str = "spiffe://example/secure";
/// The status page of `s_server -www` without and with a client certificate.
const NO_CLIENT_CERT: &str = "no client certificate available";
const CLIENT_CERT: &str = "Client certificate";
const VERIFY_FAILED: &str = "CERTIFICATE_VERIFY_FAILED";

/// PEM files in a temp dir: `ca.pem`, `server.pem`/`server.key` (signed by `ca.pem`, DNS SAN
/// `secure.example.com` and URI SAN `spiffe://example/secure`), `client.pem`/`client.key` (signed
/// by `ca.pem`), `other-ca.pem` and `other-client.pem`/`other-client.key` (an unrelated CA and a
/// client certificate it signed).
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose, SanType,
        };
        let dir = tempfile::Builder::new()
            .prefix("tollgate-upstream-pki-")
            .tempdir()
            .expect("create the PKI temp dir");
        let ca = |cn: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            params.distinguished_name.push(DnType::CommonName, cn);
            let key = KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            (cert, key)
        };
        let (ca_cert, ca_key) = ca("upstream test CA");
        let (other_cert, other_key) = ca("unrelated test CA");
        let leaf = |cn: &str,
                    dns: &str,
                    uri: Option<&str>,
                    usage: ExtendedKeyUsagePurpose,
                    (issuer, issuer_key): (&rcgen::Certificate, &KeyPair)| {
            let mut params = CertificateParams::new(vec![dns.to_string()]).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            if let Some(uri) = uri {
                params
                    .subject_alt_names
                    .push(SanType::URI(uri.try_into().unwrap()));
            }
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, issuer, issuer_key).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server, server_key) = leaf(
            HOST,
            HOST,
            Some(SPIFFE),
            ExtendedKeyUsagePurpose::ServerAuth,
            (&ca_cert, &ca_key),
        );
        let (client, client_key) = leaf(
            "upstream client",
            "client.example.com",
            None,
            ExtendedKeyUsagePurpose::ClientAuth,
            (&ca_cert, &ca_key),
        );
        let (other_client, other_client_key) = leaf(
            "foreign client",
            "foreign.example.com",
            None,
            ExtendedKeyUsagePurpose::ClientAuth,
            (&other_cert, &other_key),
        );
        for (name, text) in [
            ("ca.pem", ca_cert.pem()),
            ("server.pem", server),
            ("server.key", server_key),
            ("client.pem", client),
            ("client.key", client_key),
            ("other-ca.pem", other_cert.pem()),
            ("other-client.pem", other_client),
            ("other-client.key", other_client_key),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Pki { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The path of `name` as a YAML scalar.
    fn yaml(&self, name: &str) -> String {
        yaml_str(&self.file(name).display().to_string())
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name)).unwrap()
    }

    /// `openssl s_server -www` with the server certificate and `extra` arguments.
    fn server(&self, extra: &[&str]) -> OpensslServer {
        OpensslServer::start_with(&self.file("server.pem"), &self.file("server.key"), extra)
    }

    /// [`Pki::server`] that requires a client certificate signed by `ca.pem` (without
    /// `-verify_return_error`, s_server would only log a failed verification), with `extra`
    /// arguments.
    fn verifying_server(&self, extra: &[&str]) -> OpensslServer {
        let ca = self.file("ca.pem").display().to_string();
        let mut args = vec!["-Verify", "1", "-verify_return_error", "-CAfile", &ca];
        args.extend_from_slice(extra);
        self.server(&args)
    }

    /// The base64 body of the client certificate, for finding it in s_server's page.
    fn client_base64(&self) -> String {
        self.read("client.pem")
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect()
    }
}

/// A destination: ServiceEntry `<name>.internal` (port 80, HTTP) on `addr`, with a
/// DestinationRule whose `trafficPolicy.tls` is `tls` (YAML flow mapping), or none when empty.
struct Dest {
    name: &'static str,
    addr: SocketAddr,
    tls: String,
}

fn dest(name: &'static str, server: &OpensslServer, tls: impl Into<String>) -> Dest {
    Dest {
        name,
        addr: server.addr,
        tls: tls.into(),
    }
}

/// DestinationRule `<name>` for `<name>.internal` with `trafficPolicy.tls: <tls>`.
fn dr(name: &str, tls: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\n\
         spec:\n  host: {name}.internal\n  trafficPolicy:\n    tls: {tls}\n"
    )
}

/// The config files for `dests`: `gateway.yaml` (Gateway `edge` and a VirtualService for
/// secure.example.com and other.example.com sending `x-dest: <name>` to `<name>.internal`),
/// `se-<name>.yaml` and `dr-<name>.yaml` per destination.
fn config_files(dests: &[Dest]) -> Vec<(String, String)> {
    let mut http = String::new();
    for d in dests {
        http.push_str(&format!(
            "  - match: [{{headers: {{x-dest: {{exact: {0}}}}}}}]\n    \
             route: [{{destination: {{host: {0}.internal}}}}]\n",
            d.name
        ));
    }
    let vs = format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: upstream}}\n\
         spec:\n  hosts: [{HOST}, {OTHER}]\n  gateways: [edge]\n  http:\n{http}"
    );
    let mut files = vec![(
        "gateway.yaml".to_string(),
        format!("{EDGE_GATEWAY}---\n{vs}"),
    )];
    for d in dests {
        let endpoint: Endpoint<'_> = (d.addr, vec![]);
        files.push((
            format!("se-{}.yaml", d.name),
            service_entry_80(d.name, &format!("{}.internal", d.name), &[endpoint]),
        ));
        if !d.tls.is_empty() {
            files.push((format!("dr-{}.yaml", d.name), dr(d.name, &d.tls)));
        }
    }
    files
}

/// A gateway (`--port-map 80=0` plus `args`) serving `dests` and `extra` files; fails unless
/// everything loads without errors.
fn start(dests: &[Dest], extra: &[(String, String)], args: &[&str]) -> World {
    let mut files = config_files(dests);
    files.extend(extra.iter().cloned());
    let files: Vec<(&str, String)> = files.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    World::start(args, Vec::new(), &files)
}

/// GET `/` with Host `host` routed to destination `dest`.
fn call(w: &World, host: &str, dest: &str) -> Response {
    w.get(host, "/", &[("x-dest", dest)])
}

/// What a case expects of the response.
enum Expect<'a> {
    /// 200 with a body containing this text (s_server's page).
    Page(&'a str),
    /// 503 with a body containing this text.
    Unavailable(&'a str),
    /// Anything but 200.
    Not200,
}

/// Requests each `(host, dest, expectation)` and returns one line per unmet expectation.
fn run_cases(w: &World, cases: &[(&str, &str, Expect<'_>)]) -> Vec<String> {
    let mut failures = Vec::new();
    for (host, dest, expect) in cases {
        let r = call(w, host, dest);
        let body = &r.body;
        let problem = match expect {
            Expect::Page(text) if r.status != 200 || !body.contains(text) => {
                Some(format!("expected 200 with {text:?}"))
            }
            Expect::Unavailable(text) if r.status != 503 || !body.contains(text) => {
                Some(format!("expected 503 with {text:?}"))
            }
            Expect::Not200 if r.status == 200 => Some("expected anything but 200".to_string()),
            _ => None,
        };
        if let Some(problem) = problem {
            failures.push(format!(
                "[Host {host}, x-dest {dest}] {problem}, got {}: {}",
                r.status,
                short(body)
            ));
        }
    }
    failures
}

/// Fails the test with `failures` (if any), s_server's output and the gateway's.
fn report(w: &World, failures: &[String], servers: &[(&str, &OpensslServer)]) {
    if failures.is_empty() {
        return;
    }
    let mut msg = format!(
        "{} case(s) failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    for (name, server) in servers {
        msg.push_str(&format!(
            "\n--- s_server {name} ({}) output:\n{}",
            server.addr,
            server.output()
        ));
    }
    w.gw.fail(msg);
}

/// A Secret `name` (in `namespace`, or the default one when `None`) with base64 `data`.
fn secret(name: &str, namespace: Option<&str>, entries: &[(&str, String)]) -> String {
    let ns = namespace.map_or(String::new(), |ns| format!(", namespace: {ns}"));
    let mut y = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}{ns}}}\ntype: Opaque\ndata:\n"
    );
    for (key, value) in entries {
        let encoded = base64::engine::general_purpose::STANDARD.encode(value);
        y.push_str(&format!("  {key}: {encoded}\n"));
    }
    y
}

// ------------------------------------------------------------------------------------------
// HTTP routes

#[test]
fn simple_tls_verifies_the_upstream_with_ca_certificates() {
    let pki = Pki::new();
    let server = pki.server(&[]);
    let tls = format!("{{mode: SIMPLE, caCertificates: {}}}", pki.yaml("ca.pem"));
    let w = start(&[dest("simple", &server, tls)], &[], &[]);
    let mut failures = run_cases(&w, &[(HOST, "simple", Expect::Page(NO_CLIENT_CERT))]);
    // s_server's page describes the TLS session tollgate made.
    let r = call(&w, HOST, "simple");
    if r.status == 200 && !r.body.contains("Protocol  : TLSv1.") {
        failures.push(format!("the page shows no TLS session: {}", short(&r.body)));
    }
    report(&w, &failures, &[("plain", &server)]);
}

#[test]
fn mutual_tls_presents_the_client_certificate() {
    let pki = Pki::new();
    let server = pki.verifying_server(&[]);
    // With TLS 1.2 the server's refusal is an alert within the handshake; with TLS 1.3 it comes
    // after the client's Finished, when the request is already on its way.
    let server12 = pki.verifying_server(&["-tls1_2"]);
    let ca = pki.yaml("ca.pem");
    let mutual = format!(
        "{{mode: MUTUAL, clientCertificate: {}, privateKey: {}, caCertificates: {ca}}}",
        pki.yaml("client.pem"),
        pki.yaml("client.key")
    );
    let foreign = format!(
        "{{mode: MUTUAL, clientCertificate: {}, privateKey: {}, caCertificates: {ca}}}",
        pki.yaml("other-client.pem"),
        pki.yaml("other-client.key")
    );
    let simple = format!("{{mode: SIMPLE, caCertificates: {ca}}}");
    let w = start(
        &[
            dest("mutual", &server, mutual.clone()),
            dest("simple", &server, simple.clone()),
            dest("foreign", &server, foreign.clone()),
            dest("mutual12", &server12, mutual),
            dest("simple12", &server12, simple),
            dest("foreign12", &server12, foreign),
        ],
        &[],
        &[],
    );
    let mut failures = run_cases(
        &w,
        &[
            (HOST, "mutual", Expect::Page(CLIENT_CERT)),
            // s_server -Verify 1 refuses a handshake without a client certificate ...
            (HOST, "simple", Expect::Unavailable("")),
            // ... and one whose certificate its CA did not sign.
            (HOST, "foreign", Expect::Unavailable("")),
            (HOST, "mutual12", Expect::Page(CLIENT_CERT)),
            (
                HOST,
                "simple12",
                Expect::Unavailable("SSLV3_ALERT_HANDSHAKE_FAILURE"),
            ),
            (HOST, "foreign12", Expect::Unavailable("TLS_error")),
        ],
    );
    // The certificate s_server saw is the one configured, on the protocol each server speaks.
    for (d, protocol) in [("mutual", "TLSv1.3"), ("mutual12", "TLSv1.2")] {
        let r = call(&w, HOST, d);
        let page: String = r.body.split_whitespace().collect();
        if r.status == 200 && !page.contains(&pki.client_base64()) {
            failures.push(format!(
                "[x-dest {d}] the page does not show client.pem: {}",
                short(&r.body)
            ));
        }
        if r.status == 200 && !r.body.contains(&format!("Protocol  : {protocol}")) {
            failures.push(format!("[x-dest {d}] the session is not {protocol}"));
        }
    }
    report(
        &w,
        &failures,
        &[
            ("-Verify 1 -verify_return_error", &server),
            ("-Verify 1 -verify_return_error -tls1_2", &server12),
        ],
    );
}

#[test]
fn certificate_checks_chain_subject_alt_names_auto_san_and_skip() {
    let pki = Pki::new();
    let server = pki.server(&[]);
    let (ca, other) = (pki.yaml("ca.pem"), pki.yaml("other-ca.pem"));
    let simple = |extra: &str| format!("{{mode: SIMPLE, caCertificates: {ca}{extra}}}");
    let w = start(
        &[
            dest("good", &server, simple("")),
            dest(
                "wrong-ca",
                &server,
                format!("{{mode: SIMPLE, caCertificates: {other}}}"),
            ),
            dest(
                "san-other",
                &server,
                simple(", subjectAltNames: [\"spiffe://example/other\"]"),
            ),
            dest(
                "san-dns",
                &server,
                simple(&format!(", subjectAltNames: [{HOST}]")),
            ),
            dest(
                "san-uri",
                &server,
                simple(&format!(", subjectAltNames: [\"{SPIFFE}\"]")),
            ),
            dest(
                "skip",
                &server,
                format!("{{mode: SIMPLE, caCertificates: {other}, insecureSkipVerify: true}}"),
            ),
            dest("fixed-sni", &server, simple(&format!(", sni: {HOST}"))),
            dest(
                "fixed-sni-wrong-ca",
                &server,
                format!("{{mode: SIMPLE, caCertificates: {other}, sni: {HOST}}}"),
            ),
            dest(
                "fixed-sni-san-other",
                &server,
                simple(&format!(
                    ", sni: {HOST}, subjectAltNames: [\"spiffe://example/other\"]"
                )),
            ),
        ],
        &[],
        &[],
    );
    let failures = run_cases(
        &w,
        &[
            (HOST, "good", Expect::Page(NO_CLIENT_CERT)),
            // The chain must lead to caCertificates.
            (HOST, "wrong-ca", Expect::Unavailable(VERIFY_FAILED)),
            // subjectAltNames: the certificate must carry one of them exactly (DNS or URI).
            (HOST, "san-other", Expect::Unavailable(VERIFY_FAILED)),
            (HOST, "san-dns", Expect::Page(NO_CLIENT_CERT)),
            (HOST, "san-uri", Expect::Page(NO_CLIENT_CERT)),
            // subjectAltNames replace the auto SAN validation: the Host does not matter then.
            (OTHER, "san-uri", Expect::Page(NO_CLIENT_CERT)),
            // insecureSkipVerify: no check at all.
            (HOST, "skip", Expect::Page(NO_CLIENT_CERT)),
            // Auto SAN validation: without sni and subjectAltNames, the certificate must be
            // valid for the request's Host.
            (OTHER, "good", Expect::Unavailable(VERIFY_FAILED)),
            // A fixed sni without subjectAltNames: the chain only, whatever the Host ...
            (OTHER, "fixed-sni", Expect::Page(NO_CLIENT_CERT)),
            // ... but the chain still.
            (
                OTHER,
                "fixed-sni-wrong-ca",
                Expect::Unavailable(VERIFY_FAILED),
            ),
            (
                OTHER,
                "fixed-sni-san-other",
                Expect::Unavailable(VERIFY_FAILED),
            ),
        ],
    );
    report(&w, &failures, &[("plain", &server)]);
}

#[test]
fn the_sni_is_the_request_host_unless_sni_is_set() {
    let pki = Pki::new();
    // s_server refuses (alert unrecognized_name) a handshake whose SNI is not secure.example.com.
    let (cert, key) = (
        pki.file("server.pem").display().to_string(),
        pki.file("server.key").display().to_string(),
    );
    let server = pki.server(&[
        "-servername",
        HOST,
        "-servername_fatal",
        "-cert2",
        &cert,
        "-key2",
        &key,
    ]);
    let ca = pki.yaml("ca.pem");
    // insecureSkipVerify keeps the certificate checks out of the way: only the SNI decides.
    let skip = |extra: &str| {
        format!("{{mode: SIMPLE, caCertificates: {ca}, insecureSkipVerify: true{extra}}}")
    };
    let w = start(
        &[
            dest("auto", &server, skip("")),
            dest("fixed", &server, skip(&format!(", sni: {HOST}"))),
            dest("fixed-other", &server, skip(", sni: elsewhere.example.org")),
        ],
        &[],
        &[],
    );
    let mut failures = run_cases(
        &w,
        &[
            (HOST, "auto", Expect::Page(NO_CLIENT_CERT)),
            (OTHER, "auto", Expect::Unavailable("TLS_error")),
            (OTHER, "fixed", Expect::Page(NO_CLIENT_CERT)),
            (HOST, "fixed-other", Expect::Unavailable("TLS_error")),
        ],
    );
    // The Host's port is not part of the SNI.
    let with_port = format!("{HOST}:80");
    let r = call(&w, &with_port, "auto");
    if r.status != 200 || !r.body.contains(NO_CLIENT_CERT) {
        failures.push(format!(
            "[Host {with_port}, x-dest auto] expected 200 with {NO_CLIENT_CERT:?} (SNI {HOST}), \
             got {}: {}",
            r.status,
            short(&r.body)
        ));
    }
    // A refused handshake reads as the server's alert (unrecognized_name), in BoringSSL's words.
    let r = call(&w, OTHER, "auto");
    if !r.body.contains("TLSV1_ALERT_UNRECOGNIZED_NAME") {
        failures.push(format!(
            "[Host {OTHER}, x-dest auto] the alert should read TLSV1_ALERT_UNRECOGNIZED_NAME, got \
             {}: {}",
            r.status,
            short(&r.body)
        ));
    }
    report(&w, &failures, &[("-servername_fatal", &server)]);
}

#[test]
fn credential_name_from_secrets_and_the_certs_dir() {
    let pki = Pki::new();
    let verifying = pki.verifying_server(&[]);
    let plain = pki.server(&[]);
    let (crt, key, ca, other_ca) = (
        pki.read("client.pem"),
        pki.read("client.key"),
        pki.read("ca.pem"),
        pki.read("other-ca.pem"),
    );
    // <certs-dir>/upstream-folder/ with tls.crt, tls.key and ca.crt.
    let certs = tempfile::Builder::new()
        .prefix("tollgate-upstream-certs-")
        .tempdir()
        .unwrap();
    let folder = certs.path().join("upstream-folder");
    std::fs::create_dir(&folder).unwrap();
    for (name, text) in [("tls.crt", &crt), ("tls.key", &key), ("ca.crt", &ca)] {
        std::fs::write(folder.join(name), text).unwrap();
    }
    let secrets = [
        // In the gateway's namespace, with the kubernetes.io/tls key names.
        secret(
            "upstream-gw-ns",
            Some("istio-system"),
            &[
                ("tls.crt", crt.clone()),
                ("tls.key", key.clone()),
                ("ca.crt", ca.clone()),
            ],
        ),
        // In the rule's namespace (the default one), with the generic key names.
        secret(
            "upstream-rule-ns",
            None,
            &[
                ("cert", crt.clone()),
                ("key", key.clone()),
                ("cacert", ca.clone()),
            ],
        ),
        // A CA only, for SIMPLE.
        secret(
            "upstream-ca",
            Some("istio-system"),
            &[("ca.crt", ca.clone())],
        ),
        // The unrelated CA: the Secret's CA is what verifies the upstream.
        secret(
            "upstream-other-ca",
            Some("istio-system"),
            &[("ca.crt", other_ca.clone())],
        ),
    ];
    let extra = vec![("secrets.yaml".to_string(), secrets.join("---\n"))];
    let certs_arg = certs.path().display().to_string();
    let w = start(
        &[
            dest(
                "gw-ns",
                &verifying,
                "{mode: MUTUAL, credentialName: upstream-gw-ns}",
            ),
            dest(
                "rule-ns",
                &verifying,
                "{mode: MUTUAL, credentialName: upstream-rule-ns}",
            ),
            dest(
                "folder",
                &verifying,
                "{mode: MUTUAL, credentialName: upstream-folder}",
            ),
            dest(
                "ca-only",
                &plain,
                "{mode: SIMPLE, credentialName: upstream-ca}",
            ),
            dest(
                "other-ca",
                &plain,
                "{mode: SIMPLE, credentialName: upstream-other-ca}",
            ),
        ],
        &extra,
        &["--certs-dir", &certs_arg],
    );
    let mut failures = run_cases(
        &w,
        &[
            (HOST, "gw-ns", Expect::Page(CLIENT_CERT)),
            (HOST, "rule-ns", Expect::Page(CLIENT_CERT)),
            (HOST, "folder", Expect::Page(CLIENT_CERT)),
            (HOST, "ca-only", Expect::Page(NO_CLIENT_CERT)),
            (HOST, "other-ca", Expect::Unavailable(VERIFY_FAILED)),
        ],
    );
    let r = call(&w, HOST, "gw-ns");
    let page: String = r.body.split_whitespace().collect();
    if r.status == 200 && !page.contains(&pki.client_base64()) {
        failures.push(format!(
            "the page does not show the Secret's tls.crt: {}",
            short(&r.body)
        ));
    }
    report(
        &w,
        &failures,
        &[
            ("-Verify 1 -verify_return_error", &verifying),
            ("plain", &plain),
        ],
    );
}

#[test]
fn unusable_material_is_an_error_on_the_tls_field_and_that_destination_fails() {
    let pki = Pki::new();
    let server = pki.server(&[]);
    let garbage = pki.file("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let dests = [
        dest(
            "good",
            &server,
            format!("{{mode: SIMPLE, caCertificates: {}}}", pki.yaml("ca.pem")),
        ),
        dest(
            "missing-ca",
            &server,
            "{mode: SIMPLE, caCertificates: /nonexistent/ca.pem}",
        ),
        dest(
            "garbage-ca",
            &server,
            format!(
                "{{mode: SIMPLE, caCertificates: {}}}",
                yaml_str(&garbage.display().to_string())
            ),
        ),
        dest(
            "missing-key",
            &server,
            format!(
                "{{mode: MUTUAL, clientCertificate: {}, privateKey: /nonexistent/client.key, \
                 caCertificates: {}}}",
                pki.yaml("client.pem"),
                pki.yaml("ca.pem")
            ),
        ),
        dest(
            "no-credential",
            &server,
            "{mode: SIMPLE, credentialName: no-such-credential}",
        ),
    ];
    let bad = ["missing-ca", "garbage-ca", "missing-key", "no-credential"];
    // Not World::start: its clean-load check is what this test contradicts.
    let config = ConfigDir::new();
    for (name, text) in config_files(&dests) {
        config.write(&name, &text);
    }
    let gw = Gateway::start(config.path(), &["--port-map", "80=0"]);
    let w = World {
        addr: gw.listener(80),
        gw,
        client: HttpClient::new(),
        backends: Vec::new(),
        config,
    };
    let mut failures = Vec::new();
    let diags = diagnostics(&w.gw.config_dump());
    for name in bad {
        let file = format!("dr-{name}.yaml");
        let found = diags.iter().any(|d| {
            d.contains(&file)
                && d.contains(" error:")
                && d.contains("spec.trafficPolicy.tls")
                && d.contains("fail")
        });
        if !found {
            failures.push(format!(
                "[dump] no error on spec.trafficPolicy.tls of {file} saying connections fail"
            ));
        }
    }
    if let Some(d) = diags.iter().find(|d| d.contains("dr-good.yaml")) {
        failures.push(format!("[dump] the good rule has a diagnostic: {d}"));
    }
    let mut cases = vec![(HOST, "good", Expect::Page(NO_CLIENT_CERT))];
    cases.extend(
        bad.iter()
            .map(|name| (HOST, *name, Expect::Unavailable("TLS_error"))),
    );
    failures.extend(run_cases(&w, &cases));
    // `tollgate check` reports the same errors.
    let out = check(w.config.path(), &[]);
    let text = format!("{}{}", out.stdout, out.stderr);
    if out.code != Some(1) {
        failures.push(format!("[check] expected exit 1, got {:?}", out.code));
    }
    for name in bad {
        let file = format!("dr-{name}.yaml");
        let found = text
            .lines()
            .any(|l| l.contains(&file) && l.contains("spec.trafficPolicy.tls"));
        if !found {
            failures.push(format!(
                "[check] no line on spec.trafficPolicy.tls of {file}"
            ));
        }
    }
    if !failures.is_empty() {
        failures.push(format!(
            "dump diagnostics:\n    {}\n  check output:\n{text}",
            diags.join("\n    ")
        ));
    }
    report(&w, &failures, &[("plain", &server)]);
}

#[test]
fn without_tls_origination_the_tls_upstream_is_unreachable() {
    let pki = Pki::new();
    let server = pki.server(&[]);
    let w = start(
        &[
            dest("none", &server, ""),
            dest("disable", &server, "{mode: DISABLE}"),
            dest(
                "simple",
                &server,
                format!("{{mode: SIMPLE, caCertificates: {}}}", pki.yaml("ca.pem")),
            ),
        ],
        &[],
        &[],
    );
    let failures = run_cases(
        &w,
        &[
            (HOST, "none", Expect::Not200),
            (HOST, "disable", Expect::Not200),
            (HOST, "simple", Expect::Page(NO_CLIENT_CERT)),
            // Still plain text after a TLS connection was made to the same address.
            (HOST, "disable", Expect::Not200),
        ],
    );
    report(&w, &failures, &[("plain", &server)]);
}

// ------------------------------------------------------------------------------------------
// TCP routes

/// What came back on a TCP connection: the bytes until the gateway closed it, or the error.
fn tcp_exchange(addr: SocketAddr, request: &[u8]) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The gateway may already have closed the stream after a failed upstream handshake.
    let _ = stream.write_all(request);
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(String::from_utf8_lossy(&out).into_owned()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return Ok(String::from_utf8_lossy(&out).into_owned())
            }
            Err(e) => {
                return Err(format!(
                    "{e} after {} bytes: {}",
                    out.len(),
                    String::from_utf8_lossy(&out)
                ))
            }
        }
    }
}

#[test]
fn tcp_routes_originate_tls_too() {
    let pki = Pki::new();
    let server = pki.server(&[]);
    let (ca, other) = (pki.yaml("ca.pem"), pki.yaml("other-ca.pem"));
    let simple = |extra: &str| format!("{{mode: SIMPLE, caCertificates: {ca}{extra}}}");
    // (Gateway port, destination, tls, whether s_server's page comes back)
    let cases: [(u16, &str, String, bool); 6] = [
        (31400, "tcp-good", simple(""), true),
        (
            31401,
            "tcp-wrong-ca",
            format!("{{mode: SIMPLE, caCertificates: {other}}}"),
            false,
        ),
        (
            31402,
            "tcp-san-uri",
            simple(&format!(", subjectAltNames: [\"{SPIFFE}\"]")),
            true,
        ),
        (
            31403,
            "tcp-san-other",
            simple(", subjectAltNames: [\"spiffe://example/other\"]"),
            false,
        ),
        // No SNI and so no auto SAN validation on a TCP stream: the chain alone.
        (
            31404,
            "tcp-sni",
            simple(", sni: elsewhere.example.org"),
            true,
        ),
        (31405, "tcp-plain", String::new(), false),
    ];
    let mut servers = String::new();
    let mut tcp = String::from("  tcp:\n");
    let mut files = Vec::new();
    for (port, name, tls, _) in &cases {
        servers.push_str(&format!(
            "  - port: {{number: {port}, name: tcp-{port}, protocol: TCP}}\n    hosts: [\"*\"]\n"
        ));
        tcp.push_str(&format!(
            "  - match: [{{port: {port}}}]\n    \
             route: [{{destination: {{host: {name}.internal, port: {{number: 7000}}}}}}]\n"
        ));
        files.push((
            format!("se-{name}.yaml"),
            l4_service_entry(
                name,
                &format!("{name}.internal"),
                7000,
                "TCP",
                &[server.addr],
            ),
        ));
        if !tls.is_empty() {
            files.push((
                format!("dr-{name}.yaml"),
                format!(
                    "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
                     metadata: {{name: {name}}}\nspec:\n  host: {name}.internal\n  \
                     trafficPolicy:\n    tls: {tls}\n"
                ),
            ));
        }
    }
    files.push((
        "gateway.yaml".to_string(),
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: edge}}\nspec:\n  \
             selector: {{istio: ingressgateway}}\n  servers:\n{servers}---\n\
             apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
             metadata: {{name: edge-tcp}}\nspec:\n  hosts: [\"*\"]\n  gateways: [edge]\n{tcp}"
        ),
    ));
    let config = ConfigDir::new();
    for (name, text) in &files {
        config.write(name, text);
    }
    let maps: Vec<String> = cases.iter().map(|(p, ..)| format!("{p}=0")).collect();
    let mut args = Vec::new();
    for m in &maps {
        args.extend(["--port-map", m.as_str()]);
    }
    let gw = Gateway::start(config.path(), &args);
    let dump = gw.config_dump();
    let errors: Vec<String> = diagnostics(&dump)
        .into_iter()
        .filter(|d| d.contains(" error:"))
        .collect();
    let mut failures = Vec::new();
    if !errors.is_empty() || !not_ok_files(&dump).is_empty() {
        failures.push(format!(
            "the configuration did not load cleanly: {errors:#?} {:#?}",
            not_ok_files(&dump)
        ));
    }
    for (port, name, _, page) in &cases {
        let addr = gw.listener(*port);
        let got = tcp_exchange(addr, b"GET / HTTP/1.0\r\n\r\n");
        let ok = match &got {
            Ok(text) => text.starts_with("HTTP/1.0 200 ok") && text.contains(NO_CLIENT_CERT),
            Err(_) => false,
        };
        let problem = match (&got, page) {
            (Err(e), _) => Some(format!("no clean end of stream within 10 s: {e}")),
            (Ok(text), true) if !ok => {
                Some(format!("expected s_server's page, got {:?}", short(text)))
            }
            (Ok(text), false) if ok || text.contains("200 ok") => {
                Some(format!("expected no page, got {:?}", short(text)))
            }
            _ => None,
        };
        if let Some(problem) = problem {
            failures.push(format!("[port {port}, {name}] {problem}"));
        }
    }
    if !failures.is_empty() {
        gw.fail(format!(
            "{} case(s) failed:\n  {}\n--- s_server output:\n{}",
            failures.len(),
            failures.join("\n  "),
            server.output()
        ));
    }
}
