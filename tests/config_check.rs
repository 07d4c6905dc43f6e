//! Configuration diagnostics end to end: `tollgate check` on the public fixtures and on broken
//! input, and a running gateway that reports a broken file (file, line, field path) while the
//! last good configuration keeps serving.
//!
//! Line numbers in the expectations are counted in the YAML written here (1-based). Failures are
//! collected and split into "wrong line number only" and "everything else", so one run shows
//! every problem and which of them are only about lines.

mod support;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::*;

// ------------------------------------------------------------------------------------------
// Helpers: fixtures, diagnostics, failure collection

/// `../shared/fixtures` next to this crate; fails with a clear message when it is missing.
fn shared_fixtures() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures");
    if !dir.is_dir() {
        let msg = format!(
            "the shared Istio fixtures are missing: expected a directory at {} \
             (../shared/fixtures relative to CARGO_MANIFEST_DIR); these tests need them",
            dir.display()
        );
        eprintln!("{msg}");
        panic!("{msg}");
    }
    dir.canonicalize().expect("canonicalize ../shared/fixtures")
}

/// Absolute path of the book's credentials, laid out like Kubernetes TLS secrets.
fn book_credentials() -> PathBuf {
    let dir = shared_fixtures().join("istio-in-action/ch4/credentials");
    assert!(dir.is_dir(), "missing credentials folder {}", dir.display());
    dir
}

/// Every `*.yaml` under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            fs::read_dir(dir).unwrap_or_else(|e| panic!("read dir {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                out.push(path);
            }
        }
    }
    assert!(dir.is_dir(), "missing fixture folder {}", dir.display());
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// Copies `file` alone into a fresh temp dir and runs `tollgate check` on it.
fn check_alone(file: &Path, extra: &[&str]) -> (CheckOutput, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("tollgate-check-")
        .tempdir()
        .expect("create temp config dir");
    let name = file.file_name().expect("fixture file name");
    fs::copy(file, dir.path().join(name))
        .unwrap_or_else(|e| panic!("copy {}: {e}", file.display()));
    let out = check(dir.path(), extra);
    (out, dir)
}

fn describe_output(out: &CheckOutput) -> String {
    format!(
        "exit code {:?}\n--- stdout:\n{}--- stderr:\n{}",
        out.code, out.stdout, out.stderr
    )
}

/// One diagnostic line, `<file>:<line> <severity>: <rest>`.
#[derive(Debug)]
struct Diag {
    file: String,
    line: Option<u32>,
    severity: &'static str,
    raw: String,
}

fn parse_diag(raw: &str) -> Option<Diag> {
    let (at, severity) = ["error", "warning", "info"]
        .into_iter()
        .filter_map(|sev| raw.find(&format!(" {sev}: ")).map(|i| (i, sev)))
        .min_by_key(|(i, _)| *i)?;
    let (file, line) = raw[..at].rsplit_once(':')?;
    Some(Diag {
        file: file.to_string(),
        line: line.parse().ok(),
        severity,
        raw: raw.to_string(),
    })
}

/// The diagnostic a test expects.
struct Want<'a> {
    what: &'a str,
    file: &'a Path,
    /// Expected 1-based line; `None` = not checked.
    line: Option<u32>,
    severity: &'static str,
    /// Field path, printed as `: <field>: ` after the object.
    field: Option<&'a str>,
    /// Substrings the line must contain.
    needles: &'a [&'a str],
}

/// Collected failures: those only about a line number, and all others.
#[derive(Default)]
struct Failures {
    lines: Vec<String>,
    other: Vec<String>,
}

