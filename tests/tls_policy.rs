//! TLS policy end to end with the demo credentials (certs/): OPTIONAL_MUTUAL, client-certificate
//! SAN pins, protocol versions, and session resumption.

mod support;

use std::ffi::OsStr;
use std::path::Path;

use support::*;

const HOST: &str = "mtls.istioinaction.io";

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

/// One HTTPS server for mtls.istioinaction.io with the given `tls` block, routed to an echo.
fn serve(tls: &str, extra: &[&str]) -> (Gateway, EchoBackend, ConfigDir) {
    let backend = EchoBackend::start("secure", "v1");
    let dir = ConfigDir::new();
    dir.write(
        "backend.yaml",
        &service_entry("secure", "secure.internal", 80, &[(backend.addr, &[])]),
    );
    dir.write(
        "gateway.yaml",
        &https_gateway(
            "gw",
            &format!("[{HOST}]"),
            tls,
            &format!("[{HOST}]"),
            "secure.internal",
        ),
    );
    let certs = repo("certs");
    let mut args = vec!["--certs-dir", certs.as_str(), "--port-map", "443=0"];
    args.extend_from_slice(extra);
    let gw = Gateway::start(dir.path(), &args);
    (gw, backend, dir)
}

fn request(port: u16, extra: &[&str]) -> CurlOutput {
    let ca = repo("certs/ca/ca.crt");
    let mut args = vec!["--cacert", ca.as_str()];
    args.extend_from_slice(extra);
    curl_https(HOST, port, "/", &args)
}

fn client_cert() -> [String; 4] {
    [
        "--cert".into(),
        repo("certs/clients/webapp/tls.crt"),
        "--key".into(),
        repo("certs/clients/webapp/tls.key"),
    ]
}

fn with_cert(port: u16) -> CurlOutput {
    let c = client_cert();
    request(port, &[&c[0], &c[1], &c[2], &c[3]])
}

#[test]
fn optional_mutual_accepts_no_certificate_but_verifies_one_that_is_presented() {
    let (gw, _b, _d) = serve(
        "{mode: OPTIONAL_MUTUAL, credentialName: mtls-credential}",
        &[],
    );
    let port = gw.listener(443).port();
    let anonymous = request(port, &[]);
    assert_eq!(anonymous.status, 200, "{}", anonymous.stderr);
    assert!(anonymous.json()["headers"]
        .get("x-forwarded-client-cert")
        .is_none());
    let known = with_cert(port);
    assert_eq!(known.status, 200, "{}", known.stderr);
    assert!(known.json()["headers"]["x-forwarded-client-cert"]
        .as_str()
        .is_some_and(|x| x.contains("URI=spiffe://istioinaction/webapp")));
    // A certificate from another CA is refused, even though none would have been fine.
    let foreign = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/istio-in-action/ch4/credentials/sni-backends/simple-sni-1");
    let (c, k) = (
        foreign.join("tls.crt").display().to_string(),
        foreign.join("tls.key").display().to_string(),
    );
    assert_ne!(request(port, &["--cert", &c, "--key", &k]).status, 200);
}

#[test]
fn subject_alt_names_pin_the_client() {
    let (gw, _b, _d) = serve("{mode: MUTUAL, credentialName: mtls-credential, subjectAltNames: [spiffe://istioinaction/webapp]}", &[]);
    assert_eq!(with_cert(gw.listener(443).port()).status, 200);
    let (gw, _b, _d) = serve("{mode: MUTUAL, credentialName: mtls-credential, subjectAltNames: [spiffe://istioinaction/other]}", &[]);
    assert_ne!(
        with_cert(gw.listener(443).port()).status,
        200,
        "a client without the listed SAN is refused"
    );
}

