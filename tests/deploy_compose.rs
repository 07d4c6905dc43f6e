//! The container image and the docker compose deployment, checked by parsing (there is no Docker
//! engine here): the Dockerfile names real `tollgate run` flags and bakes in the config the CMD
//! points at; docker-compose.yml publishes exactly the ingress Gateway's ports under the image's
//! port plan, mounts paths that exist and has a service for every destination the compose
//! config routes to; deploy/compose/config is gateway-configs/ with only its backends swapped
//! for compose services, and `tollgate check` accepts it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;
use tollgate::config::yaml::json_documents;

const BACKENDS: &str = "00-backends.yaml";
/// Labels the compose gateway runs with (`tollgate run`'s default).
const GATEWAY_LABELS: [(&str, &str); 1] = [("istio", "ingressgateway")];
/// Ports the gateway serves besides Gateway ports: readiness and Prometheus metrics.
const SIDE_PORTS: [u16; 2] = [15021, 15090];

// ------------------------------------------------------------------------------------------
// Files

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every file under `dir`, as paths relative to it, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            fs::read_dir(dir).unwrap_or_else(|e| panic!("read dir {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).expect("under root").to_path_buf());
            }
        }
    }
    assert!(dir.is_dir(), "missing folder {}", dir.display());
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Every YAML document of every `*.yaml`/`*.yml` file under `dir`.
fn documents_under(dir: &Path) -> Vec<Value> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .flat_map(|rel| {
            let path = dir.join(&rel);
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            json_documents(&text).unwrap_or_else(|e| panic!("parse {}: {e:?}", path.display()))
        })
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn str_of(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn name_of(doc: &Value) -> String {
    format!(
        "{}/{}",
        doc["metadata"]["namespace"].as_str().unwrap_or("default"),
        str_of(&doc["metadata"]["name"])
    )
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn port_of(v: &Value) -> u16 {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    n.and_then(|n| u16::try_from(n).ok())
        .unwrap_or_else(|| panic!("not a port number: {v}"))
}

// ------------------------------------------------------------------------------------------
// The Dockerfile

#[derive(Debug)]
struct Instruction {
    /// Index of the build stage (0 = the first FROM).
    stage: usize,
    keyword: String,
    args: String,
}

/// Instructions in order, continuation lines joined and comments dropped.
fn dockerfile() -> Vec<Instruction> {
    let text = read("Dockerfile");
    let mut out = Vec::new();
    let mut stage = None::<usize>;
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        let (part, continues) = match trimmed.strip_suffix('\\') {
            Some(part) => (part.trim_end(), true),
            None => (trimmed, false),
        };
        if !pending.is_empty() {
            pending.push(' ');
        }
        pending.push_str(part);
        if continues {
            continue;
        }
        let full = std::mem::take(&mut pending);
        let (keyword, args) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            stage = Some(stage.map_or(0, |s| s + 1));
        }
        let stage = stage.unwrap_or_else(|| panic!("Dockerfile: {keyword} before any FROM"));
        out.push(Instruction {
            stage,
            keyword,
            args: args.trim().to_string(),
        });
    }
    assert!(pending.is_empty(), "Dockerfile ends inside a continuation");
    assert!(!out.is_empty(), "Dockerfile has no instructions");
    out
}

/// The instructions of the final (runtime) stage.
fn final_stage(all: &[Instruction]) -> Vec<&Instruction> {
    let last = all.iter().map(|i| i.stage).max().expect("a stage");
    all.iter().filter(|i| i.stage == last).collect()
}

/// A JSON (exec) form argument list, as Docker requires for ENTRYPOINT/CMD here.
fn exec_form(args: &str, what: &str) -> Vec<String> {
    serde_json::from_str(args)
        .unwrap_or_else(|e| panic!("{what} is not in exec (JSON array) form: {args:?}: {e}"))
}

/// `COPY [--flags] src... dest`: (flags, sources, destination).
fn copy_parts(args: &str) -> (Vec<String>, Vec<String>, String) {
    let words: Vec<String> = if args.starts_with('[') {
        exec_form(args, "COPY")
    } else {
        args.split_whitespace().map(str::to_string).collect()
    };
    let (flags, rest): (Vec<_>, Vec<_>) = words.into_iter().partition(|w| w.starts_with("--"));
    let (dest, sources) = rest
        .split_last()
        .expect("COPY needs a source and a destination");
    assert!(!sources.is_empty(), "COPY {args}: no source");
    (flags, sources.to_vec(), dest.clone())
}

