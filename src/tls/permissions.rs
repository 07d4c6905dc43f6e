//! Private key files that others can read: warned about once per file and mode.
//!
//! A key file (the file a symlink points to, as with Kubernetes' `..data` links) should be
//! readable by its owner only (0400 or 0600). Group read is accepted when root owns the file:
//! that is how kubelet hands a Secret to a non-root process (`defaultMode: 0440` with `fsGroup`),
//! as PostgreSQL accepts 0640 for a root-owned key. Anything else (others' bits, group write,
//! group read of a file the process's own user owns) gets one warning naming the file and its
//! mode; a reload that finds the same file with the same mode says nothing again.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Checks `path` and logs a warning the first time it has a given loose mode.
pub fn warn_if_loose(path: &Path) {
    let Some(mode) = loose_mode(path) else {
        return;
    };
    static WARNED: OnceLock<Mutex<HashSet<(PathBuf, u32)>>> = OnceLock::new();
    let mut warned = match WARNED.get_or_init(Mutex::default).lock() {
        Ok(w) => w,
        Err(poisoned) => poisoned.into_inner(),
    };
    if warned.insert((path.to_path_buf(), mode)) {
        tracing::warn!(
            "private key file {} has mode {mode:04o}: readable or writable by group or others; \
             make it 0400 or 0600 (a Kubernetes secret volume: defaultMode 0400, or 0440 with fsGroup)",
            path.display()
        );
    }
}

/// The file's permission bits when they are looser than [`allowed`].
#[cfg(unix)]
fn loose_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.mode() & 0o7777;
    (mode & !allowed(meta.uid()) & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn loose_mode(_path: &Path) -> Option<u32> {
    None
}

/// Group and others' bits a key file may have: group read when root owns it, else none.
fn allowed(owner: u32) -> u32 {
    if owner == 0 {
        0o040
    } else {
        0
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn with_mode(dir: &Path, mode: u32) -> PathBuf {
        let path = dir.join(format!("key-{mode:o}"));
        std::fs::write(&path, b"k").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn owner_only_modes_are_fine_and_others_bits_are_not() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(loose_mode(&with_mode(dir.path(), 0o600)), None);
        assert_eq!(loose_mode(&with_mode(dir.path(), 0o400)), None);
        assert_eq!(loose_mode(&with_mode(dir.path(), 0o644)), Some(0o644));
        assert_eq!(loose_mode(&with_mode(dir.path(), 0o604)), Some(0o604));
        assert_eq!(loose_mode(&with_mode(dir.path(), 0o620)), Some(0o620));
        assert_eq!(loose_mode(&dir.path().join("missing")), None);
    }

    #[test]
    fn a_symlink_is_judged_by_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = with_mode(dir.path(), 0o666);
        let link = dir.path().join("tls.key");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(loose_mode(&link), Some(0o666));
    }

    #[test]
    fn group_read_is_accepted_only_from_root_owned_files() {
        assert_eq!(0o440 & !allowed(0) & 0o077, 0);
        assert_ne!(0o440 & !allowed(10001) & 0o077, 0);
        assert_ne!(0o460 & !allowed(0) & 0o077, 0);
    }
}