impl Failures {
    fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.other.push(msg());
        }
    }

    fn check_line(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.lines.push(msg());
        }
    }

    /// `diags` (one diagnostic per string) must contain `want`; a match that differs only in
    /// its line number is a line failure.
    fn expect_diag(&mut self, want: &Want<'_>, diags: &[String], context: &str) {
        let file = want.file.display().to_string();
        let field = want.field.map(|f| format!(": {f}: "));
        let candidates: Vec<Diag> = diags
            .iter()
            .filter_map(|d| parse_diag(d))
            .filter(|d| {
                d.file == file
                    && d.severity == want.severity
                    && field.as_ref().is_none_or(|f| d.raw.contains(f.as_str()))
                    && want.needles.iter().all(|n| d.raw.contains(n))
            })
            .collect();
        if candidates.is_empty() {
            self.other.push(format!(
                "[{context}] {}: no {} for file {file} with field {:?} containing {:?}; diagnostics:\n  {}",
                want.what,
                want.severity,
                want.field,
                want.needles,
                diags.join("\n  ")
            ));
            return;
        }
        if let Some(line) = want.line {
            if !candidates.iter().any(|d| d.line == Some(line)) {
                let got: Vec<&str> = candidates.iter().map(|d| d.raw.as_str()).collect();
                self.lines.push(format!(
                    "[{context}] {}: expected line {line}, got:\n  {}",
                    want.what,
                    got.join("\n  ")
                ));
            }
        }
    }

    fn assert_none(self, test: &str) {
        if self.lines.is_empty() && self.other.is_empty() {
            return;
        }
        let mut msg = format!(
            "{test}: {} failure(s)\n",
            self.lines.len() + self.other.len()
        );
        if !self.other.is_empty() {
            msg.push_str(&format!(
                "\n=== {} failure(s) NOT about line numbers:\n\n{}\n",
                self.other.len(),
                self.other.join("\n\n")
            ));
        }
        if !self.lines.is_empty() {
            msg.push_str(&format!(
                "\n=== {} failure(s) only about line numbers:\n\n{}\n",
                self.lines.len(),
                self.lines.join("\n\n")
            ));
        }
        panic!("{msg}");
    }
}

fn stdout_lines(out: &CheckOutput) -> Vec<String> {
    out.stdout.lines().map(str::to_string).collect()
}

/// The 1-based line `n` of `text` (to self-check the line numbers written in this file).
fn line_at(text: &str, n: u32) -> &str {
    text.lines()
        .nth(n as usize - 1)
        .unwrap_or_else(|| panic!("test YAML has no line {n}:\n{text}"))
}

// ------------------------------------------------------------------------------------------
// 1. The book and the Istio samples load cleanly