fn trim_dir(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/"
    } else {
        trimmed
    }
}

/// Whether `.dockerignore` leaves `rel` out of the build context (last matching pattern wins;
/// `*` matches within one path segment).
fn docker_ignored(patterns: &[String], rel: &str) -> bool {
    fn glob(pattern: &str, text: &str) -> bool {
        match pattern.split_once('*') {
            None => pattern == text,
            Some((head, tail)) => text.strip_prefix(head).is_some_and(|rest| {
                let limit = rest.find('/').unwrap_or(rest.len());
                (0..=limit)
                    .filter(|&i| rest.is_char_boundary(i))
                    .any(|i| glob(tail, &rest[i..]))
            }),
        }
    }
    let rel = rel.trim_start_matches("./").trim_end_matches('/');
    let mut ignored = false;
    for pattern in patterns {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern.as_str()),
        };
        let pattern = pattern.trim_start_matches('/').trim_end_matches('/');
        // A pattern matches the path itself or any directory above it.
        let mut prefix = String::new();
        let hit = rel.split('/').any(|segment| {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(segment);
            glob(pattern, &prefix)
        });
        if hit {
            ignored = !negated;
        }
    }
    ignored
}

fn dockerignore() -> Vec<String> {
    read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// What the image runs: ENTRYPOINT + CMD of the final stage, and the port plan in them.
struct ImagePlan {
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    config_dir: String,
    certs_dir: String,
    /// `--port-map GW=LISTEN` entries; other Gateway ports listen on themselves.
    port_map: BTreeMap<u16, u16>,
    expose: BTreeSet<u16>,
}

impl ImagePlan {
    fn listen_port(&self, gateway_port: u16) -> u16 {
        self.port_map
            .get(&gateway_port)
            .copied()
            .unwrap_or(gateway_port)
    }
}

/// The value of `--flag V` or `--flag=V` in `args`, every occurrence.
fn flag_values(args: &[String], flag: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == flag {
            out.push(
                it.next()
                    .unwrap_or_else(|| panic!("{flag} without a value"))
                    .clone(),
            );
        } else if let Some(v) = a.strip_prefix(&format!("{flag}=")) {
            out.push(v.to_string());
        }
    }
    out
}

fn image_plan() -> ImagePlan {
    let all = dockerfile();
    let stage = final_stage(&all);
    let last = |kw: &str| {
        stage
            .iter()
            .rev()
            .find(|i| i.keyword == kw)
            .unwrap_or_else(|| panic!("the runtime stage has no {kw}"))
    };
    let entrypoint = exec_form(&last("ENTRYPOINT").args, "ENTRYPOINT");
    let cmd = exec_form(&last("CMD").args, "CMD");
    let args: Vec<String> = entrypoint.iter().chain(&cmd).cloned().collect();
    let single = |flag: &str| {
        let values = flag_values(&args, flag);
        assert_eq!(
            values.len(),
            1,
            "ENTRYPOINT+CMD should give {flag} once: {args:?}"
        );
        values[0].clone()
    };
    let port_map = flag_values(&args, "--port-map")
        .iter()
        .map(|m| {
            let (gw, listen) = m
                .split_once('=')
                .unwrap_or_else(|| panic!("--port-map {m:?} is not GW=LISTEN"));
            let parse = |p: &str| {
                p.parse::<u16>()
                    .unwrap_or_else(|_| panic!("--port-map {m:?}: {p:?} is not a port"))
            };
            (parse(gw), parse(listen))
        })
        .collect();
    let expose = stage
        .iter()
        .filter(|i| i.keyword == "EXPOSE")
        .flat_map(|i| i.args.split_whitespace())
        .map(|p| {
            let p = p.strip_suffix("/tcp").unwrap_or(p);
            p.parse::<u16>()
                .unwrap_or_else(|_| panic!("EXPOSE {p:?} is not a TCP port"))
        })
        .collect();
    ImagePlan {
        config_dir: single("--config-dir"),
        certs_dir: single("--certs-dir"),
        entrypoint,
        cmd,
        port_map,
        expose,
    }
}

