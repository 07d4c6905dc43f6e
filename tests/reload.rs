//! Hot reload on loopback: configuration changes (file rewrites, new and deleted files,
//! Kubernetes ConfigMap-style atomic swaps, new and removed Gateway ports, broken YAML) apply
//! to a running gateway without a restart and without a single failed request.

mod support;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::*;

/// Bounds of every client loop.
const LOOP_MAX_TIME: Duration = Duration::from_secs(60);
/// Keep-alive loops are cheap; fresh-connection loops also spend an ephemeral port per request.
const KEEP_ALIVE_MAX_REQUESTS: u64 = 200_000;
const FRESH_MAX_REQUESTS: u64 = 20_000;
/// How long to wait for a reload's effect once its generation is visible.
const EFFECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Phases of a loop: requests are counted per phase (set by the test thread).
const MAX_PHASES: usize = 8;
const FIRST_FAILURES: usize = 10;

// ---------------------------------------------------------------------------------------------
// YAML

fn backends_yaml(a: &EchoBackend, b: &EchoBackend) -> String {
    format!(
        "{}---\n{}",
        service_entry(
            "a",
            "a.test.internal",
            80,
            &[(a.addr, &[("version", "v1")])]
        ),
        service_entry(
            "b",
            "b.test.internal",
            80,
            &[(b.addr, &[("version", "v2")])]
        ),
    )
}

fn gateway_yaml(name: &str, port: u16, hosts: &[&str]) -> String {
    let hosts: String = hosts
        .iter()
        .map(|h| format!("    - {}\n", yaml_str(h)))
        .collect();
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: {name}\nspec:\n  \
         selector:\n    istio: ingressgateway\n  servers:\n  - port:\n      number: {port}\n      \
         name: http-{port}\n      protocol: HTTP\n    hosts:\n{hosts}"
    )
}

/// A VirtualService `name` sending every request for `host` on `gateway` to `dest`:80.
fn vs_yaml(name: &str, host: &str, gateway: &str, dest: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\nspec:\n  \
         hosts:\n  - {}\n  gateways:\n  - {gateway}\n  http:\n  - route:\n    - destination:\n        \
         host: {dest}\n        port:\n          number: 80\n",
        yaml_str(host)
    )
}

/// VirtualService `shop` sending every request for `shop.example.com` on `shop-gateway` to
/// `dest`:80.
fn shop_vs(dest: &str) -> String {
    vs_yaml("shop", "shop.example.com", "shop-gateway", dest)
}

/// Writes the ServiceEntries `backends` (`backends.yaml`), Gateway `shop-gateway` on port 80 for
/// `hosts` (`gateway.yaml`) and the `shop` VirtualService to `a.test.internal` (`vs-shop.yaml`).
fn write_shop(config: &ConfigDir, backends: &str, hosts: &[&str]) {
    config.write("backends.yaml", backends);
    config.write("gateway.yaml", &gateway_yaml("shop-gateway", 80, hosts));
    config.write("vs-shop.yaml", &shop_vs("a.test.internal"));
}

// ---------------------------------------------------------------------------------------------
// Client loops

/// A background thread sending `GET /` with one Host as fast as it can, until stopped or
/// bounded out, recording every error and every non-200 answer (and, with `expect_service`,
/// every 200 from another service).
struct LoadLoop {
    name: String,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    handle: Option<JoinHandle<LoopReport>>,
}

#[derive(Debug)]
struct LoopReport {
    name: String,
    requests: u64,
    per_phase: Vec<u64>,
    failures: u64,
    first_failures: Vec<String>,
    /// Ended by its own bounds rather than by `stop`.
    bounded_out: bool,
    elapsed: Duration,
}