#[test]
fn book_and_sample_fixtures_load_without_errors() {
    let fixtures = shared_fixtures();
    let certs = book_credentials();
    let certs = certs.to_str().expect("utf-8 credentials path");
    let mut files = yaml_files(&fixtures.join("istio-in-action"));
    files.extend(yaml_files(&fixtures.join("istio-samples")));

    let mut failures = Vec::new();
    for file in &files {
        let (out, _dir) = check_alone(file, &["--certs-dir", certs]);
        let errors: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.contains(" error: "))
            .collect();
        if out.code != Some(0) || !errors.is_empty() || out.stderr.contains("panicked") {
            failures.push(format!("{}\n{}", file.display(), describe_output(&out)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixture file(s) did not check cleanly:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
    assert!(
        files.len() >= 70,
        "only {} fixture files were checked; expected at least 70 under {}",
        files.len(),
        fixtures.display()
    );
}

// ------------------------------------------------------------------------------------------
// 2. Istio's own testdata: reported, never a crash

const GATEWAY_SECRETS: &str = "pkg__config__analysis__analyzers__testdata__gateway-secrets.yaml";
const GATEWAY_SECRETS_VALIDATION: &str =
    "pkg__config__analysis__analyzers__testdata__gateway-secrets-validation.yaml";
const CONFLICTING_GATEWAYS: &str =
    "pkg__config__analysis__analyzers__testdata__conflicting-gateways.yaml";
const CONFLICTING_GATEWAYS_MULTIPLE_PORTS: &str =
    "pkg__config__analysis__analyzers__testdata__conflicting-gateways-multiple-ports.yaml";

#[test]
fn istio_testdata_is_reported_never_crashes() {
    let testdata = shared_fixtures().join("istio-testdata");
    let certs = book_credentials();
    let certs = certs.to_str().expect("utf-8 credentials path");
    let files = yaml_files(&testdata);
    assert!(!files.is_empty(), "no YAML in {}", testdata.display());

    let mut f = Failures::default();
    let mut seen = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let (out, dir) = check_alone(file, &["--certs-dir", certs]);
        f.check(
            matches!(out.code, Some(0 | 1)) && !out.stderr.contains("panicked"),
            || {
                format!(
                    "{name}: must exit 0 or 1 without a panic\n{}",
                    describe_output(&out)
                )
            },
        );
        let copied = dir.path().join(&name);
        let diags = stdout_lines(&out);
        let wants: Vec<Want<'_>> = match name.as_str() {
            GATEWAY_SECRETS => vec![Want {
                what: "httpbin-credential's key does not match its certificate",
                file: &copied,
                line: Some(32),
                severity: "error",
                field: Some("spec.servers[0].tls.credentialName"),
                needles: &["httpbin-credential", "does not match"],
            }],
            GATEWAY_SECRETS_VALIDATION => vec![Want {
                what: "invalid-key holds no PEM",
                file: &copied,
                line: Some(25),
                severity: "error",
                field: Some("spec.servers[0].tls.credentialName"),
                needles: &["invalid-key", "PEM"],
            }],
            CONFLICTING_GATEWAYS => vec![Want {
                what: "TCP/HTTP conflict on port 80",
                file: &copied,
                line: None,
                severity: "warning",
                field: None,
                needles: &["port 80"],
            }],
            CONFLICTING_GATEWAYS_MULTIPLE_PORTS => vec![
                Want {
                    what: "Gateway beta repeats port name tcp",
                    file: &copied,
                    line: Some(17),
                    severity: "error",
                    field: Some("spec.servers[1].port.name"),
                    needles: &["Gateway default/beta", "port name", "\"tcp\""],
                },
                Want {
                    what: "Gateway alpha repeats port name http",
                    file: &copied,
                    line: Some(38),
                    severity: "error",
                    field: Some("spec.servers[1].port.name"),
                    needles: &["Gateway default/alpha", "port name", "\"http\""],
                },
            ],
            _ => Vec::new(),
        };
        if !wants.is_empty() {
            seen.push(name.clone());
        }
        for want in &wants {
            f.expect_diag(want, &diags, &name);
        }
    }
    for name in [
        GATEWAY_SECRETS,
        GATEWAY_SECRETS_VALIDATION,
        CONFLICTING_GATEWAYS,
        CONFLICTING_GATEWAYS_MULTIPLE_PORTS,
    ] {
        f.check(seen.iter().any(|s| s == name), || {
            format!("fixture {name} not found in {}", testdata.display())
        });
    }

    let all = check(&testdata, &["--certs-dir", certs]);
    f.check(
        all.code == Some(1) && !all.stderr.contains("panicked"),
        || {
            format!(
                "whole istio-testdata folder: expected exit 1, no panic\n{}",
                describe_output(&all)
            )
        },
    );
    f.assert_none("istio_testdata_is_reported_never_crashes");
}

// ------------------------------------------------------------------------------------------
// 3. Broken files on a running gateway: reported precisely, last good config keeps serving

const SE_FILE: &str = "10-service-entries.yaml";
const GATEWAY_FILE: &str = "20-gateway.yaml";
const VS_FILE: &str = "30-vs.yaml";
const DUP_FILE: &str = "40-vs-duplicate.yaml";

/// Gateway `web-gateway`: HTTP on port `$number` (line 10) for `web.example.com`.
macro_rules! web_gateway {
    (port: $number:literal) => {
        concat!(
            "apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: web-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: ",
            $number,
            "
      name: http
      protocol: HTTP
    hosts:
    - web.example.com
"
        )
    };
}

/// VirtualService `web` (`name: web` on line 4) for `web.example.com` on `web-gateway`, with the
/// `http:` rules `$http` from line 11 on.
macro_rules! web_vs {
    ($http:literal) => {
        concat!(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: web
spec:
  hosts:
  - web.example.com
  gateways:
  - web-gateway
  http:
",
            $http
        )
    };
}

const GATEWAY_GOOD: &str = web_gateway!(port: "80");

/// Line 10: the port number is out of range.
const GATEWAY_PORT_OUT_OF_RANGE: &str = web_gateway!(port: "70000");

const VS_GOOD: &str = web_vs!(
    "  - match:
    - uri:
        prefix: /
    route:
    - destination:
        host: web.test.internal
        port: {number: 80}
"
);

/// Line 14 is indented by 7 spaces: a YAML syntax error.
const VS_BAD_INDENTATION: &str = web_vs!(
    "  - route:
    - destination:
        host: web.test.internal
       port: {number: 80}
"
);

/// Line 17: a string where the port number belongs.
const VS_PORT_NOT_A_NUMBER: &str = web_vs!(
    "  - match:
    - uri:
        prefix: /
    route:
    - destination:
        host: web.test.internal
        port: {number: eighty}
"
);

/// Line 19: the second destination's weight is negative.
const VS_NEGATIVE_WEIGHT: &str = web_vs!(
    "  - route:
    - destination:
        host: web.test.internal
        port: {number: 80}
      weight: 100
    - destination:
        host: web.test.internal
        port: {number: 80}
      weight: -5
"
);

/// Line 12: the regex does not compile.
const VS_BAD_REGEX: &str = web_vs!(
    "  - match:
    - uri: {regex: \"/api/(unclosed\"}
    route:
    - destination:
        host: web.test.internal
        port: {number: 80}
"
);

/// Line 5: `metadata.name` of a second VirtualService default/web (routing elsewhere).
const VS_DUPLICATE: &str = concat!(
    "# Same kind, namespace and name as 30-vs.yaml: a duplicate, to be ignored.\n",
    web_vs!(
        "  - route:
    - destination:
        host: other.test.internal
        port: {number: 80}
"
    )
);

/// Line of `name: web` in [`VS_GOOD`].
const VS_GOOD_NAME_LINE: u32 = 4;

struct BrokenCase {
    name: &'static str,
    /// The file written (replacing the good one, or added).
    file: &'static str,
    contents: &'static str,
    line: u32,
    /// Text on that line, to self-check the count.
    marker: &'static str,
    field: Option<&'static str>,
    needles: &'static [&'static str],
    /// The good contents to put back, or `None` to remove the file.
    restore: Option<&'static str>,
}

const CASES: &[BrokenCase] = &[
    BrokenCase {
        name: "bad indentation (YAML syntax error)",
        file: VS_FILE,
        contents: VS_BAD_INDENTATION,
        line: 14,
        marker: "       port: {number: 80}",
        field: None,
        needles: &["YAML"],
        restore: Some(VS_GOOD),
    },
    BrokenCase {
        name: "string where the destination port number belongs",
        file: VS_FILE,
        contents: VS_PORT_NOT_A_NUMBER,
        line: 17,
        marker: "number: eighty",
        field: Some("spec.http[0].route[0].destination.port.number"),
        needles: &["VirtualService default/web"],
        restore: Some(VS_GOOD),
    },
    BrokenCase {
        name: "Gateway port out of range",
        file: GATEWAY_FILE,
        contents: GATEWAY_PORT_OUT_OF_RANGE,
        line: 10,
        marker: "number: 70000",
        field: Some("spec.servers[0].port.number"),
        needles: &["Gateway default/web-gateway", "70000"],
        restore: Some(GATEWAY_GOOD),
    },
    BrokenCase {
        name: "negative weight",
        file: VS_FILE,
        contents: VS_NEGATIVE_WEIGHT,
        line: 19,
        marker: "weight: -5",
        field: Some("spec.http[0].route[1].weight"),
        needles: &["VirtualService default/web", "-5"],
        restore: Some(VS_GOOD),
    },
    BrokenCase {
        name: "regex that does not compile",
        file: VS_FILE,
        contents: VS_BAD_REGEX,
        line: 12,
        marker: "/api/(unclosed",
        field: Some("spec.http[0].match[0].uri.regex"),
        needles: &["VirtualService default/web", "compile"],
        restore: Some(VS_GOOD),
    },
    BrokenCase {
        name: "duplicate VirtualService default/web in a later file",
        file: DUP_FILE,
        contents: VS_DUPLICATE,
        line: 5,
        marker: "name: web",
        field: Some("metadata.name"),
        needles: &["VirtualService default/web", "duplicate"],
        restore: None,
    },
];

/// Writes the good configuration (ServiceEntries `entries`, Gateway, VirtualService) into `dir`.
fn write_good(dir: &ConfigDir, entries: &str) {
    dir.write(SE_FILE, entries);
    dir.write(GATEWAY_FILE, GATEWAY_GOOD);
    dir.write(VS_FILE, VS_GOOD);
}

fn service_entries(web: &EchoBackend, other: &EchoBackend) -> String {
    let no_labels: &[(&str, &str)] = &[];
    format!(
        "{}---\n{}",
        service_entry("web", "web.test.internal", 80, &[(web.addr, no_labels)]),
        service_entry(
            "other",
            "other.test.internal",
            80,
            &[(other.addr, no_labels)]
        ),
    )
}

fn dump_file<'a>(dump: &'a Value, path: &Path) -> Option<&'a Value> {
    let path = path.display().to_string();
    dump["files"]
        .as_array()?
        .iter()
        .find(|f| f["path"].as_str() == Some(path.as_str()))
}

