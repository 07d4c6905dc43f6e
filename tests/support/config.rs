//! Configuration directories as the gateway watches them, and YAML builders.

use std::collections::BTreeSet;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

/// A temporary config directory. Files are written atomically (temp file outside
/// the watched dir, then rename), so the gateway never sees a half-written file.
pub struct ConfigDir {
    root: TempDir,
    dir: PathBuf,
    staging: PathBuf,
    counter: AtomicU64,
}

impl Default for ConfigDir {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigDir {
    pub fn new() -> ConfigDir {
        let root = tempfile::Builder::new()
            .prefix("tollgate-config-")
            .tempdir()
            .expect("create temp config root");
        let dir = root.path().join("config");
        let staging = root.path().join("staging");
        fs::create_dir(&dir).expect("create config dir");
        fs::create_dir(&staging).expect("create staging dir");
        ConfigDir {
            root,
            dir,
            staging,
            counter: AtomicU64::new(0),
        }
    }

    /// The directory to pass as `--config-dir`.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// Atomically creates or replaces `rel_path` (parents created as needed).
    pub fn write(&self, rel_path: &str, contents: &str) {
        let target = self.dir.join(rel_path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {parent:?}: {e}"));
        }
        let tmp = self.staging.join(format!("write-{}", self.next()));
        fs::write(&tmp, contents).unwrap_or_else(|e| panic!("write {tmp:?}: {e}"));
        fs::rename(&tmp, &target).unwrap_or_else(|e| panic!("rename to {target:?}: {e}"));
    }

    /// Removes the file `rel_path`.
    pub fn remove(&self, rel_path: &str) {
        let target = self.dir.join(rel_path);
        fs::remove_file(&target).unwrap_or_else(|e| panic!("remove {target:?}: {e}"));
    }

    /// Replaces the whole directory content the way kubelet updates a mounted
    /// ConfigMap (AtomicWriter): files go into a fresh hidden `..<timestamp>` dir,
    /// `..data_tmp -> ..<timestamp>` is renamed over `..data`, each top-level
    /// `name -> ..data/name` link is created if missing, links for names no longer
    /// present are removed, then the previous timestamp dir is deleted.
    /// Do not mix with [`ConfigDir::write`] on the same top-level names.
    pub fn k8s_swap(&self, files: &[(&str, &str)]) {
        let data = self.dir.join("..data");
        let old_ts = fs::read_link(&data).ok().map(|t| self.dir.join(t));
        let old_names = old_ts.as_deref().map(top_level_names).unwrap_or_default();

        let ts_name = format!("..{}.{:06}", utc_stamp(), self.next());
        let ts = self.dir.join(&ts_name);
        fs::create_dir(&ts).unwrap_or_else(|e| panic!("mkdir {ts:?}: {e}"));
        let mut new_names = BTreeSet::new();
        for (rel, contents) in files {
            let path = ts.join(rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {parent:?}: {e}"));
            }
            fs::write(&path, contents).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
            match Path::new(rel).components().next() {
                Some(Component::Normal(first)) => {
                    new_names.insert(first.to_string_lossy().into_owned());
                }
                _ => panic!("k8s_swap: {rel:?} must be a relative path"),
            }
        }

        let data_tmp = self.dir.join("..data_tmp");
        let _ = fs::remove_file(&data_tmp);
        symlink(&ts_name, &data_tmp).unwrap_or_else(|e| panic!("symlink ..data_tmp: {e}"));
        fs::rename(&data_tmp, &data).unwrap_or_else(|e| panic!("rename ..data_tmp: {e}"));

        for name in &new_names {
            let link = self.dir.join(name);
            if fs::symlink_metadata(&link).is_err() {
                symlink(format!("..data/{name}"), &link)
                    .unwrap_or_else(|e| panic!("symlink {link:?}: {e}"));
            }
        }
        for name in old_names.difference(&new_names) {
            let link = self.dir.join(name);
            fs::remove_file(&link).unwrap_or_else(|e| panic!("remove {link:?}: {e}"));
        }
        if let Some(old) = old_ts.filter(|old| *old != ts) {
            fs::remove_dir_all(&old).unwrap_or_else(|e| panic!("remove {old:?}: {e}"));
        }
    }
}

fn top_level_names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Kubelet's timestamp dir format: `2006_01_02_15_04_05` in UTC.
fn utc_stamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}_{month:02}_{day:02}_{:02}_{:02}_{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Quotes `s` as a YAML scalar (a JSON string is valid YAML).
pub fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("serialize string")
}

