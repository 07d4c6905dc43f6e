//! TLS posture (issue 9): TLS 1.2+ and forward-secret AEAD suites only, whatever a Gateway asks
//! for; the server's cipher order; no renegotiation and no compression; OCSP stapling from a
//! credential's `tls.ocsp-staple`, live across reloads; private key files with loose
//! permissions warned about once; private keys never in logs or admin output; the demo's leaf
//! certificates short-lived enough for scripts/testssl.sh. Every refusal is checked against a
//! control: the same `openssl s_client` command succeeds against `openssl s_server`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;

const HOST: &str = "posture.test";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs `openssl <args>` (bounded to 20 s); panics on a non-zero exit.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = run_bounded(
        Command::new("openssl").current_dir(dir).args(args),
        b"",
        Duration::from_secs(20),
    )
    .unwrap_or_else(|| panic!("openssl {args:?} did not exit within 20 s"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl {args:?} failed:\n{text}");
    text
}

/// An RSA credential `<certs>/<name>/` for [`HOST`] (RSA, so that static-RSA suites such as
/// AES128-SHA are possible at all and their refusal is the server's choice).
fn rsa_credential(certs: &Path, name: &str) -> (PathBuf, PathBuf) {
    let folder = certs.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    openssl(
        &folder,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "tls.key",
            "-out",
            "tls.crt",
            "-days",
            "2",
            "-subj",
            "/CN=posture.test",
            "-addext",
            "subjectAltName=DNS:posture.test",
        ],
    );
    (folder.join("tls.crt"), folder.join("tls.key"))
}

/// A gateway with one HTTPS server for [`HOST`] whose `tls` block is `tls`, on `certs`.
fn serve(certs: &Path, tls: &str) -> (Gateway, EchoBackend, ConfigDir) {
    let backend = EchoBackend::start("posture", "v1");
    let dir = ConfigDir::new();
    dir.write(
        "backend.yaml",
        &service_entry("posture", "posture.internal", 80, &[(backend.addr, &[])]),
    );
    let hosts = format!("[{HOST}]");
    dir.write(
        "gateway.yaml",
        &https_gateway("gw", &hosts, tls, &hosts, "posture.internal"),
    );
    let certs = certs.display().to_string();
    let gw = Gateway::start(dir.path(), &["--certs-dir", &certs, "--port-map", "443=0"]);
    (gw, backend, dir)
}

/// What one `openssl s_client` handshake showed.
struct Handshake {
    text: String,
}

impl Handshake {
    fn run(port: u16, args: &[&str]) -> Handshake {
        let mut all = vec!["-servername", HOST];
        all.extend_from_slice(args);
        let out = openssl_s_client(port, &all).expect("openssl s_client exits within 20 s");
        Handshake { text: out.text() }
    }

    /// Whether a cipher suite was agreed.
    fn completed(&self) -> bool {
        self.text.contains("Cipher is ") && !self.text.contains("Cipher is (NONE)")
    }

    /// The protocol: `Protocol  : TLSv1.2`'s value, else (TLS 1.3, whose session s_client may
    /// not print before it exits) the version in `New, TLSv1.3, Cipher is ...`.
    fn protocol(&self) -> &str {
        let session = self
            .text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Protocol  : "));
        let new = || {
            self.text
                .lines()
                .find_map(|l| l.strip_prefix("New, ")?.split(',').next())
        };
        session.or_else(new).unwrap_or("")
    }

    /// The agreed suite (`New, TLSv1.2, Cipher is X`).
    fn cipher(&self) -> &str {
        self.text
            .lines()
            .find_map(|l| l.split_once("Cipher is ").map(|(_, c)| c.trim()))
            .unwrap_or("")
    }
}

/// `openssl s_server` with the same credential, accepting TLS 1.0 and every suite: the control
/// that shows each client below can really make its weak handshake.
fn permissive_server(crt: &Path, key: &Path) -> OpensslServer {
    OpensslServer::start_with(
        crt,
        key,
        &["-min_protocol", "TLSv1", "-cipher", "ALL@SECLEVEL=0"],
    )
}

/// Clients the posture refuses: below TLS 1.2, CBC (with and without ECDHE), finite-field DHE.
const WEAK_CLIENTS: &[(&str, &[&str])] = &[
    ("TLS 1.0", &["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"]),
    ("TLS 1.1", &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]),
    ("TLS 1.2 AES128-SHA", &["-tls1_2", "-cipher", "AES128-SHA"]),
    (
        "TLS 1.2 ECDHE-RSA-AES128-SHA",
        &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA"],
    ),
    (
        "TLS 1.2 DHE-RSA-AES128-GCM-SHA256",
        &["-tls1_2", "-cipher", "DHE-RSA-AES128-GCM-SHA256"],
    ),
];