fn tollgate_help(args: &[&str]) -> String {
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_tollgate")).args(args),
        b"",
        Duration::from_secs(20),
    )
    .unwrap_or_else(|| panic!("tollgate {args:?} did not exit within 20 s"));
    assert!(
        out.status.success(),
        "tollgate {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn dockerfile_builds_a_non_root_image_whose_command_uses_real_flags() {
    let all = dockerfile();
    let stage = final_stage(&all);
    assert!(
        all.iter().map(|i| i.stage).max() > Some(0),
        "the Dockerfile should be multi-stage (a builder and a runtime stage)"
    );
    assert!(
        all.iter()
            .any(|i| i.keyword == "RUN" && i.args.contains("cargo build --release --locked")),
        "the builder should run `cargo build --release --locked`"
    );

    // COPY sources from the build context exist and are not left out by .dockerignore.
    let ignore = dockerignore();
    let mut copies = Vec::new();
    for i in all
        .iter()
        .filter(|i| i.keyword == "COPY" || i.keyword == "ADD")
    {
        let (flags, sources, dest) = copy_parts(&i.args);
        let from_stage = flags.iter().any(|f| f.starts_with("--from="));
        if !from_stage {
            for src in &sources {
                assert!(
                    repo().join(src).exists(),
                    "COPY {src}: no such file or folder in the repository"
                );
                assert!(
                    !docker_ignored(&ignore, src),
                    "COPY {src}: .dockerignore leaves it out of the build context"
                );
            }
        }
        if i.stage == stage[0].stage {
            copies.push((from_stage, sources, dest));
        }
    }
    for needed in ["target", ".git"] {
        assert!(
            docker_ignored(&ignore, needed),
            ".dockerignore should leave {needed}/ out of the build context"
        );
    }
    // The binary lands on the PATH the ENTRYPOINT relies on.
    assert!(
        copies
            .iter()
            .any(|(from, _, dest)| *from && dest == "/usr/local/bin/tollgate"),
        "the runtime stage should copy the binary from the builder to /usr/local/bin/tollgate: {copies:?}"
    );

    let plan = image_plan();
    assert_eq!(
        plan.expose,
        BTreeSet::from([8080, 8443, 31400, 15021, 15090]),
        "EXPOSE"
    );
    assert_eq!(plan.entrypoint, ["tollgate"], "ENTRYPOINT");
    assert_eq!(
        plan.cmd.first().map(String::as_str),
        Some("run"),
        "CMD should start with the `run` subcommand: {:?}",
        plan.cmd
    );
    assert_eq!(
        plan.port_map,
        BTreeMap::from([(80, 8080), (443, 8443)]),
        "the image's port plan"
    );
    assert!(
        plan.expose.iter().any(|p| *p == plan.listen_port(31400)),
        "Gateway port 31400 listens on itself and is exposed"
    );

    // Every flag the image passes is one `tollgate run` has.
    let help = tollgate_help(&["run", "--help"]);
    let flags: Vec<&String> = plan
        .entrypoint
        .iter()
        .chain(&plan.cmd)
        .filter(|a| a.starts_with("--"))
        .collect();
    assert!(
        flags.len() >= 4,
        "expected the image's flags in CMD: {:?}",
        plan.cmd
    );
    for flag in flags {
        let flag = flag.split('=').next().expect("flag name");
        assert!(
            help.lines()
                .any(|l| l.trim_start().split([' ', ',']).any(|w| w == flag)),
            "`tollgate run --help` has no {flag}:\n{help}"
        );
    }
    let drain = flag_values(&plan.cmd, "--drain-timeout");
    assert_eq!(drain, ["5s"], "--drain-timeout in CMD");

    // The config and certs the CMD names are the ones baked in.
    let dest_of = |source: &str| {
        copies
            .iter()
            .find(|(from, sources, _)| !from && sources.iter().any(|s| trim_dir(s) == source))
            .map(|(_, _, dest)| trim_dir(dest).to_string())
            .unwrap_or_else(|| panic!("the runtime stage should COPY {source}/: {copies:?}"))
    };
    assert_eq!(
        dest_of("gateway-configs"),
        trim_dir(&plan.config_dir),
        "--config-dir should be where gateway-configs/ is copied"
    );
    assert_eq!(
        dest_of("certs"),
        trim_dir(&plan.certs_dir),
        "--certs-dir should be where certs/ is copied"
    );

    // Non-root, numerically (Kubernetes' runAsNonRoot cannot check a user name).
    let user = stage
        .iter()
        .rev()
        .find(|i| i.keyword == "USER")
        .expect("the runtime stage should set USER");
    let (uid, gid) = user.args.split_once(':').unwrap_or((&user.args, ""));
    let uid: u32 = uid
        .parse()
        .unwrap_or_else(|_| panic!("USER {} should be a numeric uid", user.args));
    assert_ne!(uid, 0, "USER must not be root");
    if !gid.is_empty() {
        let gid: u32 = gid
            .parse()
            .unwrap_or_else(|_| panic!("USER {} should have a numeric gid", user.args));
        assert_ne!(gid, 0, "USER's group must not be root");
    }

    let health = stage
        .iter()
        .rev()
        .find(|i| i.keyword == "HEALTHCHECK")
        .expect("the runtime stage should have a HEALTHCHECK");
    let (_, probe) = health
        .args
        .split_once("CMD ")
        .unwrap_or_else(|| panic!("HEALTHCHECK without CMD: {}", health.args));
    assert_eq!(
        exec_form(probe.trim(), "HEALTHCHECK CMD"),
        ["tollgate", "health"],
        "HEALTHCHECK"
    );
    let health_help = tollgate_help(&["health", "--help"]);
    assert!(
        health_help.contains(":15021/healthz/ready"),
        "`tollgate health` should probe the readiness port the image exposes:\n{health_help}"
    );
    let stop = stage.iter().rev().find(|i| i.keyword == "STOPSIGNAL");
    assert_eq!(stop.map(|i| i.args.as_str()), Some("SIGTERM"), "STOPSIGNAL");
}

