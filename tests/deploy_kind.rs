//! The kind deployment (`deploy/kind/`) checked without a cluster: `kubectl kustomize
//! deploy/kind` is rendered and parsed, and its Deployments, Services, ConfigMap and Secrets are
//! compared with the Gateways they serve, with `cluster.yaml`'s port mappings, with the files
//! under deploy/kind/ and with what the real binary serves (probe and metrics paths). The copies
//! in deploy/kind/config and deploy/kind/certs are compared with gateway-configs/ and certs/, and
//! `tollgate check` must accept them.
//!
//! Tests that need the rendered manifests print a line and return when kubectl is not on PATH.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use support::*;
use tollgate::config::yaml::json_documents;

/// The nodePort every gateway Service port must have: (Service, port) → nodePort.
const NODE_PORTS: &[(&str, u16, u16)] = &[
    ("istio-ingressgateway", 80, 30000),
    ("istio-ingressgateway", 443, 30005),
    ("istio-ingressgateway", 31400, 30006),
    ("istio-ingressgateway", 15021, 30001),
    ("istio-ingressgateway", 15090, 30002),
    ("my-user-gateway", 80, 30007),
];

/// The gateway namespace and the backends' namespace.
const GATEWAY_NS: &str = "istio-system";
const BACKEND_NS: &str = "istioinaction";

// ------------------------------------------------------------------------------------------
// Files and rendering

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn kind_dir() -> PathBuf {
    repo().join("deploy/kind")
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn read_text(path: &Path) -> String {
    String::from_utf8(read(path)).unwrap_or_else(|e| panic!("{} is not UTF-8: {e}", path.display()))
}

fn parse(text: &str, what: &str) -> Vec<Value> {
    json_documents(text).unwrap_or_else(|e| panic!("{what} does not parse as YAML: {e:?}"))
}

/// Names of the regular files directly in `dir`, sorted.
fn file_names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read dir {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry"))
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Every regular file under `dir`, recursively, as paths relative to `dir`.
fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read dir {}: {e}", dir.display()))
        {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(path.strip_prefix(root).expect("under root").to_path_buf());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// Whether an executable named `name` is on PATH.
fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            fs::metadata(dir.join(name)).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
    })
}

/// The output of `kubectl kustomize deploy/kind` as JSON documents, rendered once per test
/// process; `None` (after printing why) when kubectl is not on PATH.
fn rendered(test: &str) -> Option<&'static [Value]> {
    static DOCS: OnceLock<Option<Vec<Value>>> = OnceLock::new();
    let docs = DOCS.get_or_init(|| {
        if !on_path("kubectl") {
            return None;
        }
        let out = run_bounded(
            Command::new("kubectl")
                .arg("kustomize")
                .arg("deploy/kind")
                .current_dir(repo()),
            b"",
            Duration::from_secs(60),
        )
        .expect("kubectl kustomize deploy/kind did not finish within 60 s");
        assert!(
            out.status.success(),
            "kubectl kustomize deploy/kind failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("kustomize output is UTF-8");
        Some(parse(&text, "kubectl kustomize deploy/kind output"))
    });
    if docs.is_none() {
        println!("{test}: skipped because kubectl is missing (not on PATH)");
    }
    docs.as_deref()
}

// ------------------------------------------------------------------------------------------
// Reading manifests

fn str_at<'v>(v: &'v Value, pointer: &str) -> Option<&'v str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn kind_of(v: &Value) -> &str {
    str_at(v, "/kind").unwrap_or("")
}

fn name_of(v: &Value) -> &str {
    str_at(v, "/metadata/name").unwrap_or("")
}

fn namespace_of(v: &Value) -> &str {
    str_at(v, "/metadata/namespace").unwrap_or("")
}

fn all<'d>(docs: &'d [Value], kind: &str) -> Vec<&'d Value> {
    docs.iter().filter(|d| kind_of(d) == kind).collect()
}

fn find<'d>(docs: &'d [Value], kind: &str, namespace: &str, name: &str) -> &'d Value {
    docs.iter()
        .find(|d| kind_of(d) == kind && namespace_of(d) == namespace && name_of(d) == name)
        .unwrap_or_else(|| panic!("no {kind} {namespace}/{name} in the rendered manifests"))
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn array<'v>(v: &'v Value, pointer: &str) -> &'v [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn number(v: &Value, pointer: &str) -> Option<u64> {
    v.pointer(pointer).and_then(Value::as_u64)
}

/// `selector` ⊆ `labels` (an empty selector selects nothing here).
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A gateway Deployment: one running the tollgate image.
struct GatewayPod<'d> {
    deployment: &'d Value,
    container: &'d Value,
    args: Vec<String>,
}