#[test]
fn old_protocols_cbc_and_non_ecdhe_suites_are_refused_by_default() {
    let certs = tempfile::tempdir().unwrap();
    let (crt, key) = rsa_credential(certs.path(), "posture");
    let (gw, _b, _d) = serve(certs.path(), "{mode: SIMPLE, credentialName: posture}");
    let port = gw.listener(443).port();
    let control = permissive_server(&crt, &key);
    for (what, args) in WEAK_CLIENTS {
        let ok = Handshake::run(control.port(), args);
        assert!(
            ok.completed(),
            "control: {what} works against s_server:\n{}",
            ok.text
        );
        let refused = Handshake::run(port, args);
        assert!(
            !refused.completed(),
            "{what} must be refused by tollgate, got {} {}:\n{}",
            refused.protocol(),
            refused.cipher(),
            refused.text
        );
    }
    for (version, expect) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let good = Handshake::run(port, &[version]);
        assert!(good.completed(), "{version}:\n{}", good.text);
        assert_eq!(good.protocol(), expect);
        assert!(good.text.contains("Compression: NONE"), "{}", good.text);
    }
    // RFC 5746's indication is sent: no client can be tricked into an insecure renegotiation.
    let tls12 = Handshake::run(port, &["-tls1_2"]);
    assert!(tls12.text.contains("Secure Renegotiation IS supported"));
}