#[test]
fn dockerignore_matching_follows_docker() {
    // The matcher the Dockerfile test relies on: a folder pattern covers what is inside it.
    let patterns: Vec<String> = ["target/", "fuzz/", "*.profraw", "!keep.profraw"]
        .map(String::from)
        .to_vec();
    assert!(docker_ignored(&patterns, "target"));
    assert!(docker_ignored(&patterns, "target/release/tollgate"));
    assert!(docker_ignored(&patterns, "fuzz/target"));
    assert!(docker_ignored(&patterns, "a.profraw"));
    assert!(!docker_ignored(&patterns, "keep.profraw"));
    assert!(!docker_ignored(&patterns, "src/"));
    assert!(!docker_ignored(&patterns, "targets"));
    assert!(!docker_ignored(&patterns, "src/a.profraw"));
}

// ------------------------------------------------------------------------------------------
// docker-compose.yml

struct Compose {
    services: BTreeMap<String, Value>,
}

fn compose() -> Compose {
    let docs = json_documents(&read("docker-compose.yml")).expect("docker-compose.yml parses");
    assert_eq!(docs.len(), 1, "docker-compose.yml should be one document");
    let services = docs[0]["services"]
        .as_object()
        .expect("docker-compose.yml has services")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Compose { services }
}

impl Compose {
    fn service(&self, name: &str) -> &Value {
        self.services
            .get(name)
            .unwrap_or_else(|| panic!("docker-compose.yml has no service {name:?}"))
    }