#[test]
fn protocol_versions_follow_the_server_settings() {
    let (gw, _b, _d) = serve(
        "{mode: SIMPLE, credentialName: mtls-credential, minProtocolVersion: TLSV1_3}",
        &[],
    );
    let port = gw.listener(443).port();
    assert_eq!(request(port, &["--tlsv1.3"]).status, 200);
    assert_ne!(
        request(port, &["--tls-max", "1.2"]).status,
        200,
        "TLS 1.2 refused when the minimum is 1.3"
    );
    let (gw, _b, _d) = serve(
        "{mode: SIMPLE, credentialName: mtls-credential, minProtocolVersion: TLSV1_0}",
        &[],
    );
    let port = gw.listener(443).port();
    assert_eq!(
        request(port, &["--tls-max", "1.2"]).status,
        200,
        "default and raised minimum: 1.2 works"
    );
    let check = gw.admin_get("/config_dump").1;
    assert!(check.contains("raised to TLSV1_2"), "the raise is reported");
}

/// `openssl s_client -tls1_2 <flag> <session file>`: `-sess_out` saves the session, `-sess_in`
/// offers it back. Returns what s_client printed.
fn tls12_session(port: u16, flag: &str, session: &Path) -> String {
    let args: [&OsStr; 5] = [
        "-servername".as_ref(),
        HOST.as_ref(),
        "-tls1_2".as_ref(),
        flag.as_ref(),
        session.as_ref(),
    ];
    openssl_s_client(port, &args)
        .expect("openssl s_client exits within 20 s")
        .stdout
}

/// Two TLS 1.2 connections, the second offering the first's session.
fn resumed(port: u16) -> bool {
    let session = tempfile::NamedTempFile::new().unwrap();
    tls12_session(port, "-sess_out", session.path());
    tls12_session(port, "-sess_in", session.path()).contains("Reused, TLSv1.2")
}

#[test]
fn sessions_resume_unless_turned_off() {
    let (gw, _b, _d) = serve("{mode: SIMPLE, credentialName: mtls-credential}", &[]);
    assert!(
        resumed(gw.listener(443).port()),
        "session resumption is on by default"
    );
    let (gw, _b, _d) = serve(
        "{mode: SIMPLE, credentialName: mtls-credential}",
        &["--no-session-resumption"],
    );
    assert!(
        !resumed(gw.listener(443).port()),
        "--no-session-resumption makes every handshake full"
    );
}

