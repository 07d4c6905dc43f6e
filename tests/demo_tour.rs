//! The README's tour, command by command, against `tollgate demo` run from the repository root
//! with the bundled gateway-configs/ and certs/ (gateway ports made ephemeral for the test).

mod support;

use std::process::Command;

use support::*;

fn resolve(host: &str, port: u16) -> String {
    format!("{host}:{port}:127.0.0.1")
}

#[test]
fn the_readme_tour_works_on_the_bundled_demo() {
    let gw = Gateway::start_demo(&[
        "--port-map",
        "80=0",
        "--port-map",
        "443=0",
        "--port-map",
        "31400=0",
    ]);
    let (http, https) = (gw.listener(80).port(), gw.listener(443).port());
    let served = |out: &CurlOutput| {
        assert_eq!(out.status, 200, "exit {} {}", out.exit_code, out.stderr);
        let seen = out.json();
        (
            seen["service"].as_str().unwrap_or_default().to_string(),
            seen["version"].as_str().unwrap_or_default().to_string(),
        )
    };

    let webapp = curl(&[
        "--resolve",
        &resolve("webapp.istioinaction.io", http),
        &format!("http://webapp.istioinaction.io:{http}/hello"),
    ]);
    assert_eq!(served(&webapp).0, "webapp");
    let dark = curl(&[
        "-H",
        "x-dark-launch: v2",
        "--resolve",
        &resolve("catalog.istioinaction.io", http),
        &format!("http://catalog.istioinaction.io:{http}/items"),
    ]);
    assert_eq!(served(&dark), ("catalog".to_string(), "v2".to_string()));
    let unknown = curl(&[
        "--resolve",
        &resolve("unknown.example.com", http),
        &format!("http://unknown.example.com:{http}/"),
    ]);
    assert_eq!(unknown.status, 404);

    for host in ["webapp", "catalog"] {
        let name = format!("{host}.istioinaction.io");
        let out = curl(&[
            "--cacert",
            "certs/ca/ca.crt",
            "--resolve",
            &resolve(&name, https),
            &format!("https://{name}:{https}/"),
        ]);
        assert_eq!(served(&out).0, host);
    }
    let s_client = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{https}"),
            "-servername",
            "catalog.istioinaction.io",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&s_client.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("subject=") && l.contains("CN = catalog.istioinaction.io")),
        "{text}"
    );

    let mtls = |extra: &[&str]| {
        let mut args = vec!["--cacert", "certs/ca/ca.crt"];
        args.extend_from_slice(extra);
        let r = resolve("mtls.istioinaction.io", https);
        let url = format!("https://mtls.istioinaction.io:{https}/");
        args.extend_from_slice(&["--resolve", &r, &url]);
        curl(&args)
    };
    let with_cert = mtls(&[
        "--cert",
        "certs/clients/webapp/tls.crt",
        "--key",
        "certs/clients/webapp/tls.key",
    ]);
    assert_eq!(served(&with_cert).0, "webapp");
    assert!(with_cert.json()["headers"]["x-forwarded-client-cert"]
        .as_str()
        .is_some_and(|x| x.contains("URI=spiffe://istioinaction/webapp")));
    assert_ne!(
        mtls(&[]).status,
        200,
        "MUTUAL refuses a client without a certificate"
    );

    let redirect = curl(&[
        "--resolve",
        &resolve("secure.istioinaction.io", http),
        &format!("http://secure.istioinaction.io:{http}/login"),
    ]);
    assert_eq!(
        (redirect.status, redirect.header("location")),
        (301, Some("https://secure.istioinaction.io/login"))
    );

    // PASSTHROUGH on the same port: the backend's own certificate, which no Gateway holds.
    let passthrough = curl(&[
        "--cacert",
        "certs/ca/ca.crt",
        "--resolve",
        &resolve("passthrough.istioinaction.io", https),
        &format!("https://passthrough.istioinaction.io:{https}/"),
    ]);
    assert_eq!(served(&passthrough).0, "passthrough-backend");
    let s_client = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{https}")])
        .args(["-servername", "passthrough.istioinaction.io"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&s_client.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("subject=") && l.contains("CN = passthrough.istioinaction.io")),
        "{text}"
    );

    // The raw TCP port, as `telnet localhost 31400` would use it.
    let tcp = gw.listener(31400);
    let mut nc = Command::new("nc")
        .args(["-N", "-w", "10", "127.0.0.1", &tcp.port().to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("nc runs");
    use std::io::Write as _;
    nc.stdin
        .take()
        .expect("stdin")
        .write_all(b"hello tollgate\n")
        .expect("write to nc");
    let echoed = nc.wait_with_output().expect("nc finishes");
    assert_eq!(String::from_utf8_lossy(&echoed.stdout), "hello tollgate\n");
}