    /// (source, target, read-only) of a service's bind mounts.
    fn binds(&self, name: &str) -> Vec<(String, String, bool)> {
        array(&self.service(name)["volumes"])
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => {
                    let parts: Vec<&str> = s.split(':').collect();
                    let [source, target, rest @ ..] = parts.as_slice() else {
                        panic!("service {name}: volume {s:?} has no target");
                    };
                    let read_only = rest
                        .first()
                        .is_some_and(|mode| mode.split(',').any(|m| m == "ro"));
                    (source.starts_with('.') || source.starts_with('/'))
                        .then(|| (source.to_string(), target.to_string(), read_only))
                }
                Value::Object(_) => (v["type"] == "bind").then(|| {
                    (
                        str_of(&v["source"]).into(),
                        str_of(&v["target"]).into(),
                        v["read_only"] == true,
                    )
                }),
                other => panic!("service {name}: unexpected volume {other}"),
            })
            .collect()
    }

    /// A service's environment, map or list form.
    fn env(&self, name: &str) -> BTreeMap<String, String> {
        let env = &self.service(name)["environment"];
        match env {
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect(),
            Value::Array(list) => list
                .iter()
                .map(|e| {
                    let (k, v) = str_of(e).split_once('=').unwrap_or((str_of(e), ""));
                    (k.to_string(), v.to_string())
                })
                .collect(),
            Value::Null => BTreeMap::new(),
            other => panic!("service {name}: unexpected environment {other}"),
        }
    }

    /// (host port, container port) of a service's published ports.
    fn published(&self, name: &str) -> Vec<(u16, u16)> {
        array(&self.service(name)["ports"])
            .iter()
            .map(|p| match p {
                Value::String(s) => {
                    let s = s.strip_suffix("/tcp").unwrap_or(s);
                    let parts: Vec<&str> = s.split(':').collect();
                    assert!(
                        parts.len() >= 2,
                        "port {s:?} should publish on a fixed host port (HOST:CONTAINER)"
                    );
                    let parse = |x: &str| {
                        x.parse::<u16>()
                            .unwrap_or_else(|_| panic!("port {s:?}: {x:?} is not one port"))
                    };
                    (parse(parts[parts.len() - 2]), parse(parts[parts.len() - 1]))
                }
                Value::Object(_) => (port_of(&p["published"]), port_of(&p["target"])),
                other => panic!("service {name}: unexpected port {other}"),
            })
            .collect()
    }

    /// Container ports a service declares with `expose`.
    fn exposed(&self, name: &str) -> BTreeSet<u16> {
        array(&self.service(name)["expose"])
            .iter()
            .map(port_of)
            .collect()
    }

    fn depends_on(&self, name: &str) -> BTreeSet<String> {
        match &self.service(name)["depends_on"] {
            Value::Array(list) => list.iter().map(|v| str_of(v).to_string()).collect(),
            Value::Object(map) => map.keys().cloned().collect(),
            _ => BTreeSet::new(),
        }
    }
}

// ------------------------------------------------------------------------------------------
// Destinations, resolved the way tollgate does

fn compose_config_dir() -> PathBuf {
    repo().join("deploy/compose/config")
}

/// tollgate's short-name expansion (src/hosts.rs `resolve_short_name`).
fn fqdn(host: &str, namespace: &str) -> String {
    if host.contains('.') || host.starts_with('*') || host.parse::<IpAddr>().is_ok() {
        host.to_ascii_lowercase()
    } else {
        format!(
            "{}.{namespace}.svc.cluster.local",
            host.to_ascii_lowercase()
        )
    }
}

#[derive(Debug)]
struct Destination {
    /// Where it is written, for messages.
    at: String,
    namespace: String,
    host: String,
    port: Option<u16>,
    subset: Option<String>,
}

/// Every route destination (http, tcp, tls; mirrors too) of every VirtualService.
fn destinations(docs: &[Value]) -> Vec<Destination> {
    let mut out = Vec::new();
    for vs in of_kind(docs, "VirtualService") {
        let namespace = vs["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let mut push = |at: String, d: &Value| {
            out.push(Destination {
                at: format!("VirtualService {} {at}", name_of(vs)),
                namespace: namespace.clone(),
                host: str_of(&d["host"]).to_string(),
                port: d["port"]["number"].as_u64().map(|n| n as u16),
                subset: d["subset"].as_str().map(str::to_string),
            })
        };
        for kind in ["http", "tcp", "tls"] {
            for (i, rule) in array(&vs["spec"][kind]).iter().enumerate() {
                for (j, route) in array(&rule["route"]).iter().enumerate() {
                    push(
                        format!("spec.{kind}[{i}].route[{j}]"),
                        &route["destination"],
                    );
                }
                if rule["mirror"].is_object() {
                    push(format!("spec.{kind}[{i}].mirror"), &rule["mirror"]);
                }
                for (j, m) in array(&rule["mirrors"]).iter().enumerate() {
                    push(format!("spec.{kind}[{i}].mirrors[{j}]"), &m["destination"]);
                }
            }
        }
    }
    out
}

/// The ServiceEntry whose hosts include `fqdn` (exact first, then a `*.` wildcard).
fn service_entry_for<'a>(entries: &[&'a Value], fqdn: &str) -> Option<&'a Value> {
    let hosts = |se: &'a Value| array(&se["spec"]["hosts"]).iter().map(str_of);
    entries
        .iter()
        .find(|se| hosts(se).any(|h| h.eq_ignore_ascii_case(fqdn)))
        .or_else(|| {
            entries.iter().find(|se| {
                hosts(se).any(|h| {
                    h.strip_prefix('*')
                        .is_some_and(|suffix| fqdn.ends_with(&suffix.to_ascii_lowercase()))
                })
            })
        })
        .copied()
}

