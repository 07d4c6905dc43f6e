//! TLS termination end to end: the book's ch4 scenarios with their own certificates, driven with
//! curl and openssl s_client, plus a generated PKI for wildcard and no-SNI behaviour.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

fn ch4() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/istio-in-action/ch4")
}

fn credentials() -> PathBuf {
    ch4().join("credentials")
}

fn cas(name: &str) -> String {
    credentials().join("cas").join(name).display().to_string()
}

/// The book's Gateway/VirtualService files, plus ServiceEntries sending `webapp` and `catalog`
/// (short names in namespace default) to echo backends.
fn book_config(files: &[&str], webapp: &EchoBackend, catalog: &EchoBackend) -> ConfigDir {
    let dir = ConfigDir::new();
    for f in files {
        let text = std::fs::read_to_string(ch4().join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        dir.write(f, &text);
    }
    let entries = [
        service_entry(
            "webapp",
            "webapp.default.svc.cluster.local",
            80,
            &[(webapp.addr, &[])],
        ),
        service_entry(
            "catalog",
            "catalog.default.svc.cluster.local",
            80,
            &[(catalog.addr, &[])],
        ),
    ];
    dir.write("backends.yaml", &entries.join("---\n"));
    dir
}

fn https(host: &str, port: u16, path: &str, extra: &[&str]) -> CurlOutput {
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("https://{host}:{port}{path}");
    let mut args: Vec<&str> = vec!["--resolve", &resolve];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

fn served_by(out: &CurlOutput) -> String {
    assert_eq!(out.status, 200, "exit {} {}", out.exit_code, out.stderr);
    out.json()["service"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `openssl s_client` as a user would run it; returns (certificate subject line, all output).
fn s_client(port: u16, servername: Option<&str>) -> (String, String) {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")]);
    match servername {
        Some(name) => cmd.args(["-servername", name]),
        None => cmd.arg("-noservername"),
    };
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let subject = text
        .lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_default()
        .to_string();
    (subject, text)
}

#[test]
fn several_https_servers_on_one_port_pick_their_certificate_by_sni() {
    let (webapp, catalog) = (
        EchoBackend::start("webapp", "v1"),
        EchoBackend::start("catalog", "v1"),
    );
    let dir = book_config(
        &[
            "coolstore-gw-multi-tls.yaml",
            "coolstore-vs.yaml",
            "catalog-vs.yaml",
        ],
        &webapp,
        &catalog,
    );
    let creds = credentials().display().to_string();
    let gw = Gateway::start(dir.path(), &["--certs-dir", &creds, "--port-map", "443=0"]);
    let port = gw.listener(443).port();
    let (webapp_ca, catalog_ca) = (cas("webapp-ca-chain.pem"), cas("catalog-ca-chain.pem"));
    assert_eq!(
        served_by(&https(
            "webapp.istioinaction.io",
            port,
            "/",
            &["--cacert", &webapp_ca]
        )),
        "webapp"
    );
    assert_eq!(
        served_by(&https(
            "catalog.istioinaction.io",
            port,
            "/",
            &["--cacert", &catalog_ca]
        )),
        "catalog"
    );
    // The other host's CA does not verify this host's certificate: SNI picked per host.
    let wrong = https(
        "webapp.istioinaction.io",
        port,
        "/",
        &["--cacert", &catalog_ca],
    );
    assert_ne!(
        wrong.exit_code, 0,
        "webapp's certificate must not verify against catalog's CA"
    );
    let h2 = https(
        "webapp.istioinaction.io",
        port,
        "/h2",
        &["--cacert", &webapp_ca, "--http2", "-w", ""],
    );
    assert_eq!(served_by(&h2), "webapp");
    assert!(
        h2.stderr.is_empty() || !h2.stderr.contains("error"),
        "{}",
        h2.stderr
    );
    let (subject, _) = s_client(port, Some("catalog.istioinaction.io"));
    assert!(
        subject.contains("CN = catalog.istioinaction.io"),
        "{subject}"
    );
    let (subject, _) = s_client(port, Some("webapp.istioinaction.io"));
    assert!(
        subject.contains("CN = webapp.istioinaction.io"),
        "{subject}"
    );
    // A Host of the other server on this port: 421; a Host no server has: 404.
    let misdirected = https(
        "webapp.istioinaction.io",
        port,
        "/",
        &[
            "--cacert",
            &webapp_ca,
            "-H",
            "Host: catalog.istioinaction.io",
        ],
    );
    assert_eq!(misdirected.status, 421);
    let unknown = https(
        "webapp.istioinaction.io",
        port,
        "/",
        &["--cacert", &webapp_ca, "-H", "Host: unknown.example.com"],
    );
    assert_eq!(unknown.status, 404);
    // An SNI no server takes, and a hello without SNI (no `*` server): unrecognized_name alert.
    let (_, text) = s_client(port, Some("nobody.example.com"));
    assert!(text.contains("unrecognized name"), "{text}");
    let (_, text) = s_client(port, None);
    assert!(text.contains("unrecognized name"), "{text}");
}

#[test]
fn https_redirect_and_simple_tls() {
    let (webapp, catalog) = (
        EchoBackend::start("webapp", "v1"),
        EchoBackend::start("catalog", "v1"),
    );
    let dir = book_config(
        &["coolstore-gw-tls-redirect.yaml", "coolstore-vs.yaml"],
        &webapp,
        &catalog,
    );
    let creds = credentials().display().to_string();
    let gw = Gateway::start(
        dir.path(),
        &[
            "--certs-dir",
            &creds,
            "--port-map",
            "443=0",
            "--port-map",
            "80=0",
        ],
    );
    let (http_port, https_port) = (gw.listener(80).port(), gw.listener(443).port());
    let redirect = curl(&[
        "--resolve",
        &format!("webapp.istioinaction.io:{http_port}:127.0.0.1"),
        &format!("http://webapp.istioinaction.io:{http_port}/api/items?id=3"),
    ]);
    assert_eq!(redirect.status, 301);
    assert_eq!(
        redirect.header("location"),
        Some("https://webapp.istioinaction.io/api/items?id=3")
    );
    assert_eq!(redirect.body, "");
    let post = curl(&[
        "-X",
        "POST",
        "-H",
        "Host: webapp.istioinaction.io",
        &format!("http://127.0.0.1:{http_port}/x"),
    ]);
    assert_eq!(post.status, 301, "every method is redirected");
    let ok = https(
        "webapp.istioinaction.io",
        https_port,
        "/",
        &["--cacert", &cas("webapp-ca-chain.pem")],
    );
    assert_eq!(served_by(&ok), "webapp");
    assert_eq!(ok.json()["headers"]["x-forwarded-proto"], "https");
}

#[test]
fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let (webapp, catalog) = (
        EchoBackend::start("webapp", "v1"),
        EchoBackend::start("catalog", "v1"),
    );
    let dir = book_config(
        &["coolstore-gw-mtls.yaml", "coolstore-vs.yaml"],
        &webapp,
        &catalog,
    );
    let creds = credentials().display().to_string();
    let gw = Gateway::start(
        dir.path(),
        &[
            "--certs-dir",
            &creds,
            "--port-map",
            "443=0",
            "--port-map",
            "80=0",
        ],
    );
    let port = gw.listener(443).port();
    let ca = cas("webapp-ca-chain.pem");
    let client = credentials().join("clients/webapp");
    let (cert, key) = (
        client.join("client.crt").display().to_string(),
        client.join("client.key").display().to_string(),
    );
    let accepted = https(
        "webapp.istioinaction.io",
        port,
        "/",
        &["--cacert", &ca, "--cert", &cert, "--key", &key],
    );
    assert_eq!(served_by(&accepted), "webapp");
    let anonymous = https("webapp.istioinaction.io", port, "/", &["--cacert", &ca]);
    assert_ne!(anonymous.status, 200, "no client certificate, no response");
    let other = credentials().join("sni-backends/simple-sni-1");
    let (ocert, okey) = (
        other.join("tls.crt").display().to_string(),
        other.join("tls.key").display().to_string(),
    );
    let foreign = https(
        "webapp.istioinaction.io",
        port,
        "/",
        &["--cacert", &ca, "--cert", &ocert, "--key", &okey],
    );
    assert_ne!(
        foreign.status, 200,
        "a certificate from another CA is refused"
    );
}

/// A CA and a wildcard server certificate in Kubernetes secret layout under `dir/<name>/`.
fn wildcard_pki(dir: &Path, name: &str, host: &str) -> String {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tollgate test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![host.to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("tls.crt"), leaf.pem()).unwrap();
    std::fs::write(folder.join("tls.key"), leaf_key.serialize_pem()).unwrap();
    let ca_path = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&ca_path, ca.pem()).unwrap();
    ca_path.display().to_string()
}

#[test]
fn wildcard_hosts_and_hellos_without_sni() {
    let backend = EchoBackend::start("wild", "v1");
    let certs = tempfile::tempdir().unwrap();
    let ca = wildcard_pki(certs.path(), "wild-cert", "*.wild.test");
    let dir = ConfigDir::new();
    dir.write(
        "backend.yaml",
        &service_entry("wild", "wild.internal", 80, &[(backend.addr, &[])]),
    );
    dir.write(
        "gateway.yaml",
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: wild}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: SIMPLE, credentialName: wild-cert}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: wild}\nspec:\n  hosts: [\"*.wild.test\"]\n  gateways: [wild]\n  http:\n  - route: [{destination: {host: wild.internal}}]\n",
    );
    let certs_dir = certs.path().display().to_string();
    let gw = Gateway::start(
        dir.path(),
        &["--certs-dir", &certs_dir, "--port-map", "443=0"],
    );
    let port = gw.listener(443).port();
    assert_eq!(
        served_by(&https("a.wild.test", port, "/", &["--cacert", &ca])),
        "wild"
    );
    assert_eq!(
        served_by(&https(
            "deep.a.wild.test",
            port,
            "/",
            &["--cacert", &ca, "-k"]
        )),
        "wild"
    );
    // A `*` server also takes hellos without SNI.
    let (_, text) = s_client(port, None);
    assert!(
        text.contains("i:CN = tollgate test CA"),
        "the `*` server's certificate is served: {text}"
    );
    assert!(!text.contains("unrecognized name"), "{text}");
}
