//! The README's tour, command by command, against `tollgate demo` run from the repository root
//! with the bundled gateway-configs/ and certs/ (gateway ports made ephemeral for the test).

mod support;

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
    // `openssl s_client -servername <host>` on the HTTPS port shows a certificate for `host`.
    let assert_certificate_for = |host: &str| {
        let text = openssl_s_client(https, &["-servername", host])
            .expect("openssl s_client exits within 20 s")
            .stdout;
        let cn = format!("CN = {host}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("subject=") && l.contains(&cn)),
            "{text}"
        );
    };
    assert_certificate_for("catalog.istioinaction.io");

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

    // PASSTHROUGH on the same port, two SNI hosts: each backend's own certificate, which no
    // Gateway holds.
    for n in 1..=2 {
        let host = format!("simple-sni-{n}.istioinaction.io");
        let passthrough = curl(&[
            "--cacert",
            "certs/ca/ca.crt",
            "--resolve",
            &resolve(&host, https),
            &format!("https://{host}:{https}/"),
        ]);
        assert_eq!(served(&passthrough).0, format!("simple-tls-service-{n}"));
        assert_certificate_for(&host);
    }

    // The raw TCP port, as `telnet localhost 31400` would use it.
    let tcp = gw.listener(31400);
    let echoed = nc(tcp.port(), b"hello tollgate\n").expect("nc finishes within 20 s");
    assert_eq!(String::from_utf8_lossy(&echoed.stdout), "hello tollgate\n");
}
