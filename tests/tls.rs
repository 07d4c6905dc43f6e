//! TLS termination end to end: the book's ch4 scenarios with their own certificates, driven with
//! curl and openssl s_client, plus a generated PKI for wildcard and no-SNI behaviour.

mod support;

use std::path::{Path, PathBuf};

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

/// A book scenario served with the book's credentials; Gateway ports 80 and 443 ephemeral.
struct Book {
    gw: Gateway,
    _backends: (EchoBackend, EchoBackend),
    _dir: ConfigDir,
}

fn book(files: &[&str]) -> Book {
    let backends = (
        EchoBackend::start("webapp", "v1"),
        EchoBackend::start("catalog", "v1"),
    );
    let dir = book_config(files, &backends.0, &backends.1);
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
    Book {
        gw,
        _backends: backends,
        _dir: dir,
    }
}

fn https(host: &str, port: u16, path: &str, extra: &[&str]) -> CurlOutput {
    curl_https(host, port, path, extra)
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
    let args = match servername {
        Some(name) => vec!["-servername", name],
        None => vec!["-noservername"],
    };
    let out = openssl_s_client(port, &args).expect("openssl s_client exits within 20 s");
    (out.subject(), out.text())
}

#[test]
fn several_https_servers_on_one_port_pick_their_certificate_by_sni() {
    let scenario = book(&[
        "coolstore-gw-multi-tls.yaml",
        "coolstore-vs.yaml",
        "catalog-vs.yaml",
    ]);
    let gw = &scenario.gw;
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
    // Plain HTTP on the TLS port: closed without an answer, counted by reason.
    let plain = curl(&[
        "-H",
        "Host: webapp.istioinaction.io",
        &format!("http://127.0.0.1:{port}/"),
    ]);
    assert_eq!(plain.status, 0, "no HTTP answer on a TLS port");
    let metrics = gw.metrics_get("/stats/prometheus").1;
    let count = |series: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    // Handshakes are counted per server and SNI outcome; sum a result over them.
    let handshakes = |result: &str| -> f64 {
        let label = format!("result=\"{result}\"");
        metrics
            .lines()
            .filter(|l| l.starts_with("tollgate_tls_handshakes_total{") && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(handshakes("no_matching_server") >= 2.0, "{metrics}");
    assert!(handshakes("ok") >= 6.0, "{metrics}");
    assert!(
        metrics.contains("server=\"none\",sni=\"no_match\",result=\"no_matching_server\""),
        "an unknown SNI is counted against no server: {metrics}"
    );
    assert!(
        count("tollgate_tls_client_hello_failures_total{reason=\"not_tls\"}") >= 1.0,
        "{metrics}"
    );
}

#[test]
fn https_redirect_and_simple_tls() {
    let scenario = book(&["coolstore-gw-tls-redirect.yaml", "coolstore-vs.yaml"]);
    let gw = &scenario.gw;
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
    let scenario = book(&["coolstore-gw-mtls.yaml", "coolstore-vs.yaml"]);
    let gw = &scenario.gw;
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
        &[
            "--cacert",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "-H",
            "x-forwarded-client-cert: By=spoofed",
        ],
    );
    assert_eq!(served_by(&accepted), "webapp");
    // The upstream learns who the client is, in Envoy's format; the client's own claim is gone.
    let xfcc = accepted.json()["headers"]["x-forwarded-client-cert"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        xfcc.starts_with("Hash=") && xfcc.contains(";Cert=\"-----BEGIN%20CERTIFICATE"),
        "{xfcc}"
    );
    assert!(xfcc.contains("CN=webapp.istioinaction.io"), "{xfcc}");
    assert!(!xfcc.contains("spoofed"), "{xfcc}");
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
        &https_gateway(
            "wild",
            "[\"*\"]",
            "{mode: SIMPLE, credentialName: wild-cert}",
            "[\"*.wild.test\"]",
            "wild.internal",
        ),
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

/// A CA, and leaf certificates for `host` signed by it with the common name `gen-<n>`.
struct RotatingPki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    host: String,
}

impl RotatingPki {
    fn new(host: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "rotation CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        RotatingPki {
            ca,
            ca_key,
            host: host.to_string(),
        }
    }

    /// (certificate PEM, key PEM) of generation `n`.
    fn leaf(&self, n: u32) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![self.host.clone()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("gen-{n}"));
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

#[test]
fn certificate_rotation_never_fails_a_handshake() {
    let backend = EchoBackend::start("rot", "v1");
    let pki = RotatingPki::new("rot.test");
    // The credential folder is a ConfigDir, so it can be updated the way kubelet does; its
    // folder name is the credential name.
    let credential = ConfigDir::new();
    let (cert, key) = pki.leaf(1);
    credential.k8s_swap(&[("tls.crt", &cert), ("tls.key", &key)]);
    let name = credential
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let certs_dir = credential.path().parent().unwrap().display().to_string();
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), pki.ca.pem()).unwrap();
    let ca = ca_file.path().display().to_string();
    let dir = ConfigDir::new();
    dir.write(
        "backend.yaml",
        &service_entry("rot", "rot.internal", 80, &[(backend.addr, &[])]),
    );
    dir.write(
        "gateway.yaml",
        &https_gateway(
            "rot",
            "[rot.test]",
            &format!("{{mode: SIMPLE, credentialName: {name}}}"),
            "[rot.test]",
            "rot.internal",
        ),
    );
    let gw = Gateway::start(
        dir.path(),
        &["--certs-dir", &certs_dir, "--port-map", "443=0"],
    );
    let port = gw.listener(443).port();
    assert!(s_client(port, Some("rot.test")).0.contains("gen-1"));

    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let done = std::sync::Arc::new(AtomicU32::new(0));
    let client = {
        let (stop, done, ca) = (stop.clone(), done.clone(), ca.clone());
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
            while !stop.load(Ordering::Relaxed)
                && std::time::Instant::now() < deadline
                && done.load(Ordering::Relaxed) < 5_000
            {
                let out = https("rot.test", port, "/", &["--cacert", &ca]);
                if out.status != 200 {
                    failures.push(format!(
                        "exit {} status {} {}",
                        out.exit_code, out.status, out.stderr
                    ));
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            failures
        })
    };
    // Fresh connections go on before, during and after every change.
    let wait_for_traffic = |at_least: u32| {
        gw.wait_until(
            "client handshakes",
            std::time::Duration::from_secs(20),
            || done.load(Ordering::Relaxed) >= at_least,
        )
    };
    wait_for_traffic(5);
    for n in 2..=5 {
        let (cert, key) = pki.leaf(n);
        if n % 2 == 0 {
            // One file after the other: for a moment the key does not match the certificate.
            std::fs::write(credential.path().join("tls.crt"), &cert).unwrap();
            std::fs::write(credential.path().join("tls.key"), &key).unwrap();
        } else {
            credential.k8s_swap(&[("tls.crt", &cert), ("tls.key", &key)]);
        }
        let want = format!("gen-{n}");
        gw.wait_until(
            &format!("certificate {want} served"),
            std::time::Duration::from_secs(10),
            || s_client(port, Some("rot.test")).0.contains(&want),
        );
        wait_for_traffic(done.load(Ordering::Relaxed) + 5);
    }
    stop.store(true, Ordering::Relaxed);
    let failures = client.join().unwrap();
    let ok = done.load(Ordering::Relaxed) - failures.len() as u32;
    assert!(
        failures.is_empty(),
        "{} failed handshakes or requests, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(ok >= 25, "the client loop made only {ok} requests");
}