impl<'d> GatewayPod<'d> {
    fn name(&self) -> &'d str {
        name_of(self.deployment)
    }

    fn pod_labels(&self) -> BTreeMap<String, String> {
        string_map(self.deployment.pointer("/spec/template/metadata/labels"))
    }

    /// Every value of `--flag V` / `--flag=V` in the container's args.
    fn flag(&self, flag: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut it = self.args.iter();
        while let Some(arg) = it.next() {
            if arg == flag {
                out.push(
                    it.next()
                        .unwrap_or_else(|| panic!("{flag} without a value"))
                        .clone(),
                );
            } else if let Some(v) = arg.strip_prefix(&format!("{flag}=")) {
                out.push(v.to_string());
            }
        }
        out
    }

    /// The one value of `flag`, else the binary's default.
    fn flag_or_default(&self, flag: &str) -> String {
        let values = self.flag(flag);
        assert!(values.len() <= 1, "{}: {flag} given twice", self.name());
        values
            .into_iter()
            .next()
            .unwrap_or_else(|| run_default(flag))
    }

    /// `--port-map GW=LISTEN` pairs.
    fn port_plan(&self) -> BTreeMap<u16, u16> {
        self.flag("--port-map")
            .iter()
            .map(|m| {
                let (gw, listen) = m
                    .split_once('=')
                    .unwrap_or_else(|| panic!("bad --port-map {m}"));
                (
                    gw.parse().expect("gateway port"),
                    listen.parse().expect("listen port"),
                )
            })
            .collect()
    }

    /// `--labels k=v,...` (or the default).
    fn labels(&self) -> BTreeMap<String, String> {
        self.flag_or_default("--labels")
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or_else(|| panic!("bad label {p}"));
                (k.trim().to_string(), v.trim().to_string())
            })
            .collect()
    }

    /// The port of an address flag (`--health-addr`, `--metrics-addr`), or of its default.
    fn addr_port(&self, flag: &str) -> u16 {
        let addr = self.flag_or_default(flag);
        addr.parse::<std::net::SocketAddr>()
            .unwrap_or_else(|e| panic!("{}: {flag} {addr}: {e}", self.name()))
            .port()
    }

    fn container_ports(&self) -> BTreeMap<u16, String> {
        array(self.container, "/ports")
            .iter()
            .map(|p| {
                let port = number(p, "/containerPort").expect("containerPort") as u16;
                (port, str_at(p, "/name").unwrap_or("").to_string())
            })
            .collect()
    }

    /// A probe's or Service's port (a number, or a container port name) as a number.
    fn resolve_port(&self, port: &Value) -> Option<u16> {
        if let Some(n) = port.as_u64() {
            return u16::try_from(n).ok();
        }
        let name = port.as_str()?;
        self.container_ports()
            .into_iter()
            .find(|(_, n)| n == name)
            .map(|(p, _)| p)
    }

    fn env(&self, name: &str) -> &'d Value {
        array(self.container, "/env")
            .iter()
            .find(|e| str_at(e, "/name") == Some(name))
            .unwrap_or_else(|| panic!("{}: no env {name}", self.name()))
    }

    fn volume(&self, name: &str) -> &'d Value {
        array(self.deployment, "/spec/template/spec/volumes")
            .iter()
            .find(|v| str_at(v, "/name") == Some(name))
            .unwrap_or_else(|| panic!("{}: no volume {name}", self.name()))
    }

    /// The volume mounted at `path`.
    fn volume_at(&self, path: &str) -> &'d Value {
        let mount = array(self.container, "/volumeMounts")
            .iter()
            .find(|m| str_at(m, "/mountPath") == Some(path))
            .unwrap_or_else(|| panic!("{}: nothing mounted at {path}", self.name()));
        self.volume(str_at(mount, "/name").expect("mount name"))
    }
}

fn gateway_pods(docs: &[Value]) -> Vec<GatewayPod<'_>> {
    let pods: Vec<_> = all(docs, "Deployment")
        .into_iter()
        .filter_map(|d| {
            let container = array(d, "/spec/template/spec/containers")
                .iter()
                .find(|c| str_at(c, "/image").is_some_and(|i| i.starts_with("tollgate:")))?;
            let args = array(container, "/args")
                .iter()
                .map(|a| a.as_str().expect("args are strings").to_string())
                .collect();
            Some(GatewayPod {
                deployment: d,
                container,
                args,
            })
        })
        .collect();
    let names: BTreeSet<_> = pods.iter().map(GatewayPod::name).collect();
    assert_eq!(
        names,
        BTreeSet::from(["istio-ingressgateway", "my-user-gateway"]),
        "gateway Deployments (image tollgate:*)"
    );
    pods
}