/// A `networking.istio.io/v1` ServiceEntry named `name` for `host`, `resolution: STATIC`,
/// one port `{number: port, name: http, protocol: HTTP}`, and one endpoint per
/// `(backend address, labels)` with `ports: {http: <backend port>}`.
pub fn service_entry(
    name: &str,
    host: &str,
    port: u16,
    endpoints: &[(SocketAddr, &[(&str, &str)])],
) -> String {
    let mut y = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {}\n\
         spec:\n  hosts:\n  - {}\n  ports:\n  - number: {port}\n    name: http\n    protocol: HTTP\n\
         \x20 resolution: STATIC\n  endpoints:\n",
        yaml_str(name),
        yaml_str(host),
    );
    if endpoints.is_empty() {
        y.push_str("    []\n");
    }
    for (addr, labels) in endpoints {
        y.push_str(&format!(
            "  - address: {}\n    ports:\n      http: {}\n",
            addr.ip(),
            addr.port()
        ));
        if !labels.is_empty() {
            y.push_str("    labels:\n");
            for (k, v) in *labels {
                y.push_str(&format!("      {}: {}\n", yaml_str(k), yaml_str(v)));
            }
        }
    }
    y
}

/// A Gateway `name` with one HTTPS server on port 443 for `hosts` (a YAML flow list, e.g.
/// `[a.test]`), whose `tls` block is given inline (e.g. `{mode: SIMPLE, credentialName: c}`), and
/// a VirtualService sending `vs_hosts` through it to the destination host `dest`.
pub fn https_gateway(name: &str, hosts: &str, tls: &str, vs_hosts: &str, dest: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n  \
         selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: 443, name: https, protocol: HTTPS}}\n    \
         hosts: {hosts}\n    tls: {tls}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: {name}}}\nspec:\n  hosts: {vs_hosts}\n  gateways: [{name}]\n  http:\n  \
         - route: [{{destination: {{host: {dest}}}}}]\n"
    )
}

/// A ServiceEntry like [`service_entry`] for a layer-4 service: one port
/// `{number: port, name: <protocol lower-cased>, protocol: <protocol>}` (e.g. `TCP`, `TLS`),
/// `resolution: STATIC`, one endpoint per backend address.
pub fn l4_service_entry(
    name: &str,
    host: &str,
    port: u16,
    protocol: &str,
    endpoints: &[SocketAddr],
) -> String {
    let port_name = protocol.to_ascii_lowercase();
    let mut y = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {}\n\
         spec:\n  hosts:\n  - {}\n  ports:\n  - number: {port}\n    name: {port_name}\n    protocol: {protocol}\n\
         \x20 resolution: STATIC\n  endpoints:\n",
        yaml_str(name),
        yaml_str(host),
    );
    if endpoints.is_empty() {
        y.push_str("    []\n");
    }
    for addr in endpoints {
        y.push_str(&format!(
            "  - address: {}\n    ports:\n      {port_name}: {}\n",
            addr.ip(),
            addr.port()
        ));
    }
    y
}

/// Writes a self-signed certificate for `host` as `<dir>/<name>/tls.crt` and `tls.key`.
pub fn self_signed(dir: &Path, name: &str, host: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec![host.to_string()])
        .expect("generate a self-signed certificate");
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).expect("create credential folder");
    let (crt, key) = (folder.join("tls.crt"), folder.join("tls.key"));
    std::fs::write(&crt, certified.cert.pem()).expect("write tls.crt");
    std::fs::write(&key, certified.key_pair.serialize_pem()).expect("write tls.key");
    (crt, key)
}