/// A CA, a server certificate for `crl.test`, a good and a revoked client certificate, and a CRL,
/// all written to `dir` as PEM files for the Gateway's file-path form.
fn pki_with_crl(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "crl test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |name: &str, serial: u64, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.serial_number = Some(serial.into());
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    let (server, server_key) = leaf("crl.test", 1, ExtendedKeyUsagePurpose::ServerAuth);
    let (good, good_key) = leaf("good.client", 2, ExtendedKeyUsagePurpose::ClientAuth);
    let (revoked, revoked_key) = leaf("revoked.client", 3, ExtendedKeyUsagePurpose::ClientAuth);
    let crl = rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2024, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: 1u64.into(),
        issuing_distribution_point: None,
        revoked_certs: vec![rcgen::RevokedCertParams {
            serial_number: 3u64.into(),
            revocation_time: rcgen::date_time_ymd(2024, 1, 1),
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&ca, &ca_key)
    .unwrap();
    for (name, text) in [
        ("ca.pem", ca.pem()),
        ("server.pem", server),
        ("server.key", server_key),
        ("good.pem", good),
        ("good.key", good_key),
        ("revoked.pem", revoked),
        ("revoked.key", revoked_key),
        ("ca.crl", crl.pem().unwrap()),
    ] {
        write(name, &text);
    }
}

#[test]
fn a_revoked_client_certificate_is_refused() {
    let pki = tempfile::tempdir().unwrap();
    pki_with_crl(pki.path());
    let p = |name: &str| pki.path().join(name).display().to_string();
    let backend = EchoBackend::start("crl", "v1");
    let dir = ConfigDir::new();
    dir.write(
        "backend.yaml",
        &service_entry("crl", "crl.internal", 80, &[(backend.addr, &[])]),
    );
    dir.write(
        "gateway.yaml",
        &https_gateway(
            "gw",
            "[crl.test]",
            &format!(
                "{{mode: MUTUAL, serverCertificate: {}, privateKey: {}, caCertificates: {}, caCrl: {}}}",
                p("server.pem"),
                p("server.key"),
                p("ca.pem"),
                p("ca.crl")
            ),
            "[crl.test]",
            "crl.internal",
        ),
    );
    let gw = Gateway::start(dir.path(), &["--port-map", "443=0"]);
    let port = gw.listener(443).port();
    let call = |cert: &str, key: &str| {
        let (resolve, url) = (
            format!("crl.test:{port}:127.0.0.1"),
            format!("https://crl.test:{port}/"),
        );
        curl(&[
            "--cacert",
            &p("ca.pem"),
            "--cert",
            &p(cert),
            "--key",
            &p(key),
            "--resolve",
            &resolve,
            &url,
        ])
    };
    assert_eq!(call("good.pem", "good.key").status, 200);
    assert_ne!(
        call("revoked.pem", "revoked.key").status,
        200,
        "the CRL revokes serial 3"
    );
}

#[test]
fn a_catch_all_simple_server_cannot_front_for_a_mutual_host() {
    let backend = EchoBackend::start("private", "v1");
    let dir = ConfigDir::new();
    dir.write(
        "backend.yaml",
        &service_entry("private", "private.internal", 80, &[(backend.addr, &[])]),
    );
    // A `*` SIMPLE server and a MUTUAL server on one port; the VirtualService for the MUTUAL host
    // attaches to both servers' route tables, as Istio's host intersection does.
    dir.write(
        "gateway.yaml",
        &format!("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: 443, name: https-any, protocol: HTTPS}}\n    hosts: [\"*\"]\n    tls: {{mode: SIMPLE, credentialName: webapp-credential}}\n  - port: {{number: 443, name: https-mtls, protocol: HTTPS}}\n    hosts: [{HOST}]\n    tls: {{mode: MUTUAL, credentialName: mtls-credential}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n  - route: [{{destination: {{host: private.internal}}}}]\n"),
    );
    let certs = repo("certs");
    let gw = Gateway::start(dir.path(), &["--certs-dir", &certs, "--port-map", "443=0"]);
    let port = gw.listener(443).port();
    let ca = repo("certs/ca/ca.crt");
    let fronted = |extra: &[&str]| {
        let mut args = vec!["--cacert", ca.as_str()];
        args.extend_from_slice(extra);
        curl_https("webapp.istioinaction.io", port, "/", &args)
    };
    assert_eq!(fronted(&[]).status, 200, "the `*` server itself serves");
    assert_eq!(
        fronted(&["-H", &format!("Host: {HOST}")]).status,
        421,
        "HTTP/1.1 Host into the MUTUAL host"
    );
    assert_eq!(
        fronted(&["--http2", "-H", &format!("Host: {HOST}")]).status,
        421,
        "HTTP/2 :authority into the MUTUAL host"
    );
    assert_eq!(
        with_cert(port).status,
        200,
        "the MUTUAL host with a client certificate"
    );
}

#[test]
fn a_session_from_before_a_server_turned_mutual_cannot_resume() {
    let (gw, _b, dir) = serve("{mode: SIMPLE, credentialName: mtls-credential}", &[]);
    let port = gw.listener(443).port();
    let session = tempfile::NamedTempFile::new().unwrap();
    let s_client = |flag: &str| tls12_session(port, flag, session.path());
    s_client("-sess_out");
    assert!(
        s_client("-sess_in").contains("Reused"),
        "resumption works while the policy is unchanged"
    );
    let before = gw.generation();
    dir.write(
        "gateway.yaml",
        &https_gateway(
            "gw",
            &format!("[{HOST}]"),
            "{mode: MUTUAL, credentialName: mtls-credential}",
            &format!("[{HOST}]"),
            "secure.internal",
        ),
    );
    gw.wait_generation(before + 1);
    let after = s_client("-sess_in");
    assert!(
        !after.contains("Reused"),
        "the old session must not skip client verification: {after}"
    );
    assert_ne!(request(port, &[]).status, 200);
    assert_eq!(with_cert(port).status, 200);
}
