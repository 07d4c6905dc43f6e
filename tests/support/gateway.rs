//! The real `tollgate` binary as a child process, observed through its stdout
//! `LISTEN`/`CLOSED` lines, its admin API and its captured stderr.

use std::collections::HashMap;
use std::fmt::Display;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{poll, HttpClient};

const START_TIMEOUT: Duration = Duration::from_secs(20);
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the stdout reader thread has seen.
#[derive(Default)]
struct State {
    /// Current Gateway-port listeners (connectable form, 127.0.0.1 for wildcard binds).
    listeners: HashMap<u16, SocketAddr>,
    /// Gateway ports with a `CLOSED` line.
    closed: Vec<u16>,
    /// `admin`, `health`, `metrics` addresses.
    named: HashMap<String, SocketAddr>,
    stdout: Vec<String>,
    stdout_eof: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stderr: Mutex<String>,
}

/// A running `tollgate run`. Killed and reaped on drop; if the test is panicking,
/// its stderr is printed then (unless a harness panic message already had it).
pub struct Gateway {
    child: Mutex<Child>,
    shared: Arc<Shared>,
    readers: Mutex<Vec<JoinHandle<()>>>,
    client: HttpClient,
    stderr_dumped: AtomicBool,
    _certs: Option<TempDir>,
}

fn has_flag(args: &[&str], flag: &str) -> bool {
    args.iter()
        .any(|a| *a == flag || a.starts_with(&format!("{flag}=")))
}

/// Adds `--certs-dir <empty temp dir>` unless `args` has one; returns the temp dir.
fn default_certs(cmd: &mut Command, args: &[&str]) -> Option<TempDir> {
    if has_flag(args, "--certs-dir") {
        return None;
    }
    let dir = tempfile::Builder::new()
        .prefix("tollgate-certs-")
        .tempdir()
        .expect("create temp certs dir");
    cmd.arg("--certs-dir").arg(dir.path());
    Some(dir)
}

/// Wildcard binds are reached through 127.0.0.1.
fn connectable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
    } else {
        addr
    }
}

fn parse_line(state: &mut State, line: &str) {
    let mut words = line.split_whitespace();
    let (Some(verb), Some(kind)) = (words.next(), words.next()) else {
        return;
    };
    let (mut port, mut addr) = (None, None);
    for word in words {
        if let Some(v) = word.strip_prefix("gateway_port=") {
            port = v.parse::<u16>().ok();
        } else if let Some(v) = word.strip_prefix("address=") {
            addr = v.parse::<SocketAddr>().ok().map(connectable);
        }
    }
    let Some(addr) = addr else { return };
    match (verb, kind, port) {
        ("LISTEN", "listener", Some(port)) => {
            state.listeners.insert(port, addr);
        }
        ("CLOSED", "listener", Some(port)) => {
            if state.listeners.get(&port) == Some(&addr) {
                state.listeners.remove(&port);
            }
            state.closed.push(port);
        }
        ("LISTEN", name, None) => {
            state.named.insert(name.to_string(), addr);
        }
        _ => {}
    }
}

impl Gateway {
    /// Spawns `tollgate run --config-dir <config_dir> [defaults] <args...>` and waits
    /// (up to 20 s) until the admin `/ready` answers 200. Defaults, each skipped if
    /// `args` has the flag: `--certs-dir <empty temp dir>`, `--admin-addr`,
    /// `--health-addr`, `--metrics-addr` on 127.0.0.1:0. Set `TOLLGATE_TEST_LOG=1`
    /// to also echo the gateway's stderr live.
    pub fn start(config_dir: &Path, args: &[&str]) -> Gateway {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        cmd.arg("run").arg("--config-dir").arg(config_dir);
        let certs = default_certs(&mut cmd, args);
        Self::launch(cmd, args, certs)
    }

    /// Spawns `tollgate demo <args...>` from the repository root, as the README's first command
    /// does (bundled `gateway-configs/` and `certs/`, built-in backends), with the admin
    /// addresses on 127.0.0.1:0 unless `args` sets them.
    pub fn start_demo(args: &[&str]) -> Gateway {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        cmd.arg("demo").current_dir(env!("CARGO_MANIFEST_DIR"));
        Self::launch(cmd, args, None)
    }