/// Polls `/config_dump` (bounded) until `cond` holds; returns the last dump either way.
fn dump_when(gw: &Gateway, cond: impl Fn(&Value) -> bool) -> Value {
    let mut last = gw.config_dump();
    let _ = poll(Duration::from_secs(5), || {
        last = gw.config_dump();
        cond(&last).then_some(())
    });
    last
}

/// GET `/` with Host `web.example.com`: `Ok` when the `web` backend answered 200.
fn serves_web(client: &HttpClient, addr: SocketAddr) -> Result<(), String> {
    let resp = client.get(addr, "web.example.com", "/", &[])?;
    if resp.status != 200 {
        return Err(format!("status {} (body {})", resp.status, resp.body));
    }
    let service = serde_json::from_str::<Value>(&resp.body)
        .ok()
        .and_then(|v| v["service"].as_str().map(str::to_string));
    if service.as_deref() != Some("web") {
        return Err(format!(
            "answered by {service:?}, not the web backend: {}",
            resp.body
        ));
    }
    Ok(())
}

#[test]
fn malformed_yaml_is_reported_with_file_line_and_field_and_last_good_config_keeps_serving() {
    for case in CASES {
        assert!(
            line_at(case.contents, case.line).contains(case.marker),
            "test bug: line {} of case {:?} should contain {:?}",
            case.line,
            case.name,
            case.marker
        );
    }
    assert!(line_at(VS_GOOD, VS_GOOD_NAME_LINE).contains("name: web"));

    let web = EchoBackend::start("web", "v1");
    let other = EchoBackend::start("other", "v1");
    let entries = service_entries(&web, &other);
    let dir = ConfigDir::new();
    write_good(&dir, &entries);
    let gw = Gateway::start(dir.path(), &["--port-map", "80=0"]);
    let addr = gw.listener(80);
    let client = HttpClient::fresh_connections();

    if let Err(e) = serves_web(&client, addr) {
        gw.fail(format!(
            "the good configuration does not serve web.example.com: {e}"
        ));
    }
    let dump = gw.config_dump();
    let bad = not_ok_files(&dump);
    if !bad.is_empty() {
        gw.fail(format!(
            "the good configuration has files that are not ok: {bad:?}\n{dump:#}"
        ));
    }

    let mut f = Failures::default();
    let vs_path = dir.path().join(VS_FILE);
    for case in CASES {
        let path = dir.path().join(case.file);
        let context = format!("gateway, {}", case.name);

        // Break the file.
        let before = gw.generation();
        dir.write(case.file, case.contents);
        gw.wait_generation(before + 1);
        let file_prefix = format!("{}:", path.display());
        let dump = dump_when(&gw, |d| {
            diagnostics(d)
                .iter()
                .any(|l| l.starts_with(&file_prefix) && l.contains(" error: "))
        });
        let diags = diagnostics(&dump);
        let want = Want {
            what: case.name,
            file: &path,
            line: Some(case.line),
            severity: "error",
            field: case.field,
            needles: case.needles,
        };
        f.expect_diag(&want, &diags, &context);
        if case.file == DUP_FILE {
            let earlier = format!("already defined at {}:", vs_path.display());
            let earlier_at = format!("{earlier}{VS_GOOD_NAME_LINE};");
            let dup: Vec<&String> = diags.iter().filter(|d| d.contains(&earlier)).collect();
            f.check(!dup.is_empty(), || {
                format!(
                    "[{context}] the duplicate does not name the earlier file {}: {diags:#?}",
                    vs_path.display()
                )
            });
            f.check_line(
                dup.is_empty() || dup.iter().any(|d| d.contains(&earlier_at)),
                || format!("[{context}] the duplicate should say `{earlier_at}`, got: {dup:#?}"),
            );
        }
        let report = dump_file(&dump, &path);
        let file_failed = report.is_some_and(|r| {
            r["ok"] == Value::Bool(false) && r["errors"].as_u64().unwrap_or(0) >= 1
        });
        f.check(file_failed, || {
            format!(
                "[{context}] files[] should show {} with ok: false and errors >= 1, got {report:?}",
                path.display()
            )
        });
        f.check(gw.listener(80) == addr, || {
            format!("[{context}] the port 80 listener moved away from {addr}")
        });
        if let Err(e) = serves_web(&client, addr) {
            f.check(false, || {
                format!("[{context}] the last good config should keep serving: {e}")
            });
        }

        // The same broken file through `tollgate check`.
        let cdir = ConfigDir::new();
        write_good(&cdir, &entries);
        // Replaces the good VirtualService or Gateway, or adds the duplicate.
        cdir.write(case.file, case.contents);
        let out = check(cdir.path(), &[]);
        let cpath = cdir.path().join(case.file);
        let ccontext = format!("check, {}", case.name);
        f.check(out.code == Some(1), || {
            format!(
                "[{ccontext}] expected exit code 1\n{}",
                describe_output(&out)
            )
        });
        let cwant = Want {
            file: &cpath,
            ..want
        };
        f.expect_diag(&cwant, &stdout_lines(&out), &ccontext);

        // Put the good file back: everything is ok again.
        let before = gw.generation();
        match case.restore {
            Some(good) => dir.write(case.file, good),
            None => dir.remove(case.file),
        }
        gw.wait_generation(before + 1);
        let dump = dump_when(&gw, |d| not_ok_files(d).is_empty());
        let bad = not_ok_files(&dump);
        f.check(bad.is_empty(), || {
            format!("[{context}] after restoring, files still not ok: {bad:?}")
        });
        if let Err(e) = serves_web(&client, gw.listener(80)) {
            f.check(false, || format!("[{context}] after restoring: {e}"));
        }
    }

    let dump = gw.config_dump();
    let bad = not_ok_files(&dump);
    f.check(bad.is_empty(), || {
        format!("[final] files not ok after all cases: {bad:?}")
    });
    let errors: Vec<String> = diagnostics(&dump)
        .into_iter()
        .filter(|d| d.contains(" error: "))
        .collect();
    f.check(errors.is_empty(), || {
        format!("[final] errors remain: {errors:#?}")
    });
    f.assert_none(
        "malformed_yaml_is_reported_with_file_line_and_field_and_last_good_config_keeps_serving",
    );
}