/// `openssl s_client -tls1_2 -msg`, typing `R` (renegotiate) a second after connecting; cut off
/// after 6 s (a client left waiting for a ServerHello that never comes does not exit by itself).
fn renegotiate(port: u16) -> String {
    let script = format!(
        "(sleep 1; printf 'R\\n'; sleep 2) | timeout 6 openssl s_client -connect 127.0.0.1:{port} \
         -servername {HOST} -tls1_2 -msg 2>&1"
    );
    let out = run_bounded(
        Command::new("sh").args(["-c", &script]),
        b"",
        Duration::from_secs(20),
    )
    .expect("renegotiation attempt ends within 20 s");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_client_initiated_renegotiation_gets_no_new_handshake() {
    let certs = tempfile::tempdir().unwrap();
    let (crt, key) = rsa_credential(certs.path(), "posture");
    let (gw, _b, _d) = serve(certs.path(), "{mode: SIMPLE, credentialName: posture}");
    let server_hellos_after_r = |text: &str| {
        let after = text
            .split_once("RENEGOTIATING")
            .unwrap_or_else(|| panic!("s_client never tried to renegotiate:\n{text}"))
            .1;
        after.matches("ServerHello").count()
    };
    let control = OpensslServer::start_with(&crt, &key, &["-client_renegotiation"]);
    let text = renegotiate(control.port());
    assert!(
        server_hellos_after_r(&text) > 0,
        "control: s_server renegotiates:\n{text}"
    );
    let text = renegotiate(gw.listener(443).port());
    assert_eq!(
        server_hellos_after_r(&text),
        0,
        "tollgate renegotiated:\n{text}"
    );
}

#[test]
fn gateway_settings_narrow_the_posture_but_never_weaken_it() {
    let certs = tempfile::tempdir().unwrap();
    rsa_credential(certs.path(), "posture");
    let tls = "{mode: SIMPLE, credentialName: posture, minProtocolVersion: TLSV1_0, \
               maxProtocolVersion: TLSV1_1, cipherSuites: [AES128-SHA, ECDHE-RSA-AES128-SHA, \
               ECDHE-RSA-AES128-GCM-SHA256]}";
    let (gw, _b, _d) = serve(certs.path(), tls);
    let port = gw.listener(443).port();
    let diags = diagnostics(&gw.config_dump()).join("\n");
    for expected in [
        "minProtocolVersion TLSV1_0 is below TLS 1.2",
        "maxProtocolVersion TLSV1_1 is below TLS 1.2",
        "cipher suite AES128-SHA is not offered",
        "cipher suite ECDHE-RSA-AES128-SHA is not offered",
    ] {
        assert!(diags.contains(expected), "{expected:?} in:\n{diags}");
    }
    let tls11 = Handshake::run(port, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    assert!(!tls11.completed(), "TLS 1.1 refused:\n{}", tls11.text);
    let cbc = Handshake::run(port, &["-tls1_2", "-cipher", "AES128-SHA"]);
    assert!(!cbc.completed(), "AES128-SHA refused:\n{}", cbc.text);
    // Served as TLS 1.2 (the raised maximum), with the one listed suite that is allowed.
    let ok = Handshake::run(port, &[]);
    assert_eq!(ok.protocol(), "TLSv1.2", "{}", ok.text);
    assert_eq!(ok.cipher(), "ECDHE-RSA-AES128-GCM-SHA256");
    let other = Handshake::run(port, &["-cipher", "ECDHE-RSA-AES256-GCM-SHA384"]);
    assert!(!other.completed(), "an unlisted suite is refused");
}

#[test]
fn the_server_chooses_the_strongest_suite_whatever_the_client_order() {
    let certs = tempfile::tempdir().unwrap();
    rsa_credential(certs.path(), "posture");
    let (gw, _b, _d) = serve(certs.path(), "{mode: SIMPLE, credentialName: posture}");
    let port = gw.listener(443).port();
    let weak_first = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384";
    let h = Handshake::run(port, &["-tls1_2", "-cipher", weak_first]);
    assert_eq!(h.cipher(), "ECDHE-RSA-AES256-GCM-SHA384", "{}", h.text);
    let weak_first = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384";
    let h = Handshake::run(port, &["-tls1_3", "-ciphersuites", weak_first]);
    assert_eq!(h.cipher(), "TLS_AES_256_GCM_SHA384", "{}", h.text);
}

/// A CA, a leaf for [`HOST`] with serial 0x1234 in `<certs>/<name>/`, and a DER OCSP response
/// for it signed by the CA (`openssl ocsp` over a one-line index), returned as a path.
fn credential_with_ocsp(work: &Path, certs: &Path, name: &str) -> PathBuf {
    let folder = certs.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3",
        "-subj",
        "/CN=posture test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    ]);
    openssl(work, &ca);
    let mut csr = vec!["req", "-new"];
    csr.extend(ec);
    let key = folder.join("tls.key").display().to_string();
    csr.extend([
        "-keyout",
        &key,
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=posture.test",
    ]);
    openssl(work, &csr);
    std::fs::write(work.join("leaf.ext"), "subjectAltName=DNS:posture.test\n").unwrap();
    let crt = folder.join("tls.crt").display().to_string();
    openssl(
        work,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "0x1234",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            &crt,
        ],
    );
    // The index's expiry column only has to be in the future.
    std::fs::write(
        work.join("index.txt"),
        "V\t391231235959Z\t\t1234\tunknown\t/CN=posture.test\n",
    )
    .unwrap();
    openssl(
        work,
        &[
            "ocsp",
            "-issuer",
            "ca.crt",
            "-cert",
            &crt,
            "-no_nonce",
            "-reqout",
            "req.der",
        ],
    );
    openssl(
        work,
        &[
            "ocsp",
            "-index",
            "index.txt",
            "-rsigner",
            "ca.crt",
            "-rkey",
            "ca.key",
            "-CA",
            "ca.crt",
            "-reqin",
            "req.der",
            "-respout",
            "resp.der",
            "-ndays",
            "1",
        ],
    );
    work.join("resp.der")
}

fn status_request(port: u16, version: &str) -> String {
    Handshake::run(port, &[version, "-status"]).text
}

#[test]
fn an_ocsp_staple_in_the_credential_is_stapled_and_reloads_with_it() {
    let work = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let response = credential_with_ocsp(work.path(), certs.path(), "posture");
    let (gw, _b, _d) = serve(certs.path(), "{mode: SIMPLE, credentialName: posture}");
    let port = gw.listener(443).port();
    let before = status_request(port, "-tls1_2");
    assert!(
        before.contains("OCSP response: no response sent"),
        "no staple yet:\n{before}"
    );

    let generation = gw.generation();
    let staple = certs.path().join("posture/tls.ocsp-staple");
    std::fs::copy(&response, &staple).unwrap();
    gw.wait_generation(generation + 1);
    for version in ["-tls1_2", "-tls1_3"] {
        let mut last = String::new();
        gw.wait_until(
            &format!("{version} -status shows the staple"),
            Duration::from_secs(10),
            || {
                last = status_request(port, version);
                last.contains("OCSP Response Status: successful")
            },
        );
        assert!(last.contains("Cert Status: good"), "{last}");
        assert!(last.contains("Serial Number: 1234"), "{last}");
    }

    // A broken staple is reported; the credential that loaded before stays, staple included.
    let generation = gw.generation();
    std::fs::write(&staple, b"not an OCSP response").unwrap();
    gw.wait_generation(generation + 1);
    let diags = diagnostics(&gw.config_dump()).join("\n");
    assert!(
        diags.contains("tls.ocsp-staple: not a DER OCSP response"),
        "{diags}"
    );
    assert!(status_request(port, "-tls1_2").contains("OCSP Response Status: successful"));

    // Gone from the folder: no longer stapled.
    let generation = gw.generation();
    std::fs::remove_file(&staple).unwrap();
    gw.wait_generation(generation + 1);
    gw.wait_until("the staple is gone", Duration::from_secs(10), || {
        status_request(port, "-tls1_2").contains("OCSP response: no response sent")
    });
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_key_file_others_can_read_is_warned_about_once_per_mode() {
    let certs = tempfile::tempdir().unwrap();
    let (_, loose) = self_signed(certs.path(), "loose", "loose.test");
    let (_, tight) = self_signed(certs.path(), "tight", "tight.test");
    set_mode(&loose, 0o644);
    set_mode(&tight, 0o600);
    let dir = ConfigDir::new();
    let gateway = |name: &str, host: &str, credential: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n  \
             selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: 443, name: https, protocol: HTTPS}}\n    \
             hosts: [{host}]\n    tls: {{mode: SIMPLE, credentialName: {credential}}}\n"
        )
    };
    dir.write("loose.yaml", &gateway("loose", "loose.test", "loose"));
    dir.write("tight.yaml", &gateway("tight", "tight.test", "tight"));
    let certs_arg = certs.path().display().to_string();
    let gw = Gateway::start(
        dir.path(),
        &["--certs-dir", &certs_arg, "--port-map", "443=0"],
    );
    let warning = |mode: &str| format!("private key file {} has mode {mode}", loose.display());
    gw.wait_until("the 0644 warning", Duration::from_secs(10), || {
        gw.stderr().contains(&warning("0644"))
    });
    assert!(gw.stderr().contains("make it 0400 or 0600"));

    // Reloads (a config change, then the key rewritten with the same mode) say nothing again.
    let generation = gw.generation();
    dir.write("extra.yaml", &gateway("extra", "extra.test", "loose"));
    let generation = gw.wait_generation(generation + 1);
    let pem = std::fs::read(&loose).unwrap();
    std::fs::write(&loose, &pem).unwrap();
    let generation = gw.wait_generation(generation + 1);
    // Another mode is another warning.
    set_mode(&loose, 0o666);
    gw.wait_generation(generation + 1);
    gw.wait_until("the 0666 warning", Duration::from_secs(10), || {
        gw.stderr().contains(&warning("0666"))
    });
    let stderr = gw.stderr();
    assert_eq!(stderr.matches(&warning("0644")).count(), 1, "{stderr}");
    assert_eq!(stderr.matches(&warning("0666")).count(), 1, "{stderr}");
    assert!(
        !stderr.contains(&tight.display().to_string()),
        "a 0600 key is not warned about:\n{stderr}"
    );
}