/// The default of `tollgate run`'s `flag`, read from `tollgate run --help`.
fn run_default(flag: &str) -> String {
    static HELP: OnceLock<String> = OnceLock::new();
    let help = HELP.get_or_init(|| {
        let out = run_bounded(
            Command::new(env!("CARGO_BIN_EXE_tollgate")).args(["run", "--help"]),
            b"",
            Duration::from_secs(20),
        )
        .expect("tollgate run --help did not finish within 20 s");
        assert!(out.status.success(), "tollgate run --help failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    let mut lines = help
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(&format!("{flag} ")));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("{flag} is not in tollgate run --help"));
    let block: Vec<&str> = std::iter::once(first)
        .chain(lines.take_while(|l| !l.trim_start().starts_with('-')))
        .collect();
    let block = block.join(" ");
    let start = block
        .find("[default: ")
        .unwrap_or_else(|| panic!("{flag} has no default in tollgate run --help: {block}"));
    let rest = &block[start + "[default: ".len()..];
    rest[..rest.find(']').expect("closing ]")].to_string()
}

/// A Gateway server of the kind config: (Gateway name, selector, port, TLS mode, credentialName).
struct Server {
    gateway: String,
    selector: BTreeMap<String, String>,
    port: u16,
    mode: String,
    credential: Option<String>,
}

fn kind_config_docs() -> Vec<(String, Value)> {
    let dir = kind_dir().join("config");
    file_names(&dir)
        .into_iter()
        .flat_map(|name| {
            let docs = parse(&read_text(&dir.join(&name)), &name);
            docs.into_iter().map(move |d| (name.clone(), d))
        })
        .collect()
}

fn kind_gateway_servers() -> Vec<Server> {
    let mut out = Vec::new();
    for (_, gw) in kind_config_docs()
        .iter()
        .filter(|(_, d)| kind_of(d) == "Gateway")
    {
        let selector = string_map(gw.pointer("/spec/selector"));
        for server in array(gw, "/spec/servers") {
            out.push(Server {
                gateway: name_of(gw).to_string(),
                selector: selector.clone(),
                port: number(server, "/port/number").expect("server port") as u16,
                mode: str_at(server, "/tls/mode").unwrap_or("").to_string(),
                credential: str_at(server, "/tls/credentialName").map(str::to_string),
            });
        }
    }
    assert!(!out.is_empty(), "no Gateway servers in deploy/kind/config");
    out
}

/// The servers of the Gateways a gateway pod serves (its labels match their selector).
fn served<'s>(pod: &GatewayPod<'_>, servers: &'s [Server]) -> Vec<&'s Server> {
    let labels = pod.labels();
    let out: Vec<_> = servers
        .iter()
        .filter(|s| selects(&s.selector, &labels))
        .collect();
    assert!(
        !out.is_empty(),
        "{} serves no Gateway of deploy/kind/config",
        pod.name()
    );
    out
}

/// The one Service selecting `pod`'s pods.
fn service_of<'d>(docs: &'d [Value], pod: &GatewayPod<'_>) -> &'d Value {
    let labels = pod.pod_labels();
    let services: Vec<_> = all(docs, "Service")
        .into_iter()
        .filter(|s| namespace_of(s) == namespace_of(pod.deployment))
        .filter(|s| selects(&string_map(s.pointer("/spec/selector")), &labels))
        .collect();
    assert_eq!(
        services.len(),
        1,
        "exactly one Service must select {}'s pods: {:?}",
        pod.name(),
        services.iter().map(|s| name_of(s)).collect::<Vec<_>>()
    );
    services[0]
}

// ------------------------------------------------------------------------------------------
// Copies of gateway-configs/ and certs/ (no kubectl needed)

/// What must stay equal between the two 00-backends.yaml: per ServiceEntry name, its namespace,
/// hosts, ports and endpoint labels.
fn service_entry_shape(text: &str, what: &str) -> BTreeMap<String, Value> {
    parse(text, what)
        .iter()
        .filter(|d| kind_of(d) == "ServiceEntry")
        .map(|se| {
            let labels: Vec<&Value> = array(se, "/spec/endpoints")
                .iter()
                .map(|ep| ep.pointer("/labels").unwrap_or(&Value::Null))
                .collect();
            let shape = serde_json::json!({
                "namespace": namespace_of(se),
                "hosts": se.pointer("/spec/hosts"),
                "ports": se.pointer("/spec/ports"),
                "endpointLabels": labels,
            });
            (name_of(se).to_string(), shape)
        })
        .collect()
}

#[test]
fn kind_config_is_gateway_configs_with_dns_backends() {
    let upstream_dir = repo().join("gateway-configs");
    let kind = kind_dir().join("config");
    let (upstream, copies) = (file_names(&upstream_dir), file_names(&kind));
    assert_eq!(
        copies, upstream,
        "deploy/kind/config must hold exactly gateway-configs/'s files (run deploy/kind/sync.sh)"
    );
    for name in upstream.iter().filter(|n| *n != "00-backends.yaml") {
        assert!(
            read(&kind.join(name)) == read(&upstream_dir.join(name)),
            "deploy/kind/config/{name} differs from gateway-configs/{name} (run deploy/kind/sync.sh)"
        );
    }

    let original = read_text(&upstream_dir.join("00-backends.yaml"));
    let variant = read_text(&kind.join("00-backends.yaml"));
    let (want, got) = (
        service_entry_shape(&original, "gateway-configs/00-backends.yaml"),
        service_entry_shape(&variant, "deploy/kind/config/00-backends.yaml"),
    );
    assert!(
        !want.is_empty(),
        "no ServiceEntries in gateway-configs/00-backends.yaml"
    );
    assert_eq!(
        got, want,
        "kind 00-backends.yaml: ServiceEntry names, hosts, ports and endpoint labels must match gateway-configs'"
    );
    for se in parse(&variant, "kind 00-backends.yaml")
        .iter()
        .filter(|d| kind_of(d) == "ServiceEntry")
    {
        assert_eq!(
            str_at(se, "/spec/resolution"),
            Some("DNS"),
            "ServiceEntry {}",
            name_of(se)
        );
        let endpoints = array(se, "/spec/endpoints");
        assert!(
            !endpoints.is_empty(),
            "ServiceEntry {} has no endpoints",
            name_of(se)
        );
        for ep in endpoints {
            let address = str_at(ep, "/address").unwrap_or("");
            assert!(
                address.ends_with(".svc.cluster.local")
                    && address.parse::<std::net::IpAddr>().is_err(),
                "ServiceEntry {}: endpoint address {address:?} is not a cluster DNS name",
                name_of(se)
            );
        }
    }
}

#[test]
fn kind_certs_are_copies_of_certs() {
    let kind = kind_dir().join("certs");
    let copies = files_under(&kind);
    assert!(
        !copies.is_empty(),
        "deploy/kind/certs is empty (run deploy/kind/sync.sh)"
    );
    for rel in &copies {
        let original = repo().join("certs").join(rel);
        assert!(
            original.is_file(),
            "deploy/kind/certs/{} has no original in certs/",
            rel.display()
        );
        assert!(
            read(&kind.join(rel)) == read(&original),
            "deploy/kind/certs/{} differs from certs/{} (run deploy/kind/sync.sh)",
            rel.display(),
            rel.display()
        );
    }
    // Each copied credential folder is complete.
    let folders: BTreeSet<_> = copies
        .iter()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    for folder in folders {
        assert_eq!(
            file_names(&kind.join(&folder)),
            file_names(&repo().join("certs").join(&folder)),
            "deploy/kind/certs/{} must hold every file of certs/{}",
            folder.display(),
            folder.display()
        );
    }
}

#[test]
fn tollgate_check_accepts_the_kind_config() {
    let certs = kind_dir().join("certs");
    let out = check(
        &kind_dir().join("config"),
        &[
            "--certs-dir",
            certs.to_str().expect("UTF-8 path"),
            "--no-dns",
        ],
    );
    assert!(
        out.success() && out.stdout.contains("0 error(s)"),
        "tollgate check --no-dns on deploy/kind/config failed: exit {:?}\n{}{}",
        out.code,
        out.stdout,
        out.stderr
    );
}

// ------------------------------------------------------------------------------------------
// Rendered manifests (kubectl kustomize)

#[test]
fn gateway_ports_are_exposed_by_containers_services_and_node_ports() {
    let Some(docs) = rendered("gateway_ports_are_exposed_by_containers_services_and_node_ports")
    else {
        return;
    };
    let servers = kind_gateway_servers();

    // cluster.yaml publishes 30000-30007 under the same numbers.
    let cluster = parse(&read_text(&kind_dir().join("cluster.yaml")), "cluster.yaml");
    assert_eq!(cluster.len(), 1, "cluster.yaml holds one document");
    let cluster = &cluster[0];
    assert_eq!(kind_of(cluster), "Cluster");
    assert_eq!(
        str_at(cluster, "/apiVersion"),
        Some("kind.x-k8s.io/v1alpha4")
    );
    let nodes = array(cluster, "/nodes");
    assert_eq!(nodes.len(), 1, "one node");
    assert_eq!(str_at(&nodes[0], "/role"), Some("control-plane"));
    let mut mapped = BTreeSet::new();
    for m in array(&nodes[0], "/extraPortMappings") {
        let (container, host) = (number(m, "/containerPort"), number(m, "/hostPort"));
        assert_eq!(
            container, host,
            "extraPortMapping {m}: containerPort must equal hostPort"
        );
        assert!(
            str_at(m, "/protocol").is_none_or(|p| p.eq_ignore_ascii_case("TCP")),
            "{m}"
        );
        mapped.insert(container.expect("containerPort") as u16);
    }
    assert_eq!(
        mapped,
        (30000..=30007).collect::<BTreeSet<u16>>(),
        "extraPortMappings"
    );

    // Every nodePort of every Service is one of the expected ones, and mapped.
    let mut node_ports = BTreeSet::new();
    for svc in all(docs, "Service") {
        for p in array(svc, "/spec/ports") {
            if let Some(np) = number(p, "/nodePort") {
                let np = np as u16;
                assert!(
                    mapped.contains(&np),
                    "Service {}: nodePort {np} is not in cluster.yaml",
                    name_of(svc)
                );
                node_ports.insert((
                    name_of(svc).to_string(),
                    number(p, "/port").expect("port") as u16,
                    np,
                ));
            } else {
                assert_ne!(
                    str_at(svc, "/spec/type"),
                    Some("NodePort"),
                    "Service {} port {p}: a NodePort Service port without a fixed nodePort gets a random one outside cluster.yaml's mappings",
                    name_of(svc)
                );
            }
        }
    }
    let want: BTreeSet<_> = NODE_PORTS
        .iter()
        .map(|(s, p, n)| (s.to_string(), *p, *n))
        .collect();
    assert_eq!(
        node_ports, want,
        "(Service, port, nodePort) of the rendered Services"
    );

    for pod in gateway_pods(docs) {
        let plan = pod.port_plan();
        let container_ports = pod.container_ports();
        let svc = service_of(docs, &pod);
        assert_eq!(
            str_at(svc, "/spec/type"),
            Some("NodePort"),
            "Service {}",
            name_of(svc)
        );
        assert_eq!(
            str_at(svc, "/spec/externalTrafficPolicy"),
            Some("Local"),
            "Service {}",
            name_of(svc)
        );
        let svc_ports = array(svc, "/spec/ports");
        // Each Service port leads to a container port.
        for p in svc_ports {
            let target = p.pointer("/targetPort").unwrap_or_else(|| &p["port"]);
            let target = pod.resolve_port(target);
            assert!(
                target.is_some_and(|t| container_ports.contains_key(&t)),
                "Service {} port {p}: targetPort is not a container port of {} ({container_ports:?})",
                name_of(svc),
                pod.name()
            );
        }
        // Each served Gateway port listens where the port plan says, and the Service exposes it
        // under the Gateway port's number (as Istio's Service does).
        let served_ports: BTreeSet<u16> = served(&pod, &servers).iter().map(|s| s.port).collect();
        for gw_port in served_ports {
            let listen = plan.get(&gw_port).copied().unwrap_or(gw_port);
            assert!(
                container_ports.contains_key(&listen),
                "{}: Gateway port {gw_port} listens on {listen}, which is not a containerPort ({container_ports:?})",
                pod.name()
            );
            let exposed = svc_ports
                .iter()
                .find(|p| number(p, "/port") == Some(u64::from(gw_port)));
            let exposed = exposed.unwrap_or_else(|| {
                panic!(
                    "Service {} does not expose Gateway port {gw_port}",
                    name_of(svc)
                )
            });
            let target = exposed
                .pointer("/targetPort")
                .and_then(|t| pod.resolve_port(t));
            assert_eq!(
                target,
                Some(listen),
                "Service {} port {gw_port} must target {listen} (--port-map)",
                name_of(svc)
            );
            assert!(
                number(exposed, "/nodePort").is_some(),
                "Service {} port {gw_port} has no nodePort",
                name_of(svc)
            );
        }
        // Listeners, health and metrics do not collide.
        let health = pod.addr_port("--health-addr");
        let metrics = pod.addr_port("--metrics-addr");
        for p in [health, metrics] {
            assert!(
                container_ports.contains_key(&p),
                "{}: containerPort {p} missing",
                pod.name()
            );
            assert!(
                !plan.values().any(|l| *l == p),
                "{}: a listener is mapped onto {p}",
                pod.name()
            );
        }
    }
}

#[test]
fn probes_and_scrape_annotations_point_at_paths_the_binary_serves() {
    let Some(docs) = rendered("probes_and_scrape_annotations_point_at_paths_the_binary_serves")
    else {
        return;
    };
    let servers = kind_gateway_servers();
    let certs = kind_dir().join("certs");
    let config = kind_dir().join("config");
    for pod in gateway_pods(docs) {
        let health = pod.addr_port("--health-addr");
        let metrics = pod.addr_port("--metrics-addr");
        let mut probe_paths = Vec::new();
        for probe in ["readinessProbe", "livenessProbe"] {
            let get = pod
                .container
                .pointer(&format!("/{probe}/httpGet"))
                .unwrap_or_else(|| panic!("{}: {probe} is not an httpGet probe", pod.name()));
            let port = get.pointer("/port").and_then(|p| pod.resolve_port(p));
            assert_eq!(
                port,
                Some(health),
                "{}: {probe} port must be the health port",
                pod.name()
            );
            let path = str_at(get, "/path").unwrap_or("/").to_string();
            probe_paths.push((probe, path));
        }
        assert_eq!(
            probe_paths
                .iter()
                .map(|(_, p)| p.as_str())
                .collect::<Vec<_>>(),
            ["/healthz/ready", "/healthz/live"],
            "{}: readiness and liveness paths",
            pod.name()
        );
        let annotations = string_map(
            pod.deployment
                .pointer("/spec/template/metadata/annotations"),
        );
        assert_eq!(
            annotations.get("prometheus.io/scrape").map(String::as_str),
            Some("true")
        );
        assert_eq!(
            annotations.get("prometheus.io/port"),
            Some(&metrics.to_string()),
            "{}",
            pod.name()
        );
        let scrape_path = annotations
            .get("prometheus.io/path")
            .unwrap_or_else(|| panic!("{}: no prometheus.io/path annotation", pod.name()));

        // The real binary, with this pod's labels, on the kind config: the probe paths answer
        // 200 on its health address and the scrape path on its metrics address.
        let labels = pod.flag_or_default("--labels");
        let mut args: Vec<String> = vec![
            "--certs-dir".into(),
            certs.to_str().expect("UTF-8 path").into(),
            "--labels".into(),
            labels,
        ];
        let gw_ports: BTreeSet<u16> = served(&pod, &servers).iter().map(|s| s.port).collect();
        for p in gw_ports {
            args.extend(["--port-map".to_string(), format!("{p}=0")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let gw = Gateway::start(&config, &args);
        for (probe, path) in &probe_paths {
            gw.wait_until(
                &format!("{} {probe} {path} answers 200", pod.name()),
                Duration::from_secs(10),
                || gw.health_get(path).0 == 200,
            );
        }
        let (status, _) = gw.health_get("/healthz/no-such-path");
        assert_ne!(
            status, 200,
            "the health address answers 200 to any path; the probe check proves nothing"
        );
        let (status, body) = gw.metrics_get(scrape_path);
        assert_eq!(
            status,
            200,
            "{}: GET {scrape_path} on the metrics address",
            pod.name()
        );
        assert!(
            body.contains("# TYPE"),
            "{}: {scrape_path} is not a Prometheus exposition:\n{body}",
            pod.name()
        );
    }
}

#[test]
fn configmap_and_secrets_hold_the_files_under_deploy_kind() {
    let Some(docs) = rendered("configmap_and_secrets_hold_the_files_under_deploy_kind") else {
        return;
    };
    let config_dir = kind_dir().join("config");
    let cm = find(docs, "ConfigMap", GATEWAY_NS, "tollgate-config");
    let data = cm
        .pointer("/data")
        .and_then(Value::as_object)
        .expect("ConfigMap data");
    let keys: BTreeSet<String> = data.keys().cloned().collect();
    assert_eq!(
        keys,
        file_names(&config_dir),
        "tollgate-config keys vs deploy/kind/config files"
    );
    for (key, value) in data {
        assert_eq!(
            value.as_str().map(str::as_bytes),
            Some(read(&config_dir.join(key)).as_slice()),
            "ConfigMap key {key} differs from deploy/kind/config/{key}"
        );
    }
    assert!(
        cm.pointer("/binaryData").is_none(),
        "unexpected binaryData in tollgate-config"
    );

    let certs_dir = kind_dir().join("certs");
    let secrets = all(docs, "Secret");
    let names: BTreeSet<&str> = secrets.iter().map(|s| name_of(s)).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "webapp-credential",
            "catalog-credential",
            "mtls-credential",
            "simple-tls-service-1",
            "simple-tls-service-2"
        ]),
        "Secrets"
    );
    let folders: BTreeSet<String> = fs::read_dir(&certs_dir)
        .expect("read deploy/kind/certs")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>(),
        folders,
        "one Secret per folder of deploy/kind/certs"
    );
    for secret in secrets {
        let name = name_of(secret);
        let want_ns = if name.starts_with("simple-tls-service-") {
            BACKEND_NS
        } else {
            GATEWAY_NS
        };
        assert_eq!(namespace_of(secret), want_ns, "Secret {name}'s namespace");
        let data = secret
            .pointer("/data")
            .and_then(Value::as_object)
            .expect("Secret data");
        let keys: BTreeSet<String> = data.keys().cloned().collect();
        assert_eq!(
            keys,
            file_names(&certs_dir.join(name)),
            "Secret {name} keys vs deploy/kind/certs/{name}"
        );
        for (key, value) in data {
            // kustomize wraps the base64 in lines; the API server's decoder skips newlines too.
            let encoded: String = value
                .as_str()
                .expect("base64 string")
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap_or_else(|e| panic!("Secret {name} key {key}: {e}"));
            assert!(
                decoded == read(&certs_dir.join(name).join(key)),
                "Secret {name} key {key} differs from deploy/kind/certs/{name}/{key}"
            );
        }
        if keys.contains("tls.crt") && keys.contains("tls.key") {
            assert_eq!(
                str_at(secret, "/type"),
                Some("kubernetes.io/tls"),
                "Secret {name}'s type"
            );
        }
    }
}

