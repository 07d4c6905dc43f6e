//! Command-line clients run with a time bound: `nc` and `openssl s_client`.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::poll;

/// Runs `cmd` with `input` on stdin (then closed); kills it and returns `None` after `timeout`.
pub fn run_bounded(cmd: &mut Command, input: &[u8], timeout: Duration) -> Option<Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("child stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let out = read_all(Box::new(child.stdout.take().expect("child stdout")));
    let err = read_all(Box::new(child.stderr.take().expect("child stderr")));
    let status = poll(timeout, || child.try_wait().ok().flatten());
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    };
    let _ = writer.join();
    Some(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// `nc -N -w 10 127.0.0.1 <port>` with `input` on stdin: sends it, shuts down the write side at
/// EOF and reads until the server closes. `None` when it did not exit within 20 s.
pub fn nc(port: u16, input: &[u8]) -> Option<Output> {
    run_bounded(
        Command::new("nc").args(["-N", "-w", "10", "127.0.0.1", &port.to_string()]),
        input,
        Duration::from_secs(20),
    )
}

/// What one `openssl s_client` run printed.
#[derive(Debug, Clone)]
pub struct SClientOutput {
    /// Whether it exited successfully.
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl SClientOutput {
    /// stdout followed by stderr.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// The certificate subject line (`subject=...`), or `""` when there is none.
    pub fn subject(&self) -> String {
        self.text()
            .lines()
            .find(|l| l.starts_with("subject="))
            .unwrap_or_default()
            .to_string()
    }
}

/// `openssl s_client -connect 127.0.0.1:<port> <args>` with stdin closed; `None` when it did not
/// exit within 20 s.
pub fn openssl_s_client<S: AsRef<OsStr>>(port: u16, args: &[S]) -> Option<SClientOutput> {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(args);
    let out = run_bounded(&mut cmd, b"", Duration::from_secs(20))?;
    Some(SClientOutput {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