// ------------------------------------------------------------------------------------------
// 4. Unknown fields

/// Runs `tollgate check` on a config dir holding only `contents` as `name`, and checks that it
/// exits 0 (else fails with `exit_msg`) and reports no error. Returns the file's path, the
/// output's lines and the failures so far.
fn check_without_errors(
    name: &str,
    contents: &str,
    exit_msg: &str,
) -> (PathBuf, Vec<String>, Failures) {
    let dir = ConfigDir::new();
    dir.write(name, contents);
    let path = dir.path().join(name);
    let out = check(dir.path(), &[]);
    let mut f = Failures::default();
    f.check(out.code == Some(0), || {
        format!("{exit_msg}\n{}", describe_output(&out))
    });
    f.check(!out.stdout.contains(" error: "), || {
        format!("no errors expected\n{}", describe_output(&out))
    });
    (path, stdout_lines(&out), f)
}

/// `gateway:` (line 8) and `htpp:` (line 10) are typos; the `http:` at line 14 keeps it valid.
const VS_TYPOS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: typos
spec:
  hosts:
  - typos.example.com
  gateway:
  - web-gateway
  htpp:
  - route:
    - destination:
        host: web.test.internal
  http:
  - route:
    - destination:
        host: web.test.internal
";

#[test]
fn unknown_fields_warn_with_a_suggestion() {
    assert!(line_at(VS_TYPOS, 8).starts_with("  gateway:"));
    assert!(line_at(VS_TYPOS, 10).starts_with("  htpp:"));
    let (path, diags, mut f) =
        check_without_errors("vs.yaml", VS_TYPOS, "warnings only: expected exit code 0");
    let wants = [
        Want {
            what: "`gateway` suggests `gateways`",
            file: &path,
            line: Some(8),
            severity: "warning",
            field: Some("spec.gateway"),
            needles: &["did you mean `gateways`"],
        },
        Want {
            what: "`htpp` suggests `http`",
            file: &path,
            line: Some(10),
            severity: "warning",
            field: Some("spec.htpp"),
            needles: &["`http`"],
        },
    ];
    for want in &wants {
        f.expect_diag(want, &diags, "check");
    }
    f.assert_none("unknown_fields_warn_with_a_suggestion");
}

