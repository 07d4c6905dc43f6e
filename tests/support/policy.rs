//! Building blocks of the route- and destination-policy tests (`traffic_policy.rs`,
//! `destination_rule.rs`): the shared Istio fixtures, YAML builders for the `edge` Gateway, its
//! VirtualServices and port-80 ServiceEntries, config-dump readers, and [`World`], a gateway
//! started on a config dir with its echo backends.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{poll, service_entry, yaml_str, ConfigDir, EchoBackend, Gateway, HttpClient, Response};

/// Gateway `edge`: plain HTTP on port 80 for every `*.example.com` host.
pub const EDGE_GATEWAY: &str = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [\"*.example.com\"]
";

/// Text of `../shared/fixtures/<rel>`; fails with a clear message when it is missing.
pub fn fixture(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the shared Istio fixture {} is missing ({e}); these tests need ../shared/fixtures \
             relative to CARGO_MANIFEST_DIR",
            path.display()
        )
    })
}

/// `text` with each `(from, to)` replaced; every `from` must occur exactly once.
pub fn adapt(what: &str, text: &str, edits: &[(&str, &str)]) -> String {
    let mut out = text.to_string();
    for (from, to) in edits {
        let n = out.matches(from).count();
        assert_eq!(
            n, 1,
            "test bug: {from:?} occurs {n} times in {what}:\n{out}"
        );
        out = out.replacen(from, to, 1);
    }
    out
}

/// An endpoint of [`service_entry_80`]: its address and labels.
pub type Endpoint<'a> = (SocketAddr, Vec<(&'a str, &'a str)>);

/// The endpoint of an echo backend, labelled `version: <backend version>`.
pub fn echo_endpoint(backend: &EchoBackend) -> Endpoint<'_> {
    (backend.addr, vec![("version", backend.version.as_str())])
}

/// A STATIC ServiceEntry `name` for `host`, port 80, one endpoint per `(address, labels)`.
pub fn service_entry_80(name: &str, host: &str, endpoints: &[Endpoint<'_>]) -> String {
    let list: Vec<(SocketAddr, &[(&str, &str)])> =
        endpoints.iter().map(|(addr, l)| (*addr, &l[..])).collect();
    service_entry(name, host, 80, &list)
}

/// A VirtualService `name` for `host` bound to Gateway `edge`, with the given `http:` rules
/// (lines indented by two spaces, starting with `  - `).
pub fn vs(name: &str, host: &str, http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\n\
         spec:\n  hosts: [{}]\n  gateways: [edge]\n  http:\n{http}",
        yaml_str(host)
    )
}

/// One `http:` rule routing everything to `dest`, with extra route fields `policy` (YAML lines
/// indented by four spaces, e.g. `    timeout: 1s\n`).
pub fn rule(dest: &str, policy: &str) -> String {
    format!("  - route: [{{destination: {{host: {dest}}}}}]\n{policy}")
}

/// A VirtualService `name` for `host` sending everything to `dest`.
pub fn vs_to(name: &str, host: &str, dest: &str) -> String {
    vs(name, host, &rule(dest, ""))
}

/// At most the first 300 bytes of `body`, for failure messages.
pub fn short(body: &str) -> &str {
    &body[..body.len().min(300)]
}