#[test]
fn gateway_pods_are_hardened_and_mount_config_and_credentials() {
    let Some(docs) = rendered("gateway_pods_are_hardened_and_mount_config_and_credentials") else {
        return;
    };
    let servers = kind_gateway_servers();
    for pod in gateway_pods(docs) {
        let name = pod.name();
        assert_eq!(
            namespace_of(pod.deployment),
            GATEWAY_NS,
            "{name}'s namespace"
        );
        assert_eq!(
            str_at(pod.container, "/image"),
            Some("tollgate:dev"),
            "{name}"
        );
        assert_eq!(
            str_at(pod.container, "/imagePullPolicy"),
            Some("IfNotPresent"),
            "{name}"
        );
        assert_eq!(
            pod.args.first().map(String::as_str),
            Some("run"),
            "{name}: args start with run"
        );
        let want_replicas = if name == "istio-ingressgateway" { 2 } else { 1 };
        assert_eq!(
            number(pod.deployment, "/spec/replicas"),
            Some(want_replicas),
            "{name} replicas"
        );
        let labels = pod.pod_labels();
        let istio_label = pod.labels().get("istio").cloned();
        assert_eq!(
            labels.get("istio"),
            istio_label.as_ref(),
            "{name}: pod label istio vs --labels"
        );
        assert_eq!(
            labels.get("app").map(String::as_str),
            Some(name),
            "{name}: pod label app"
        );

        // Identity and access log from the environment.
        let ns = pod.env("POD_NAMESPACE");
        assert_eq!(
            str_at(ns, "/valueFrom/fieldRef/fieldPath"),
            Some("metadata.namespace"),
            "{name}: POD_NAMESPACE must come from the downward API"
        );
        assert_eq!(
            str_at(pod.env("ISTIO_META_WORKLOAD_NAME"), "/value"),
            Some(name)
        );
        assert_eq!(
            str_at(pod.env("ISTIO_META_CLUSTER_ID"), "/value"),
            Some("Kubernetes")
        );
        assert_eq!(str_at(pod.env("TOLLGATE_ACCESS_LOG"), "/value"), Some("-"));

        // Non-root, read-only root filesystem, no privilege escalation, no capabilities.
        let pod_sc = pod
            .deployment
            .pointer("/spec/template/spec/securityContext");
        let sc = pod
            .container
            .pointer("/securityContext")
            .expect("container securityContext");
        let setting = |key: &str| {
            sc.pointer(key)
                .or_else(|| pod_sc.and_then(|p| p.pointer(key)))
        };
        assert_eq!(
            setting("/runAsNonRoot"),
            Some(&Value::Bool(true)),
            "{name}: runAsNonRoot"
        );
        assert!(
            setting("/runAsUser")
                .and_then(Value::as_u64)
                .is_some_and(|u| u != 0),
            "{name}: runAsUser must be a non-zero uid"
        );
        assert_eq!(
            sc.pointer("/readOnlyRootFilesystem"),
            Some(&Value::Bool(true)),
            "{name}"
        );
        assert_eq!(
            sc.pointer("/allowPrivilegeEscalation"),
            Some(&Value::Bool(false)),
            "{name}"
        );
        let dropped: Vec<_> = array(sc, "/capabilities/drop")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            dropped.contains(&"ALL"),
            "{name}: capabilities.drop must contain ALL"
        );
        assert!(
            array(sc, "/capabilities/add").is_empty(),
            "{name}: no capability added"
        );
        for key in ["cpu", "memory"] {
            for kind in ["requests", "limits"] {
                assert!(
                    pod.container
                        .pointer(&format!("/resources/{kind}/{key}"))
                        .is_some(),
                    "{name}: resources.{kind}.{key}"
                );
            }
        }

        // The drain fits in the grace period.
        let drain = humantime::parse_duration(&pod.flag_or_default("--drain-timeout"))
            .expect("drain timeout");
        let grace = number(
            pod.deployment,
            "/spec/template/spec/terminationGracePeriodSeconds",
        )
        .expect("terminationGracePeriodSeconds");
        assert!(
            Duration::from_secs(grace) > drain,
            "{name}: terminationGracePeriodSeconds {grace} must exceed --drain-timeout {drain:?}"
        );

        // Whole-directory mounts: kubelet's ..data swap does not reach subPath mounts.
        for m in array(pod.container, "/volumeMounts") {
            assert!(
                m.pointer("/subPath").is_none() && m.pointer("/subPathExpr").is_none(),
                "{name}: volumeMount {m} uses subPath; ConfigMap/Secret updates would not reach it"
            );
        }
        let config = pod.volume_at(&pod.flag_or_default("--config-dir"));
        assert_eq!(
            str_at(config, "/configMap/name"),
            Some("tollgate-config"),
            "{name}: --config-dir volume"
        );
        assert!(
            config.pointer("/configMap/items").is_none(),
            "{name}: the whole ConfigMap is mounted"
        );

        // Every credentialName of the Gateways it serves is a folder of the --certs-dir volume,
        // projected from a Secret in its namespace that has the keys.
        let certs = pod.volume_at(&pod.flag_or_default("--certs-dir"));
        let mut projected: BTreeMap<String, (String, String)> = BTreeMap::new();
        for source in array(certs, "/projected/sources") {
            let secret = source
                .pointer("/secret")
                .expect("projected sources are Secrets");
            let secret_name = str_at(secret, "/name").expect("secret name").to_string();
            for item in array(secret, "/items") {
                let (key, path) = (
                    str_at(item, "/key").expect("key"),
                    str_at(item, "/path").expect("path"),
                );
                projected.insert(path.to_string(), (secret_name.clone(), key.to_string()));
            }
        }
        assert!(
            !projected.is_empty(),
            "{name}: the --certs-dir volume is not a projected volume of Secret items"
        );
        for (path, (secret, key)) in &projected {
            let s = find(docs, "Secret", GATEWAY_NS, secret);
            assert!(
                s.pointer(&format!("/data/{}", key.replace('/', "~1")))
                    .is_some(),
                "{name}: {path} <- {secret}/{key} missing"
            );
        }
        for server in served(&pod, &servers) {
            let Some(credential) = &server.credential else {
                continue;
            };
            let mut files = vec!["tls.crt", "tls.key"];
            if server.mode == "MUTUAL" || server.mode == "OPTIONAL_MUTUAL" {
                files.push("ca.crt");
            }
            for file in files {
                let path = format!("{credential}/{file}");
                assert!(
                    projected.contains_key(&path),
                    "{name}: Gateway {} uses credentialName {credential}, but {path} is not projected into --certs-dir",
                    server.gateway
                );
            }
        }
    }
}