// ------------------------------------------------------------------------------------------
// 5. Kinds tollgate does not serve

/// `kind:` lines: Deployment 2, AuthorizationPolicy 9, Gateway API Gateway 15.
const SKIPPED_KINDS: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-all
spec: {}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: web
spec:
  gatewayClassName: istio
  listeners:
  - name: http
    port: 80
    protocol: HTTP
";

#[test]
fn skipped_kinds_are_reported() {
    assert!(line_at(SKIPPED_KINDS, 2).contains("Deployment"));
    assert!(line_at(SKIPPED_KINDS, 9).contains("AuthorizationPolicy"));
    assert!(line_at(SKIPPED_KINDS, 15).contains("Gateway"));
    let (path, diags, mut f) =
        check_without_errors("skipped.yaml", SKIPPED_KINDS, "expected exit code 0");
    let wants = [
        Want {
            what: "Deployment is skipped (info)",
            file: &path,
            line: Some(2),
            severity: "info",
            field: None,
            needles: &["Deployment"],
        },
        Want {
            what: "AuthorizationPolicy is NOT enforced",
            file: &path,
            line: Some(9),
            severity: "warning",
            field: None,
            needles: &["AuthorizationPolicy", "NOT enforced"],
        },
        Want {
            what: "Gateway API Gateway is skipped",
            file: &path,
            line: Some(15),
            severity: "warning",
            field: None,
            needles: &["Kubernetes Gateway API", "skipped"],
        },
    ];
    for want in &wants {
        f.expect_diag(want, &diags, "check");
    }
    f.assert_none("skipped_kinds_are_reported");
}