/// `diagnostics[]` of a config dump.
pub fn diagnostics(dump: &Value) -> Vec<String> {
    dump["diagnostics"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The entries of `files[]` in a config dump that are not `ok: true`, as JSON text.
pub fn not_ok_files(dump: &Value) -> Vec<String> {
    dump["files"]
        .as_array()
        .map(|files| {
            files
                .iter()
                .filter(|f| f["ok"] != Value::Bool(true))
                .map(|f| f.to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// `files[].ok` of `path` in a config dump.
pub fn file_ok(dump: &Value, path: &Path) -> Option<Value> {
    dump["files"].as_array().and_then(|files| {
        files
            .iter()
            .find(|f| f["path"].as_str() == Some(&path.display().to_string()))
            .map(|f| f["ok"].clone())
    })
}

/// Asserts that line `line` (1-based) of the test case `name`'s `contents` contains `marker`, so
/// that a case's expected line number cannot silently drift from its YAML.
pub fn assert_marker_line(name: &str, contents: &str, line: usize, marker: &str) {
    let text = contents.lines().nth(line - 1).unwrap_or_default();
    assert!(
        text.contains(marker),
        "test bug: line {line} of {name:?} is {text:?}"
    );
}

/// A config file under test on a running [`World`], for [`World::check_rejected`].
pub struct UnderTest<'a> {
    /// Its name in the config dir.
    pub file: &'a str,
    /// Its good contents, written back after each rejected version.
    pub good: &'a str,
    /// What the good contents are called in messages (`rule`, `policy`).
    pub what: &'a str,
    /// `Ok` while the good contents are in force.
    pub in_force: fn(&World) -> Result<(), String>,
}

/// A running gateway on a config dir, with its port-80 listener and the echo backends.
pub struct World {
    pub gw: Gateway,
    pub addr: SocketAddr,
    pub client: HttpClient,
    pub backends: Vec<EchoBackend>,
    pub config: ConfigDir,
}

impl World {
    /// Writes `files`, starts the gateway (`--port-map 80=0` plus `args`) and checks that every
    /// file loaded without errors.
    pub fn start(args: &[&str], backends: Vec<EchoBackend>, files: &[(&str, String)]) -> World {
        let config = ConfigDir::new();
        for (name, text) in files {
            config.write(name, text);
        }
        let mut all_args = vec!["--port-map", "80=0"];
        all_args.extend_from_slice(args);
        let gw = Gateway::start(config.path(), &all_args);
        let addr = gw.listener(80);
        let dump = gw.config_dump();
        let bad = not_ok_files(&dump);
        let errors: Vec<String> = diagnostics(&dump)
            .into_iter()
            .filter(|l| l.contains(" error: "))
            .collect();
        if !bad.is_empty() || !errors.is_empty() {
            gw.fail(format!(
                "test configuration did not load cleanly: files not ok {bad:#?}, errors {errors:#?}"
            ));
        }
        World {
            gw,
            addr,
            client: HttpClient::new(),
            backends,
            config,
        }
    }

    /// A gateway (`--port-map 80=0` plus `args`) routing `host` on port 80 to one echo backend
    /// `service/v1`, through the ServiceEntry `se_host`.
    pub fn one_echo(service: &str, host: &str, se_host: &str, args: &[&str]) -> World {
        let backend = EchoBackend::start(service, "v1");
        let files = [
            ("gateway.yaml", EDGE_GATEWAY.to_string()),
            (
                "se.yaml",
                service_entry_80("backend", se_host, &[echo_endpoint(&backend)]),
            ),
            ("vs.yaml", vs_to(service, host, se_host)),
        ];
        World::start(args, vec![backend], &files)
    }

    /// The echo backend `service/version`; a test bug when there is none.
    pub fn backend(&self, service: &str, version: &str) -> &EchoBackend {
        self.backends
            .iter()
            .find(|b| b.service == service && b.version == version)
            .unwrap_or_else(|| panic!("test bug: no backend {service}/{version}"))
    }

    /// Requests received so far by the echo backend `service/v1`.
    pub fn received(&self, service: &str) -> u64 {
        self.backend(service, "v1").received()
    }

    /// GET through the gateway; any transport error fails the test (with the gateway's stderr).
    pub fn get(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        self.get_with(&self.client, host, path, headers)
    }

    /// [`World::get`] on another client.
    pub fn get_with(
        &self,
        client: &HttpClient,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        self.request_with(client, "GET", host, path, headers, b"")
    }

    /// A request with `method` and `body` through the gateway; any transport error fails the test.
    pub fn request(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.request_with(&self.client, method, host, path, headers, body)
    }

    /// [`World::request`] on another client.
    pub fn request_with(
        &self,
        client: &HttpClient,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        client
            .request(method, self.addr, host, path, headers, body)
            .unwrap_or_else(|e| self.gw.fail(e))
    }

    /// GET with a client timeout of `timeout`; returns the response and how long it took.
    pub fn timed_get(
        &self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> (Response, Duration) {
        let start = Instant::now();
        let r = self.get_with(&self.client.with_timeout(timeout), host, path, headers);
        (r, start.elapsed())
    }

    /// Writes `contents` to `file` in the config dir and waits for the gateway's next
    /// configuration generation.
    pub fn rewrite(&self, file: &str, contents: &str) {
        let before = self.gw.generation();
        self.config.write(file, contents);
        self.gw.wait_generation(before + 1);
    }

    /// Polls `/config_dump` (for at most 5 s) until `cond` holds for its diagnostics; returns the
    /// last dump either way.
    pub fn dump_when(&self, cond: impl Fn(&[String]) -> bool) -> Value {
        let mut dump = self.gw.config_dump();
        let _ = poll(Duration::from_secs(5), || {
            dump = self.gw.config_dump();
            cond(&diagnostics(&dump)).then_some(())
        });
        dump
    }

    /// Fails the test unless the good contents of `t` are in force.
    pub fn assert_in_force(&self, t: &UnderTest<'_>) {
        if let Err(e) = (t.in_force)(self) {
            self.gw
                .fail(format!("the good {} is not in force: {e}", t.what));
        }
    }

    /// Writes the invalid `contents` (case `name`) over `t.file` and returns what went wrong, each
    /// line starting with `[gateway, <name>]`: no diagnostic for which `reported` holds (`expected`
    /// describes it), the file not shown with `ok: false`, the last good contents not in force,
    /// and not in force again once `t.good` is written back.
    pub fn check_rejected(
        &self,
        t: &UnderTest<'_>,
        name: &str,
        contents: &str,
        reported: impl Fn(&[String]) -> bool,
        expected: &str,
    ) -> Vec<String> {
        let path = self.config.path().join(t.file);
        let mut failures = Vec::new();
        self.rewrite(t.file, contents);
        let dump = self.dump_when(&reported);
        let diags = diagnostics(&dump);
        if !reported(&diags) {
            failures.push(format!(
                "[gateway, {name}] no {expected}; diagnostics:\n  {}",
                diags.join("\n  ")
            ));
        }
        let ok = file_ok(&dump, &path);
        if ok != Some(Value::Bool(false)) {
            failures.push(format!(
                "[gateway, {name}] files[] should show {} with ok: false, got {ok:?}",
                path.display()
            ));
        }
        if let Err(e) = (t.in_force)(self) {
            failures.push(format!(
                "[gateway, {name}] the last good {} should stay in force: {e}",
                t.what
            ));
        }
        self.rewrite(t.file, t.good);
        if let Err(e) = (t.in_force)(self) {
            failures.push(format!("[gateway, {name}] after restoring: {e}"));
        }
        failures
    }
}

/// A gateway with one SIMPLE HTTPS server for `tls_host`, on Gateway port 443 mapped to a free
/// port, with a self-signed certificate made here, routing to a fresh echo backend `service`
/// behind the ServiceEntry host `se_host`; `args` are added to the gateway's flags.
pub struct TlsEchoWorld {
    pub gw: Gateway,
    pub backend: EchoBackend,
    pub addr: SocketAddr,
    /// The self-signed certificate, for `--cacert`.
    pub ca: String,
    _config: ConfigDir,
    _certs: tempfile::TempDir,
}

impl TlsEchoWorld {
    pub fn start(service: &str, tls_host: &str, se_host: &str, args: &[&str]) -> TlsEchoWorld {
        let certs = tempfile::tempdir().expect("temp certs dir");
        let credential = format!("{service}-cert");
        let (crt, _) = super::self_signed(certs.path(), &credential, tls_host);
        let backend = EchoBackend::start(service, "v1");
        let config = ConfigDir::new();
        config.write(
            "se.yaml",
            &service_entry(service, se_host, 80, &[(backend.addr, &[])]),
        );
        let tls = format!("{{mode: SIMPLE, credentialName: {credential}}}");
        let hosts = format!("[{tls_host}]");
        config.write(
            "gw.yaml",
            &super::https_gateway(service, &hosts, &tls, &hosts, se_host),
        );
        let certs_dir = certs.path().display().to_string();
        let mut all_args = vec!["--certs-dir", &certs_dir, "--port-map", "443=0"];
        all_args.extend_from_slice(args);
        let gw = Gateway::start(config.path(), &all_args);
        let addr = gw.listener(443);
        TlsEchoWorld {
            gw,
            backend,
            addr,
            ca: crt.display().to_string(),
            _config: config,
            _certs: certs,
        }
    }
}
