//! `scripts/soak.sh`, the soak test, is a separate script that CI does not run (it takes
//! minutes). Here only its two files are checked to parse: `bash -n` on the script and
//! `python3 -m py_compile` on its driver (with the bytecode written to a temporary folder, not
//! next to the script).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;

fn script(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name);
    assert!(path.is_file(), "missing {}", path.display());
    path
}

fn assert_ok(what: &str, cmd: &mut Command) {
    let out = run_bounded(cmd, b"", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("{what} did not exit within 30 s"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn soak_script_parses() {
    let path = script("soak.sh");
    assert_ok(
        "bash -n scripts/soak.sh",
        Command::new("bash").arg("-n").arg(&path),
    );
}

#[test]
fn soak_driver_compiles() {
    let path = script("soak.py");
    let cache = tempfile::tempdir().expect("temp dir");
    assert_ok(
        "python3 -m py_compile scripts/soak.py",
        Command::new("python3")
            .args(["-m", "py_compile"])
            .arg(&path)
            .env("PYTHONPYCACHEPREFIX", cache.path()),
    );
}