impl LoadLoop {
    fn start(
        name: &str,
        client: HttpClient,
        addr: SocketAddr,
        host: &str,
        expect_service: Option<&str>,
        max_requests: u64,
        phase: Arc<AtomicUsize>,
    ) -> LoadLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let (t_stop, t_requests) = (stop.clone(), requests.clone());
        let (t_name, host) = (name.to_string(), host.to_string());
        let expect_service = expect_service.map(str::to_string);
        let handle = std::thread::Builder::new()
            .name(format!("load-{name}"))
            .spawn(move || {
                let started = Instant::now();
                let deadline = started + LOOP_MAX_TIME;
                let mut report = LoopReport {
                    name: t_name,
                    requests: 0,
                    per_phase: vec![0; MAX_PHASES],
                    failures: 0,
                    first_failures: Vec::new(),
                    bounded_out: false,
                    elapsed: Duration::ZERO,
                };
                while !t_stop.load(Ordering::SeqCst) {
                    if report.requests >= max_requests || Instant::now() >= deadline {
                        report.bounded_out = true;
                        break;
                    }
                    let ph = phase.load(Ordering::SeqCst).min(MAX_PHASES - 1);
                    let failure = match client.get(addr, &host, "/", &[]) {
                        Ok(r) if r.status == 200 => expect_service.as_deref().and_then(|want| {
                            let got = service_of(&r);
                            (got != want)
                                .then(|| format!("200 from service {got:?}, want {want:?}"))
                        }),
                        Ok(r) => Some(format!(
                            "status {} (server: {:?}) body {:?}",
                            r.status,
                            r.header("server"),
                            r.body
                        )),
                        Err(e) => Some(e),
                    };
                    if let Some(f) = failure {
                        report.failures += 1;
                        if report.first_failures.len() < FIRST_FAILURES {
                            report.first_failures.push(format!(
                                "request #{} (phase {ph}, t={:?}): {f}",
                                report.requests,
                                started.elapsed()
                            ));
                        }
                    }
                    report.requests += 1;
                    report.per_phase[ph] += 1;
                    t_requests.store(report.requests, Ordering::SeqCst);
                }
                report.elapsed = started.elapsed();
                report
            })
            .expect("spawn load loop");
        LoadLoop {
            name: name.to_string(),
            stop,
            requests,
            handle: Some(handle),
        }
    }

    /// [`LoadLoop::start`] on a fresh keep-alive client, bounded by [`KEEP_ALIVE_MAX_REQUESTS`].
    fn keep_alive(
        name: &str,
        addr: SocketAddr,
        host: &str,
        expect_service: Option<&str>,
        phase: Arc<AtomicUsize>,
    ) -> LoadLoop {
        LoadLoop::start(
            name,
            HttpClient::new(),
            addr,
            host,
            expect_service,
            KEEP_ALIVE_MAX_REQUESTS,
            phase,
        )
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Signals the loop and joins it (bounded: the loop checks the flag between requests,
    /// and each request times out after 5 s).
    fn finish(mut self) -> LoopReport {
        self.stop.store(true, Ordering::SeqCst);
        let handle = self.handle.take().expect("loop joined once");
        handle
            .join()
            .unwrap_or_else(|_| panic!("load loop {} panicked", self.name))
    }
}

impl Drop for LoadLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// Waits (bounded) until every loop has sent at least `n` requests, so that what follows
/// happens under load.
fn wait_for_traffic(gw: &Gateway, loops: &[&LoadLoop], n: u64) {
    gw.wait_until(
        &format!("every client loop has sent {n} requests"),
        Duration::from_secs(15),
        || loops.iter().all(|l| l.requests() >= n),
    );
}

/// Waits (bounded) until every loop has sent `more` requests beyond its current count, and at
/// least `total` in all.
fn wait_for_more_traffic(gw: &Gateway, loops: &[&LoadLoop], more: u64, total: u64) {
    let targets: Vec<u64> = loops
        .iter()
        .map(|l| (l.requests() + more).max(total))
        .collect();
    gw.wait_until(
        &format!("every client loop sends {more} more requests (and {total} in all)"),
        Duration::from_secs(20),
        || loops.iter().zip(&targets).all(|(l, t)| l.requests() >= *t),
    );
}

/// Stops the loops and asserts zero failures, at least `min_requests` each, that none ran out
/// of its bounds before being stopped, and that each was sending during phases `1..phases`.
fn finish_loops(loops: Vec<LoadLoop>, min_requests: u64, phases: usize) -> Vec<LoopReport> {
    let reports: Vec<LoopReport> = loops.into_iter().map(LoadLoop::finish).collect();
    for r in &reports {
        let rate = r.requests as f64 / r.elapsed.as_secs_f64().max(1e-3);
        eprintln!(
            "loop {}: {} requests in {:?} ({rate:.0}/s), per phase {:?}, {} failed",
            r.name,
            r.requests,
            r.elapsed,
            &r.per_phase[..phases],
            r.failures
        );
        for f in &r.first_failures {
            eprintln!("  loop {} failure: {f}", r.name);
        }
    }
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| r.failures > 0)
        .map(|r| {
            format!(
                "{}: {} of {} requests failed; first: {:#?}",
                r.name, r.failures, r.requests, r.first_failures
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "requests failed during reloads:\n{}",
        failed.join("\n")
    );
    for r in &reports {
        assert!(
            r.requests >= min_requests,
            "loop {} made only {} requests (want >= {min_requests})",
            r.name,
            r.requests
        );
        assert!(
            !r.bounded_out,
            "loop {} hit its own bounds ({} requests, {:?}) before the test stopped it, \
             so later changes were not under load",
            r.name, r.requests, r.elapsed
        );
        for (phase, count) in r.per_phase.iter().enumerate().take(phases).skip(1) {
            assert!(
                *count > 0,
                "loop {} sent no request during phase {phase}: {:?}",
                r.name,
                r.per_phase
            );
        }
    }
    reports
}

// ---------------------------------------------------------------------------------------------
// Probes

fn service_of(r: &Response) -> String {
    r.json()["service"].as_str().unwrap_or_default().to_string()
}

fn version_of(r: &Response) -> String {
    r.json()["version"].as_str().unwrap_or_default().to_string()
}

/// `(status, version)` of one request, `None` on a transport error.
fn probe(client: &HttpClient, addr: SocketAddr, host: &str) -> Option<(u16, String)> {
    let r = client.get(addr, host, "/", &[]).ok()?;
    let version = if r.status == 200 {
        version_of(&r)
    } else {
        String::new()
    };
    Some((r.status, version))
}

/// Polls (bounded) until `host` answers 200 from `version`, then checks that the next
/// `confirm` requests all do too (routing switches atomically with the snapshot).
fn wait_version(
    gw: &Gateway,
    client: &HttpClient,
    addr: SocketAddr,
    host: &str,
    version: &str,
    confirm: usize,
) {
    let want = Some((200, version.to_string()));
    let mut last = None;
    gw.wait_until(
        &format!("{host} via {addr} answers 200 from {version}"),
        EFFECT_TIMEOUT,
        || {
            last = probe(client, addr, host);
            last == want
        },
    );
    for i in 0..confirm {
        let got = probe(client, addr, host);
        assert_eq!(
            got, want,
            "{host}: request {i} after the switch to {version} (first seen) answered {got:?}"
        );
    }
}

/// Polls (bounded) until `host` answers `status`, then checks the next `confirm` do too.
fn wait_status(
    gw: &Gateway,
    client: &HttpClient,
    addr: SocketAddr,
    host: &str,
    status: u16,
    confirm: usize,
) {
    gw.wait_until(
        &format!("{host} via {addr} answers {status}"),
        EFFECT_TIMEOUT,
        || probe(client, addr, host).is_some_and(|(s, _)| s == status),
    );
    for i in 0..confirm {
        let got = probe(client, addr, host).map(|(s, _)| s);
        assert_eq!(
            got,
            Some(status),
            "{host}: request {i} after it first answered {status}"
        );
    }
}

/// Writes happen in the test thread, then the next generation is awaited.
fn change(gw: &Gateway, what: &str, apply: impl FnOnce()) -> u64 {
    let before = gw.generation();
    apply();
    let after = gw.wait_generation(before + 1);
    eprintln!("{what}: generation {before} -> {after}");
    after
}

/// The `/config_dump` `files[]` entry whose path ends with `/<name>`.
fn file_report(gw: &Gateway, name: &str) -> serde_json::Value {
    let dump = gw.config_dump();
    let suffix = format!("/{name}");
    dump["files"]
        .as_array()
        .and_then(|files| {
            files
                .iter()
                .find(|f| f["path"].as_str().is_some_and(|p| p.ends_with(&suffix)))
                .cloned()
        })
        .unwrap_or_else(|| gw.fail(format!("/config_dump files[] has no {name}: {dump:#}")))
}

/// Generations logged by "configuration applied" lines, in order (empty if the log format
/// has none).
fn logged_generations(gw: &Gateway) -> Vec<u64> {
    gw.stderr()
        .lines()
        .filter(|l| l.contains("configuration applied"))
        .filter_map(|l| {
            let rest = &l[l.find("generation=")? + "generation=".len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

fn listener_ports(gw: &Gateway) -> Vec<u64> {
    let dump = gw.config_dump();
    dump["listeners"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .filter_map(|l| l["gateway_port"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn config_changes_apply_with_zero_failed_requests() {
    let started = Instant::now();
    let a = EchoBackend::start("a", "v1");
    let b = EchoBackend::start("b", "v2");
    let config = ConfigDir::new();
    // Files managed with `write`/`remove`:
    write_shop(
        &config,
        &backends_yaml(&a, &b),
        &["shop.example.com", "cm.example.com"],
    );
    // A disjoint set of top-level names managed only by `k8s_swap`, like a mounted ConfigMap.
    config.k8s_swap(&[(
        "cm-vs.yaml",
        &vs_yaml("cm", "cm.example.com", "shop-gateway", "b.test.internal"),
    )]);

    let gw = Gateway::start(config.path(), &["--port-map", "80=0"]);
    let addr = gw.listener(80);
    let probe_client = HttpClient::new();
    wait_version(&gw, &probe_client, addr, "shop.example.com", "v1", 5);
    wait_version(&gw, &probe_client, addr, "cm.example.com", "v2", 5);
    wait_status(&gw, &probe_client, addr, "new.example.com", 404, 1);

    let phase = Arc::new(AtomicUsize::new(0));
    let loops = vec![
        LoadLoop::keep_alive(
            "shop-keepalive",
            addr,
            "shop.example.com",
            None,
            phase.clone(),
        ),
        LoadLoop::start(
            "shop-fresh",
            HttpClient::fresh_connections(),
            addr,
            "shop.example.com",
            None,
            FRESH_MAX_REQUESTS,
            phase.clone(),
        ),
        LoadLoop::keep_alive("cm-keepalive", addr, "cm.example.com", None, phase.clone()),
    ];
    wait_for_traffic(&gw, &loops.iter().collect::<Vec<_>>(), 50);

    // (a) Rewrite the VirtualService: shop moves from a (v1) to b (v2).
    phase.store(1, Ordering::SeqCst);
    change(&gw, "(a) shop -> b", || {
        config.write("vs-shop.yaml", &shop_vs("b.test.internal"))
    });
    wait_version(&gw, &probe_client, addr, "shop.example.com", "v2", 20);

    // (b) A new host: the Gateway server gains it and a new VirtualService file routes it.
    phase.store(2, Ordering::SeqCst);
    change(&gw, "(b) add new.example.com", || {
        config.write(
            "gateway.yaml",
            &gateway_yaml(
                "shop-gateway",
                80,
                &["shop.example.com", "cm.example.com", "new.example.com"],
            ),
        );
        config.write(
            "vs-new.yaml",
            &vs_yaml("new", "new.example.com", "shop-gateway", "a.test.internal"),
        );
    });
    wait_version(&gw, &probe_client, addr, "new.example.com", "v1", 20);
    wait_version(&gw, &probe_client, addr, "shop.example.com", "v2", 5);

    // (c) Delete the new VirtualService file: its host has no route any more.
    phase.store(3, Ordering::SeqCst);
    change(&gw, "(c) remove vs-new.yaml", || {
        config.remove("vs-new.yaml")
    });
    wait_status(&gw, &probe_client, addr, "new.example.com", 404, 20);
    wait_version(&gw, &probe_client, addr, "shop.example.com", "v2", 5);

    // (d) ConfigMap-style swap (..data symlink flip, same top-level name): cm moves from b to a.
    phase.store(4, Ordering::SeqCst);
    change(&gw, "(d) k8s_swap cm -> a", || {
        config.k8s_swap(&[(
            "cm-vs.yaml",
            &vs_yaml("cm", "cm.example.com", "shop-gateway", "a.test.internal"),
        )])
    });
    wait_version(&gw, &probe_client, addr, "cm.example.com", "v1", 20);

    // ... and shop back to a through a plain write, while cm stays on the swapped config.
    phase.store(5, Ordering::SeqCst);
    change(&gw, "(e) shop -> a", || {
        config.write("vs-shop.yaml", &shop_vs("a.test.internal"))
    });
    wait_version(&gw, &probe_client, addr, "shop.example.com", "v1", 20);
    wait_version(&gw, &probe_client, addr, "cm.example.com", "v1", 5);
    // Some traffic on the final configuration before stopping.
    wait_for_more_traffic(&gw, &loops.iter().collect::<Vec<_>>(), 20, 250);

    finish_loops(loops, 200, 6);

    let generation = gw.generation();
    let logged = logged_generations(&gw);
    eprintln!("final generation {generation}; logged generations {logged:?}");
    if !logged.is_empty() {
        let expected: Vec<u64> = (1..=generation).collect();
        assert_eq!(
            logged, expected,
            "each reload should log the next generation, ending at /config_dump's {generation}"
        );
    }
    for name in [
        "backends.yaml",
        "gateway.yaml",
        "vs-shop.yaml",
        "cm-vs.yaml",
    ] {
        let report = file_report(&gw, name);
        assert_eq!(report["ok"], true, "{name}: {report:#}");
    }
    eprintln!(
        "config_changes_apply_with_zero_failed_requests took {:?}",
        started.elapsed()
    );
}

#[test]
fn gateway_ports_appear_and_disappear_without_restart() {
    let started = Instant::now();
    let a = EchoBackend::start("a", "v1");
    let other = EchoBackend::start("other", "v2");
    let config = ConfigDir::new();
    write_shop(
        &config,
        &format!(
            "{}---\n{}",
            service_entry("a", "a.test.internal", 80, &[(a.addr, &[])]),
            service_entry("other", "other.test.internal", 80, &[(other.addr, &[])]),
        ),
        &["shop.example.com"],
    );
    config.write(
        "vs-other.yaml",
        &vs_yaml(
            "other",
            "other.example.com",
            "other-gateway",
            "other.test.internal",
        ),
    );
    let gw = Gateway::start(config.path(), &["--port-map", "80=0", "--port-map", "81=0"]);
    let pid = gw.pid();
    let addr80 = gw.listener(80);
    let client = HttpClient::new();
    wait_version(&gw, &client, addr80, "shop.example.com", "v1", 1);
    assert_eq!(listener_ports(&gw), vec![80], "only port 80 at start");
    assert!(
        !gw.stdout_lines()
            .iter()
            .any(|l| l.contains("gateway_port=81")),
        "no listener for port 81 before its Gateway exists: {:?}",
        gw.stdout_lines()
    );

    let phase = Arc::new(AtomicUsize::new(0));
    let load = LoadLoop::keep_alive(
        "port80-keepalive",
        addr80,
        "shop.example.com",
        Some("a"),
        phase.clone(),
    );
    wait_for_traffic(&gw, &[&load], 50);

    let other_gateway = gateway_yaml("other-gateway", 81, &["other.example.com"]);
    let mut old_addrs = Vec::new();
    for round in 1..=2 {
        // The Gateway for port 81 appears: a listener is bound and serves its host.
        phase.store(2 * round - 1, Ordering::SeqCst);
        change(&gw, &format!("round {round}: add gw-other.yaml"), || {
            config.write("gw-other.yaml", &other_gateway)
        });
        let addr81 = gw.listener(81);
        assert_ne!(addr81.port(), addr80.port());
        eprintln!("round {round}: port 81 listens on {addr81}");
        wait_version(&gw, &client, addr81, "other.example.com", "v2", 10);
        let r = client
            .get(addr81, "other.example.com", "/", &[])
            .unwrap_or_else(|e| gw.fail(e));
        assert_eq!(service_of(&r), "other");
        // shop is bound to port 80's Gateway only.
        wait_status(&gw, &client, addr81, "shop.example.com", 404, 0);
        let mut ports = listener_ports(&gw);
        ports.sort_unstable();
        assert_eq!(ports, vec![80, 81]);

        // The Gateway disappears: the port is closed and new connections are refused.
        phase.store(2 * round, Ordering::SeqCst);
        change(&gw, &format!("round {round}: remove gw-other.yaml"), || {
            config.remove("gw-other.yaml")
        });
        gw.wait_closed(81);
        let mut last = String::from("connected");
        gw.wait_until(
            &format!("a new connection to the old port-81 address {addr81} is refused"),
            Duration::from_secs(5),
            || match TcpStream::connect_timeout(&addr81, Duration::from_secs(1)) {
                Ok(_) => {
                    last = "connected".into();
                    false
                }
                Err(e) => {
                    last = format!("{e} ({:?})", e.kind());
                    e.kind() == ErrorKind::ConnectionRefused
                }
            },
        );
        eprintln!("round {round}: {addr81} now refuses connections: {last}");
        assert_eq!(
            listener_ports(&gw),
            vec![80],
            "port 81 gone from /config_dump"
        );
        old_addrs.push(addr81);
    }
    eprintln!("port-81 addresses over the rounds: {old_addrs:?}");

    // Port 80 kept serving the whole time, from the same process.
    wait_version(&gw, &client, addr80, "shop.example.com", "v1", 5);
    wait_for_more_traffic(&gw, &[&load], 20, 250);
    finish_loops(vec![load], 200, 5);
    assert_eq!(gw.pid(), pid, "the gateway process was not restarted");
    assert_eq!(gw.listener(80), addr80, "port 80 was never rebound");
    eprintln!(
        "gateway_ports_appear_and_disappear_without_restart took {:?}",
        started.elapsed()
    );
}

#[test]
fn bad_change_keeps_last_good_config() {
    let started = Instant::now();
    let a = EchoBackend::start("a", "v1");
    let b = EchoBackend::start("b", "v2");
    let config = ConfigDir::new();
    write_shop(&config, &backends_yaml(&a, &b), &["shop.example.com"]);
    let good = shop_vs("a.test.internal");
    let gw = Gateway::start(config.path(), &["--port-map", "80=0"]);
    let addr = gw.listener(80);
    let client = HttpClient::new();
    wait_version(&gw, &client, addr, "shop.example.com", "v1", 5);
    assert_eq!(file_report(&gw, "vs-shop.yaml")["ok"], true);

    let phase = Arc::new(AtomicUsize::new(0));
    let load = LoadLoop::keep_alive(
        "shop-keepalive",
        addr,
        "shop.example.com",
        Some("a"),
        phase.clone(),
    );
    wait_for_traffic(&gw, &[&load], 50);

    // Unclosed flow sequence; were any of it applied, shop would move to b.
    let broken = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  \
                  name: shop\nspec:\n  hosts: [shop.example.com\n  gateways: [shop-gateway]\n  \
                  http:\n  - route:\n    - destination: {host: b.test.internal, port: {number: 80}}\n";
    phase.store(1, Ordering::SeqCst);
    change(&gw, "broken vs-shop.yaml", || {
        config.write("vs-shop.yaml", broken)
    });
    let report = file_report(&gw, "vs-shop.yaml");
    eprintln!("files[] entry for the broken file: {report:#}");
    assert_eq!(report["ok"], false, "broken file reported ok: {report:#}");
    assert!(
        report["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "broken file has no last_error: {report:#}"
    );
    assert_eq!(
        report["resources"], 1,
        "the file's last good VirtualService stays in force: {report:#}"
    );
    for i in 0..50 {
        let got = probe(&client, addr, "shop.example.com");
        assert_eq!(
            got,
            Some((200, "v1".to_string())),
            "request {i} after the broken write"
        );
    }
    wait_for_more_traffic(&gw, &[&load], 100, 0);

    phase.store(2, Ordering::SeqCst);
    change(&gw, "fixed vs-shop.yaml", || {
        config.write("vs-shop.yaml", &good)
    });
    let report = file_report(&gw, "vs-shop.yaml");
    assert_eq!(report["ok"], true, "fixed file not ok: {report:#}");
    assert_eq!(report["errors"], 0, "{report:#}");
    wait_version(&gw, &client, addr, "shop.example.com", "v1", 20);
    wait_for_more_traffic(&gw, &[&load], 100, 250);
    finish_loops(vec![load], 200, 3);
    eprintln!(
        "bad_change_keeps_last_good_config took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_port_that_cannot_be_bound_fails_alone() {
    let (a, b) = (EchoBackend::start("a", "v1"), EchoBackend::start("b", "v2"));
    let dir = ConfigDir::new();
    dir.write("backends.yaml", &backends_yaml(&a, &b));
    dir.write(
        "gw-80.yaml",
        &gateway_yaml("shop", 80, &["shop.example.com"]),
    );
    dir.write(
        "vs-shop.yaml",
        &vs_yaml("shop", "shop.example.com", "shop", "a.test.internal"),
    );
    // Something else already listens where Gateway port 82 would.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind squatter");
    let taken = squatter
        .local_addr()
        .expect("squatter address")
        .port()
        .to_string();
    let map = format!("82={taken}");
    let gw = Gateway::start(dir.path(), &["--port-map", "80=0", "--port-map", &map]);
    let port80 = gw.listener(80);
    let before = gw.generation();
    dir.write(
        "gw-82.yaml",
        &gateway_yaml("other", 82, &["other.example.com"]),
    );
    gw.wait_generation(before + 1);
    let dump = gw.config_dump();
    let errors = dump["bind_errors"].as_array().cloned().unwrap_or_default();
    assert!(
        errors
            .iter()
            .any(|e| e["gateway_port"] == 82 && e["gateways"][0] == "default/other"),
        "the bind failure names the port and its Gateway: {errors:?}"
    );
    assert!(
        gw.stderr().contains("cannot bind gateway port"),
        "{}",
        gw.stderr()
    );
    let r = HttpClient::new()
        .get(port80, "shop.example.com", "/", &[])
        .expect("port 80 still serves");
    assert_eq!((r.status, service_of(&r)), (200, "a".to_string()));
    drop(squatter);
}