#[test]
fn dns_endpoints_name_the_backend_services() {
    let Some(docs) = rendered("dns_endpoints_name_the_backend_services") else {
        return;
    };
    let entries: Vec<Value> = kind_config_docs()
        .into_iter()
        .map(|(_, d)| d)
        .filter(|d| kind_of(d) == "ServiceEntry")
        .collect();
    assert!(
        !entries.is_empty(),
        "no ServiceEntries in deploy/kind/config"
    );
    for se in &entries {
        let ports = array(se, "/spec/ports");
        for ep in array(se, "/spec/endpoints") {
            let address = str_at(ep, "/address").expect("endpoint address");
            let Some((svc_name, rest)) = address.split_once('.') else {
                panic!("endpoint {address} is not a Service DNS name")
            };
            let ns = rest.strip_suffix(".svc.cluster.local").unwrap_or_else(|| {
                panic!("ServiceEntry {}: endpoint {address} is not <service>.<namespace>.svc.cluster.local", name_of(se))
            });
            let svc = find(docs, "Service", ns, svc_name);
            for port in ports {
                let port_name = str_at(port, "/name").unwrap_or("");
                let want = ep
                    .pointer(&format!("/ports/{port_name}"))
                    .and_then(Value::as_u64)
                    .or_else(|| number(port, "/targetPort"))
                    .or_else(|| number(port, "/number"))
                    .expect("port number");
                assert!(
                    array(svc, "/spec/ports")
                        .iter()
                        .any(|p| number(p, "/port") == Some(want)),
                    "ServiceEntry {}: Service {ns}/{svc_name} has no port {want}",
                    name_of(se)
                );
            }
            // The Service selects a backend Deployment's pods.
            let selector = string_map(svc.pointer("/spec/selector"));
            let backed = all(docs, "Deployment").into_iter().any(|d| {
                namespace_of(d) == ns
                    && selects(
                        &selector,
                        &string_map(d.pointer("/spec/template/metadata/labels")),
                    )
            });
            assert!(
                backed,
                "Service {ns}/{svc_name} selects no Deployment's pods"
            );
        }
    }
}