/// Labels of `subset` in the DestinationRule for `fqdn`.
fn subset_labels(docs: &[Value], fqdn_host: &str, subset: &str) -> Option<BTreeMap<String, Value>> {
    of_kind(docs, "DestinationRule").into_iter().find_map(|dr| {
        let ns = dr["metadata"]["namespace"].as_str().unwrap_or("default");
        if fqdn(str_of(&dr["spec"]["host"]), ns) != fqdn_host {
            return None;
        }
        array(&dr["spec"]["subsets"])
            .iter()
            .find(|s| s["name"] == subset)
            .map(|s| {
                s["labels"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default()
            })
    })
}

/// The compose services (and container ports) a destination sends traffic to.
fn resolve_to_services(
    docs: &[Value],
    d: &Destination,
    compose: &Compose,
) -> Vec<(String, Option<u16>)> {
    let entries = of_kind(docs, "ServiceEntry");
    let host = fqdn(&d.host, &d.namespace);
    let Some(se) = service_entry_for(&entries, &host) else {
        // No ServiceEntry: DNS of the FQDN, then of the name as written.
        assert!(
            compose.services.contains_key(&d.host),
            "{}: {} has no ServiceEntry and is not a compose service",
            d.at,
            d.host
        );
        return vec![(d.host.clone(), d.port)];
    };
    let spec = &se["spec"];
    assert_eq!(
        spec["resolution"],
        "DNS",
        "{}: ServiceEntry {} for {host} should resolve compose service names by DNS",
        d.at,
        name_of(se)
    );
    let ports = array(&spec["ports"]);
    let port = d.port.or_else(|| match ports {
        [only] => Some(port_of(&only["number"])),
        _ => None,
    });
    let se_port = ports
        .iter()
        .find(|p| Some(port_of(&p["number"])) == port)
        .unwrap_or_else(|| {
            panic!(
                "{}: port {port:?} is not a port of ServiceEntry {}",
                d.at,
                name_of(se)
            )
        });
    let endpoints = array(&spec["endpoints"]);
    if endpoints.is_empty() {
        // DNS of the ServiceEntry's own hosts.
        return array(&spec["hosts"])
            .iter()
            .map(|h| {
                let h = str_of(h);
                assert!(
                    compose.services.contains_key(h),
                    "{}: ServiceEntry {} has no endpoints and its host {h} is not a compose service",
                    d.at,
                    name_of(se)
                );
                (h.to_string(), None)
            })
            .collect();
    }
    let labels = d.subset.as_ref().map(|s| {
        subset_labels(docs, &host, s)
            .unwrap_or_else(|| panic!("{}: no DestinationRule subset {s} for {host}", d.at))
    });
    let chosen: Vec<&Value> = endpoints
        .iter()
        .filter(|ep| {
            labels
                .as_ref()
                .is_none_or(|l| l.iter().all(|(k, v)| &ep["labels"][k] == v))
        })
        .collect();
    assert!(
        !chosen.is_empty(),
        "{}: subset {:?} of {host} selects no endpoint",
        d.at,
        d.subset
    );
    chosen
        .into_iter()
        .map(|ep| {
            let address = str_of(&ep["address"]).to_string();
            // Endpoint port: its own port map by port name > targetPort > port number.
            let container_port = ep["ports"][str_of(&se_port["name"])]
                .as_u64()
                .map(|p| p as u16)
                .or_else(|| se_port["targetPort"].as_u64().map(|p| p as u16))
                .unwrap_or_else(|| port_of(&se_port["number"]));
            (address, Some(container_port))
        })
        .collect()
}

fn gateway_ports(docs: &[Value]) -> BTreeSet<u16> {
    of_kind(docs, "Gateway")
        .into_iter()
        .filter(|gw| {
            gw["spec"]["selector"].as_object().is_some_and(|sel| {
                sel.iter()
                    .all(|(k, v)| GATEWAY_LABELS.iter().any(|(lk, lv)| lk == k && v == lv))
            })
        })
        .flat_map(|gw| array(&gw["spec"]["servers"]).iter())
        .map(|server| port_of(&server["port"]["number"]))
        .collect()
}

#[test]
fn compose_has_a_service_for_every_destination_and_publishes_the_gateway_ports() {
    let compose = compose();
    let docs = documents_under(&compose_config_dir());
    let plan = image_plan();
    let backends: BTreeSet<String> = compose
        .services
        .keys()
        .filter(|s| *s != "tollgate")
        .cloned()
        .collect();

    // Every destination lands on compose services, on a port their container listens on.
    let dests = destinations(&docs);
    assert!(
        dests.len() >= 6,
        "expected the demo's destinations: {dests:?}"
    );
    let mut reached = BTreeSet::new();
    for d in &dests {
        for (service, port) in resolve_to_services(&docs, d, &compose) {
            assert!(
                backends.contains(&service),
                "{}: {} resolves to {service:?}, which is not a compose backend service ({backends:?})",
                d.at,
                d.host
            );
            if let Some(port) = port {
                let exposed = compose.exposed(&service);
                assert!(
                    exposed.contains(&port),
                    "{}: {} reaches {service}:{port}, but the service exposes {exposed:?}",
                    d.at,
                    d.host
                );
            }
            reached.insert(service);
        }
    }
    assert_eq!(
        reached, backends,
        "every backend service should be routed to, and only those"
    );
    assert_eq!(
        compose.depends_on("tollgate"),
        backends,
        "tollgate should depend on every backend"
    );

    // Published ports: the ingress Gateway ports under the image's port plan, plus side ports.
    let gw_ports = gateway_ports(&docs);
    assert_eq!(
        gw_ports,
        BTreeSet::from([80, 443, 31400]),
        "the Gateway ports the compose gateway serves"
    );
    let published = compose.published("tollgate");
    for &(host, container) in &published {
        let gateway = gw_ports.iter().find(|&&g| plan.listen_port(g) == container);
        match gateway {
            Some(&g) => assert_eq!(
                host, g,
                "container port {container} (Gateway port {g}) should be published as {g}"
            ),
            None => {
                assert!(
                    SIDE_PORTS.contains(&container),
                    "published container port {container} is neither a Gateway port's listen port nor 15021/15090"
                );
                assert_eq!(host, container, "side port {container} published as itself");
            }
        }
        assert!(
            plan.expose.contains(&container),
            "published container port {container} is not EXPOSEd by the Dockerfile"
        );
    }
    for g in &gw_ports {
        let listen = plan.listen_port(*g);
        assert!(
            published.iter().any(|(_, c)| *c == listen),
            "Gateway port {g} (listening on {listen}) is not published: {published:?}"
        );
    }

    // Bind mounts exist; the gateway's are the image's config and certs folders; files a
    // service is told about (by environment) are inside its mounts.
    for name in compose.services.keys() {
        let binds = compose.binds(name);
        for (source, target, read_only) in &binds {
            assert!(read_only, "service {name}: mount {source} read-only (:ro)");
            let path = repo().join(source);
            assert!(
                path.exists(),
                "service {name}: bind mount source {source} does not exist"
            );
            for (key, value) in compose.env(name) {
                if let Some(rest) = value.strip_prefix(&format!("{target}/")) {
                    assert!(
                        path.join(rest).is_file(),
                        "service {name}: {key}={value} is not a file in {source}"
                    );
                }
            }
        }
    }
    let binds: BTreeMap<String, String> = compose
        .binds("tollgate")
        .into_iter()
        .map(|(s, t, _)| (trim_dir(&t).to_string(), s))
        .collect();
    assert_eq!(
        binds.get(trim_dir(&plan.config_dir)).map(String::as_str),
        Some("./deploy/compose/config"),
        "deploy/compose/config should be mounted at the image's --config-dir"
    );
    assert_eq!(
        binds.get(trim_dir(&plan.certs_dir)).map(String::as_str),
        Some("./certs"),
        "certs/ should be mounted at the image's --certs-dir"
    );
    // The gateway service: built from this repository, healthy by `tollgate health`.
    let gateway = compose.service("tollgate");
    let context = gateway["build"]
        .as_str()
        .or_else(|| gateway["build"]["context"].as_str())
        .expect("tollgate is built from the repository");
    assert!(
        repo().join(context).join("Dockerfile").is_file(),
        "build context {context} has no Dockerfile"
    );
    assert_eq!(gateway["image"], "tollgate:dev");
    let test: Vec<&str> = array(&gateway["healthcheck"]["test"])
        .iter()
        .map(str_of)
        .collect();
    assert_eq!(test, ["CMD", "tollgate", "health"], "healthcheck");
    assert!(
        gateway["healthcheck"]["interval"].is_string(),
        "the healthcheck should set an interval"
    );
    assert_eq!(
        compose
            .env("tollgate")
            .get("TOLLGATE_ACCESS_LOG")
            .map(String::as_str),
        Some("-"),
        "access log to stdout"
    );
}

// ------------------------------------------------------------------------------------------
// deploy/compose/config against gateway-configs

/// Name → (hosts, ports, endpoint labels) of every ServiceEntry in `file`.
fn service_entry_shapes(file: &Path) -> BTreeMap<String, (Value, Value, Vec<Value>)> {
    let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let docs = json_documents(&text).unwrap_or_else(|e| panic!("{}: {e:?}", file.display()));
    of_kind(&docs, "ServiceEntry")
        .into_iter()
        .map(|se| {
            let spec = &se["spec"];
            let labels = array(&spec["endpoints"])
                .iter()
                .map(|ep| ep["labels"].clone())
                .collect();
            (
                name_of(se),
                (spec["hosts"].clone(), spec["ports"].clone(), labels),
            )
        })
        .collect()
}

#[test]
fn compose_config_is_gateway_configs_with_compose_backends() {
    let original = repo().join("gateway-configs");
    let variant = compose_config_dir();
    let files = files_under(&original);
    assert_eq!(
        files_under(&variant),
        files,
        "deploy/compose/config should hold the same files as gateway-configs/ (run deploy/compose/sync.sh)"
    );
    assert!(files.iter().any(|f| f == Path::new(BACKENDS)));
    for rel in &files {
        let a = fs::read(original.join(rel)).expect("read gateway-configs file");
        let b = fs::read(variant.join(rel)).expect("read compose config file");
        if rel == Path::new(BACKENDS) {
            assert_ne!(a, b, "{BACKENDS} should be the compose variant");
        } else {
            assert!(
                a == b,
                "deploy/compose/config/{} differs from gateway-configs/ (run deploy/compose/sync.sh)",
                rel.display()
            );
        }
    }

    let want = service_entry_shapes(&original.join(BACKENDS));
    let have = service_entry_shapes(&variant.join(BACKENDS));
    assert!(
        !want.is_empty(),
        "gateway-configs/{BACKENDS} has ServiceEntries"
    );
    assert_eq!(
        have, want,
        "the compose {BACKENDS} should keep the ServiceEntries' names, hosts, ports and endpoint labels"
    );
    let text = read(&format!("deploy/compose/config/{BACKENDS}"));
    for se in of_kind(&json_documents(&text).expect("parses"), "ServiceEntry") {
        assert_eq!(se["spec"]["resolution"], "DNS", "{}", name_of(se));
        for ep in array(&se["spec"]["endpoints"]) {
            let address = str_of(&ep["address"]);
            assert!(
                address.parse::<IpAddr>().is_err(),
                "{}: endpoint {address} should be a compose service name",
                name_of(se)
            );
        }
    }

    // The sync script agrees.
    let out = run_bounded(
        Command::new("bash")
            .arg(repo().join("deploy/compose/sync.sh"))
            .arg("--check"),
        b"",
        Duration::from_secs(30),
    )
    .expect("sync.sh --check exits within 30 s");
    assert!(
        out.status.success(),
        "deploy/compose/sync.sh --check reports differences:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tollgate_check_accepts_the_compose_config() {
    let certs = repo().join("certs");
    let certs = certs.to_str().expect("utf-8 path");
    let summary = |out: &CheckOutput| out.stdout.lines().last().unwrap_or_default().to_string();
    let compose = check(&compose_config_dir(), &["--no-dns", "--certs-dir", certs]);
    assert!(
        compose.success(),
        "tollgate check on deploy/compose/config failed:\n{}{}",
        compose.stdout,
        compose.stderr
    );
    let bundled = check(
        &repo().join("gateway-configs"),
        &["--no-dns", "--certs-dir", certs],
    );
    assert!(
        bundled.success(),
        "tollgate check on gateway-configs failed"
    );
    assert!(
        summary(&compose).starts_with("0 error(s)"),
        "{}",
        compose.stdout
    );
    assert_eq!(
        summary(&compose),
        summary(&bundled),
        "the compose config should have no diagnostics the bundled one lacks:\n{}",
        compose.stdout
    );
}