/// The base64 body of a PEM block (its lines between BEGIN and END, joined).
fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

#[test]
fn private_keys_never_reach_logs_or_admin_output() {
    let certs = tempfile::tempdir().unwrap();
    let (_, folder_key) = self_signed(certs.path(), "from-folder", "folder.test");
    let secret_dir = tempfile::tempdir().unwrap();
    let (secret_crt, secret_key) = self_signed(secret_dir.path(), "s", "secret.test");
    let folder_key = std::fs::read_to_string(folder_key).unwrap();
    let secret_crt = std::fs::read_to_string(secret_crt).unwrap();
    let secret_key = std::fs::read_to_string(secret_key).unwrap();
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);

    let dir = ConfigDir::new();
    let backend = EchoBackend::start("secret", "v1");
    dir.write(
        "backend.yaml",
        &service_entry("secret", "secret.internal", 80, &[(backend.addr, &[])]),
    );
    dir.write(
        "secret.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: from-secret, namespace: istio-system}}\n\
             type: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
            b64(&secret_crt),
            b64(&secret_key)
        ),
    );
    dir.write(
        "folder.yaml",
        &https_gateway(
            "folder",
            "[folder.test]",
            "{mode: SIMPLE, credentialName: from-folder}",
            "[folder.test]",
            "secret.internal",
        ),
    );
    dir.write(
        "secret-gw.yaml",
        &https_gateway(
            "secretgw",
            "[secret.test]",
            "{mode: SIMPLE, credentialName: from-secret}",
            "[secret.test]",
            "secret.internal",
        )
        .replace("port: {number: 443", "port: {number: 8443"),
    );
    let certs_arg = certs.path().display().to_string();
    let gw = Gateway::start(
        dir.path(),
        &[
            "--certs-dir",
            &certs_arg,
            "--port-map",
            "443=0",
            "--port-map",
            "8443=0",
        ],
    );
    let (status, body) = gw.admin_post("/logging?level=trace");
    assert_eq!(status, 200, "{body}");
    // Handshakes with both credentials, then a reload of both, all logged at trace.
    for (host, gw_port) in [("folder.test", 443), ("secret.test", 8443)] {
        let out = curl_https(host, gw.listener(gw_port).port(), "/", &["-k"]);
        assert_eq!(out.status, 200, "{host}: {}", out.stderr);
    }
    let generation = gw.generation();
    std::fs::write(certs.path().join("from-folder/tls.key"), &folder_key).unwrap();
    dir.write(
        "secret.yaml",
        &std::fs::read_to_string(dir.path().join("secret.yaml")).unwrap(),
    );
    gw.wait_generation(generation + 1);

    let mut admin = String::new();
    for path in [
        "/config_dump",
        "/certs",
        "/listeners",
        "/clusters",
        "/stats",
    ] {
        let (status, body) = gw.admin_get(path);
        assert_eq!(status, 200, "{path}: {body}");
        admin.push_str(&body);
    }
    assert!(
        admin.contains("from-secret") && admin.contains("tls.key"),
        "the Secret is in the dump, by key name"
    );
    let stderr = gw.stderr();
    assert!(
        stderr.contains("TRACE") || stderr.contains("DEBUG"),
        "trace logging was on:\n{stderr}"
    );
    for (what, key) in [("folder", &folder_key), ("Secret", &secret_key)] {
        let body = pem_body(key);
        assert!(body.len() > 100, "{what} key body: {body}");
        let needles = [body.clone(), b64(key), body[20..60].to_string()];
        for needle in &needles {
            assert!(
                !admin.contains(needle.as_str()),
                "the {what} key is in admin output"
            );
            assert!(
                !stderr.contains(needle.as_str()),
                "the {what} key is in the log"
            );
        }
        // Line by line too: a key must not leak even as a wrapped PEM line.
        for line in key
            .lines()
            .filter(|l| l.len() >= 40 && !l.starts_with("-----"))
        {
            assert!(
                !admin.contains(line) && !stderr.contains(line),
                "a {what} key line leaked"
            );
        }
    }
}