    fn launch(mut cmd: Command, args: &[&str], certs: Option<tempfile::TempDir>) -> Gateway {
        for flag in ["--admin-addr", "--health-addr", "--metrics-addr"] {
            if !has_flag(args, flag) {
                cmd.args([flag, "127.0.0.1:0"]);
            }
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn tollgate {args:?}: {e}"));

        let shared = Arc::new(Shared::default());
        let stdout = child.stdout.take().expect("child stdout");
        let stderr = child.stderr.take().expect("child stderr");
        let out_shared = shared.clone();
        let out_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut state = out_shared.state.lock().unwrap();
                parse_line(&mut state, &line);
                state.stdout.push(line);
                out_shared.changed.notify_all();
            }
            out_shared.state.lock().unwrap().stdout_eof = true;
            out_shared.changed.notify_all();
        });
        let err_shared = shared.clone();
        let echo = std::env::var_os("TOLLGATE_TEST_LOG").is_some();
        let err_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if echo {
                    eprintln!("[tollgate] {line}");
                }
                let mut buf = err_shared.stderr.lock().unwrap();
                buf.push_str(&line);
                buf.push('\n');
            }
        });

        let gw = Gateway {
            child: Mutex::new(child),
            shared,
            readers: Mutex::new(vec![out_reader, err_reader]),
            client: HttpClient::fresh_connections(),
            stderr_dumped: AtomicBool::new(false),
            _certs: certs,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        gw.wait_state("the admin address", START_TIMEOUT, |s| {
            s.named.get("admin").copied()
        });
        let mut last = String::from("no answer yet");
        let left = deadline.saturating_duration_since(Instant::now());
        let ready = poll(left, || match gw.try_get("admin", "/ready") {
            Ok((200, _)) => Some(()),
            Ok((code, body)) => {
                last = format!("{code} {body}");
                gw.check_alive("/ready");
                None
            }
            Err(e) => {
                last = e;
                gw.check_alive("/ready");
                None
            }
        });
        if ready.is_none() {
            gw.fail(format!(
                "admin /ready not 200 within {START_TIMEOUT:?}; last: {last}"
            ));
        }
        gw
    }

    /// Panics with `msg`, the exit status, stdout and stderr.
    pub fn fail(&self, msg: impl Display) -> ! {
        let status = match self.child.lock().unwrap().try_wait() {
            Ok(Some(status)) => status.to_string(),
            Ok(None) => "still running".to_string(),
            Err(e) => format!("unknown ({e})"),
        };
        let stdout = self.shared.state.lock().unwrap().stdout.join("\n");
        self.stderr_dumped.store(true, Ordering::SeqCst);
        panic!(
            "{msg}\n--- tollgate status: {status}\n--- tollgate stdout:\n{stdout}\n--- tollgate stderr:\n{}",
            self.stderr()
        );
    }

    /// Panics if the gateway process has exited.
    fn check_alive(&self, waiting_for: &str) {
        let exited = self.child.lock().unwrap().try_wait().ok().flatten();
        if let Some(status) = exited {
            // Let the readers drain so the message has the last log lines.
            self.join_readers();
            self.fail(format!(
                "tollgate exited ({status}) while waiting for {waiting_for}"
            ));
        }
    }

    /// Waits on the stdout state until `f` yields a value; panics after `timeout`
    /// or if the process exits first.
    fn wait_state<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&State) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state.lock().unwrap();
        loop {
            if let Some(v) = f(&state) {
                return v;
            }
            let now = Instant::now();
            if now >= deadline {
                drop(state);
                self.fail(format!("timed out after {timeout:?} waiting for {what}"));
            }
            if state.stdout_eof {
                drop(state);
                let status = self.wait_exit(Duration::from_secs(2));
                self.fail(format!(
                    "tollgate closed stdout (exit: {status:?}) while waiting for {what}"
                ));
            }
            let slice = (deadline - now).min(Duration::from_millis(100));
            state = self.shared.changed.wait_timeout(state, slice).unwrap().0;
            drop(state);
            self.check_alive(what);
            state = self.shared.state.lock().unwrap();
        }
    }

    /// Connectable address (127.0.0.1:<port> for wildcard binds) of the listener for
    /// Gateway port `gw_port`; waits up to 10 s for its `LISTEN` line.
    pub fn listener(&self, gw_port: u16) -> SocketAddr {
        let what = format!("LISTEN listener gateway_port={gw_port}");
        self.wait_state(&what, WAIT_TIMEOUT, |s| s.listeners.get(&gw_port).copied())
    }

    /// Waits up to 10 s until the listener for `gw_port` is reported `CLOSED`.
    pub fn wait_closed(&self, gw_port: u16) {
        let what = format!("CLOSED listener gateway_port={gw_port}");
        self.wait_state(&what, WAIT_TIMEOUT, |s| {
            (s.closed.contains(&gw_port) && !s.listeners.contains_key(&gw_port)).then_some(())
        })
    }

    /// Address printed as `LISTEN <name> address=...` (`admin`, `health`, `metrics`).
    pub fn addr(&self, name: &str) -> SocketAddr {
        let what = format!("LISTEN {name}");
        self.wait_state(&what, WAIT_TIMEOUT, |s| s.named.get(name).copied())
    }

    fn try_get(&self, name: &str, path: &str) -> Result<(u16, String), String> {
        let addr = self.addr(name);
        let resp = self.client.get(addr, "localhost", path, &[])?;
        Ok((resp.status, resp.body))
    }

    fn get(&self, name: &str, path: &str) -> (u16, String) {
        self.try_get(name, path)
            .unwrap_or_else(|e| self.fail(format!("GET {name} {path}: {e}")))
    }

    /// `GET <path>` on the admin address; panics (with stderr) if no response.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        self.get("admin", path)
    }

    /// `POST <path>` (empty body) on the admin address; panics (with stderr) if no response.
    pub fn admin_post(&self, path: &str) -> (u16, String) {
        let addr = self.addr("admin");
        let resp = self
            .client
            .request("POST", addr, "localhost", path, &[], b"")
            .unwrap_or_else(|e| self.fail(format!("POST admin {path}: {e}")));
        (resp.status, resp.body)
    }

    /// `GET <path>` on the health address.
    pub fn health_get(&self, path: &str) -> (u16, String) {
        self.get("health", path)
    }

    /// `GET <path>` on the metrics address.
    pub fn metrics_get(&self, path: &str) -> (u16, String) {
        self.get("metrics", path)
    }

    /// Admin `/config_dump` as JSON.
    pub fn config_dump(&self) -> serde_json::Value {
        let (status, body) = self.admin_get("/config_dump");
        if status != 200 {
            self.fail(format!("/config_dump answered {status}: {body}"));
        }
        serde_json::from_str(&body)
            .unwrap_or_else(|e| self.fail(format!("/config_dump is not JSON ({e}): {body}")))
    }

    /// Current configuration generation (1 after the first load).
    pub fn generation(&self) -> u64 {
        let dump = self.config_dump();
        dump["generation"]
            .as_u64()
            .unwrap_or_else(|| self.fail(format!("/config_dump has no integer generation: {dump}")))
    }

    /// Polls (every 20 ms, up to 10 s) until the generation is at least `at_least`;
    /// returns it.
    pub fn wait_generation(&self, at_least: u64) -> u64 {
        let mut last = None;
        let reached = poll(WAIT_TIMEOUT, || {
            self.check_alive("a config generation");
            let generation = self.generation();
            last = Some(generation);
            (generation >= at_least).then_some(generation)
        });
        reached.unwrap_or_else(|| {
            self.fail(format!(
                "timed out after {WAIT_TIMEOUT:?} waiting for generation >= {at_least} (last seen {last:?})"
            ))
        })
    }

    /// Polls `cond` (every 20 ms) until true; panics with `what` and stderr after `timeout`.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        if poll(timeout, || cond().then_some(())).is_none() {
            self.fail(format!("timed out after {timeout:?} waiting until {what}"));
        }
    }

    /// Everything the gateway wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.shared.stderr.lock().unwrap().clone()
    }

    /// Every stdout line so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.shared.state.lock().unwrap().stdout.clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// Sends a signal by name (`TERM`, `HUP`, ...) via `kill -s`.
    pub fn signal(&self, sig: &str) {
        let pid = self.pid().to_string();
        let status = Command::new("kill")
            .args(["-s", sig, &pid])
            .status()
            .unwrap_or_else(|e| panic!("run kill -s {sig}: {e}"));
        assert!(status.success(), "kill -s {sig} {pid} failed: {status}");
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let status = poll(timeout, || {
            self.child.lock().unwrap().try_wait().ok().flatten()
        });
        if status.is_some() {
            self.join_readers();
        }
        status
    }

    /// Kills (SIGKILL) and reaps the process; idempotent.
    pub fn kill(&self) {
        {
            let mut child = self.child.lock().unwrap();
            let _ = child.kill();
            let _ = child.wait();
        }
        self.join_readers();
    }

    /// Joins the pipe readers once they hit EOF (bounded: 2 s).
    fn join_readers(&self) {
        let mut readers = self.readers.lock().unwrap();
        let done = poll(Duration::from_secs(2), || {
            readers.iter().all(|r| r.is_finished()).then_some(())
        });
        if done.is_some() {
            for reader in readers.drain(..) {
                let _ = reader.join();
            }
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() && !self.stderr_dumped.load(Ordering::SeqCst) {
            eprintln!("--- tollgate stderr:\n{}", self.stderr());
        }
    }
}

/// Output of `tollgate check`.
#[derive(Debug, Clone)]
pub struct CheckOutput {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CheckOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `tollgate check --config-dir <config_dir> [--certs-dir <empty temp dir>] <args...>`
/// to completion (killed and panics after 30 s).
pub fn check(config_dir: &Path, args: &[&str]) -> CheckOutput {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.arg("check").arg("--config-dir").arg(config_dir);
    let _certs = default_certs(&mut cmd, args);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn tollgate check {args:?}: {e}"));
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = read_all(Box::new(child.stdout.take().expect("check stdout")));
    let err = read_all(Box::new(child.stderr.take().expect("check stderr")));
    let status = poll(Duration::from_secs(30), || child.try_wait().ok().flatten());
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("tollgate check {args:?} did not exit within 30 s");
    };
    CheckOutput {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}
