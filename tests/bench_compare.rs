//! `benches/compare/`, the side-by-side benchmark: its scripts parse (`bash -n`), and the Istio
//! YAML that `contestants/tollgate.sh` writes for each scenario passes `tollgate check`, serves
//! the scenario's port, and (scenario H) changes with each reload. Nothing here runs the
//! benchmark itself.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

fn compare_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/compare")
}

const SCRIPTS: &[&str] = &[
    "run.sh",
    "lib.sh",
    "contestants/nginx.sh",
    "contestants/haproxy.sh",
    "contestants/tollgate.sh",
];

/// Runs a bash snippet in benches/compare with `lib.sh` and `contestants/tollgate.sh` sourced.
fn tollgate_sh(snippet: &str, env: &[(&str, &Path)]) -> String {
    let script =
        format!("set -euo pipefail\nsource ./lib.sh\nsource contestants/tollgate.sh\n{snippet}\n");
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(&script).current_dir(compare_dir());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.env("SNI_HOSTS", "3");
    let out =
        run_bounded(&mut cmd, b"", Duration::from_secs(30)).expect("bash did not exit within 30 s");
    assert!(
        out.status.success(),
        "bash snippet failed:\n{snippet}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Certificates laid out as run.sh makes them: `{a,b}.{ecdsa,rsa}.{crt,key}`, `ca.crt`, and
/// scenario I's credential folders `sni/creds/h0..h2`.
fn fake_certs(dir: &Path) -> (PathBuf, PathBuf) {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).expect("create certs dir");
    for (h, host) in [("a", "a.bench.test"), ("b", "b.bench.test")] {
        for kind in ["ecdsa", "rsa"] {
            let (crt, key) = self_signed(&certs, &format!("{h}-{kind}"), host);
            std::fs::copy(&crt, certs.join(format!("{h}.{kind}.crt"))).expect("copy crt");
            std::fs::copy(&key, certs.join(format!("{h}.{kind}.key"))).expect("copy key");
        }
    }
    std::fs::copy(certs.join("a.ecdsa.crt"), certs.join("ca.crt")).expect("copy ca");
    let sni = dir.join("sni");
    for i in 0..3 {
        self_signed(
            &sni.join("creds"),
            &format!("h{i}"),
            &format!("h{i}.i.bench.test"),
        );
    }
    (certs, sni)
}

/// Every document of every YAML file under `dir`.
fn documents(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read config dir") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).expect("read yaml");
            out.extend(
                tollgate::config::yaml::json_documents(&text)
                    .unwrap_or_else(|e| panic!("{}: {e:?}", path.display())),
            );
        }
    }
    out
}

#[test]
fn scripts_parse() {
    for script in SCRIPTS {
        let path = compare_dir().join(script);
        assert!(path.is_file(), "missing {}", path.display());
        let out = run_bounded(
            Command::new("bash").arg("-n").arg(&path),
            b"",
            Duration::from_secs(10),
        )
        .expect("bash -n did not exit within 10 s");
        assert!(
            out.status.success(),
            "bash -n {script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn tollgate_configs_pass_check_and_serve_the_scenario_port() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (certs, sni) = fake_certs(tmp.path());
    let ports = tollgate_sh(
        "for s in A B C Crsa D E F H I; do echo \"$s $(scenario_port $s)\"; done",
        &[],
    );
    for line in ports.lines() {
        let (sc, port) = line.split_once(' ').expect("scenario port line");
        let port: u64 = port.parse().expect("port number");
        let dir = tmp.path().join(sc);
        let certs_dir = tollgate_sh(
            &format!("tg_write_config {sc} {}", dir.display()),
            &[("CERTS", &certs), ("SNI_DIR", &sni)],
        );
        let certs_dir = certs_dir.trim();
        let expected = if sc == "I" {
            sni.join("creds")
        } else {
            certs.clone()
        };
        assert_eq!(Path::new(certs_dir), expected, "{sc}: certs dir");

        let config = dir.join("config");
        let out = check(
            &config,
            &[
                "--certs-dir",
                certs_dir,
                "--namespace",
                "bench",
                "--gateway-namespace",
                "bench",
                "--no-dns",
            ],
        );
        assert!(
            out.success(),
            "{sc}: tollgate check failed:\n{}\n{}",
            out.stdout,
            out.stderr
        );

        let docs = documents(&config);
        let gateways: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Gateway").collect();
        assert_eq!(gateways.len(), 1, "{sc}: one Gateway");
        let servers = gateways[0]["spec"]["servers"].as_array().expect("servers");
        assert!(
            servers
                .iter()
                .all(|s| s["port"]["number"].as_u64() == Some(port)),
            "{sc}: every server on port {port}: {servers:?}"
        );
        let expected_servers = match sc {
            "A" | "E" | "F" => 1,
            "I" => 3,
            _ => 2,
        };
        assert_eq!(servers.len(), expected_servers, "{sc}: servers");
        if sc == "I" {
            for (i, s) in servers.iter().enumerate() {
                assert_eq!(
                    s["tls"]["credentialName"],
                    format!("h{i}"),
                    "I: credential of server {i}"
                );
                assert_eq!(
                    s["hosts"][0],
                    format!("h{i}.i.bench.test"),
                    "I: host of server {i}"
                );
            }
        }
        if sc == "D" {
            assert!(
                servers.iter().all(|s| s["tls"]["mode"] == "MUTUAL"),
                "D: MUTUAL servers"
            );
        }
        assert!(
            docs.iter().any(|d| d["kind"] == "VirtualService"),
            "{sc}: a VirtualService"
        );
    }
}

#[test]
fn reload_rewrites_the_route_with_a_new_revision() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (certs, sni) = fake_certs(tmp.path());
    let dir = tmp.path().join("H");
    let env = [("CERTS", certs.as_path()), ("SNI_DIR", sni.as_path())];
    tollgate_sh(
        &format!("tg_write_config H {} >/dev/null", dir.display()),
        &env,
    );
    let revision = |dir: &Path| {
        let text = std::fs::read_to_string(dir.join("config/route.yaml")).expect("read route.yaml");
        let docs = tollgate::config::yaml::json_documents(&text).expect("route.yaml parses");
        docs[0]["spec"]["http"][0]["headers"]["response"]["set"]["x-bench-revision"].clone()
    };
    assert_eq!(revision(&dir), "0");
    tollgate_sh(&format!("c_reload {} 0 7", dir.display()), &env);
    assert_eq!(revision(&dir), "7");
    assert!(
        !dir.join("route.yaml.tmp").exists(),
        "temporary file left behind"
    );
    let out = check(
        &dir.join("config"),
        &[
            "--certs-dir",
            &certs.display().to_string(),
            "--namespace",
            "bench",
            "--gateway-namespace",
            "bench",
            "--no-dns",
        ],
    );
    assert!(
        out.success(),
        "H after reload: {}\n{}",
        out.stdout,
        out.stderr
    );
}