/// A certificate file's notBefore and notAfter, Unix seconds.
fn leaf_validity(path: &Path) -> (i64, i64) {
    let pem = std::fs::read(path).unwrap();
    let der = tollgate::tls::pem::certificates(&pem).unwrap().remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    )
}

#[test]
fn the_demo_leaf_certificates_live_at_most_397_days_and_are_not_about_to_expire() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let leaves = [
        "webapp-credential",
        "catalog-credential",
        "mtls-credential",
        "simple-tls-service-1",
        "simple-tls-service-2",
        "clients/webapp",
    ];
    for leaf in leaves {
        let path = repo("certs").join(leaf).join("tls.crt");
        let (not_before, not_after) = leaf_validity(&path);
        let days = (not_after - not_before) / 86_400;
        assert!(
            days <= 398,
            "{} lives {days} days; testssl.sh wants at most 398",
            path.display()
        );
        let left = (not_after - now) / 86_400;
        assert!(
            left >= 30,
            "{} expires in {left} days: run certs/generate.sh --leaves, then deploy/kind/sync.sh",
            path.display()
        );
    }
    let webapp = std::fs::read(repo("certs/webapp-credential/tls.crt")).unwrap();
    let der = tollgate::tls::pem::certificates(&webapp).unwrap().remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let has_crl_point = cert.extensions().iter().any(|e| {
        matches!(
            e.parsed_extension(),
            x509_parser::extensions::ParsedExtension::CRLDistributionPoints(_)
        )
    });
    assert!(
        has_crl_point,
        "the demo server certificates name a CRL distribution point"
    );
}

#[test]
fn the_testssl_script_parses() {
    let script = repo("scripts/testssl.sh");
    let out = run_bounded(
        Command::new("bash").arg("-n").arg(&script),
        b"",
        Duration::from_secs(20),
    )
    .expect("bash -n exits");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("--add-ca") && text.contains("--ip 127.0.0.1"));
}
