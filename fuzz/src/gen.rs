//! Structure-aware configs: `arbitrary` builds Gateway / VirtualService / DestinationRule /
//! ServiceEntry / Secret shapes from vocabularies of the values that matter (the demo's hosts,
//! ports, TLS modes, subsets, credentials, regexes) mixed with arbitrary odd strings, numbers
//! and wrongly typed fields; [`Scenario::files`] renders them as YAML files.

use arbitrary::Arbitrary;

use crate::yaml::{document, str, Node};

/// A string: mostly from the field's vocabulary, sometimes anything.
#[derive(Arbitrary, Debug, Clone)]
pub enum S {
    V(u8),
    Odd(String),
}

impl S {
    fn pick(&self, vocab: &[&str]) -> String {
        match self {
            S::V(i) => vocab[*i as usize % vocab.len()].to_string(),
            S::Odd(s) => s.chars().take(40).collect(),
        }
    }

    fn node(&self, vocab: &[&str]) -> Node {
        str(self.pick(vocab))
    }
}

/// A number: mostly from the field's vocabulary, sometimes anything.
#[derive(Arbitrary, Debug, Clone)]
pub enum N {
    V(u8),
    Any(i64),
}

impl N {
    fn pick(&self, vocab: &[i64]) -> i64 {
        match self {
            N::V(i) => vocab[*i as usize % vocab.len()],
            N::Any(n) => *n,
        }
    }

    fn node(&self, vocab: &[i64]) -> Node {
        Node::Int(self.pick(vocab))
    }
}

/// A value for a field of the wrong name or type.
#[derive(Arbitrary, Debug, Clone)]
pub enum Junk {
    Plain(S),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    Seq(Vec<S>),
    Map(Vec<(S, S)>),
}

impl Junk {
    fn node(&self) -> Node {
        match self {
            Junk::Plain(s) => Node::Plain(s.pick(PLAIN)),
            Junk::Int(n) => Node::Int(*n),
            Junk::Float(f) if f.is_finite() => Node::Float(*f),
            Junk::Float(_) => Node::Plain(".nan".into()),
            Junk::Bool(b) => Node::Bool(*b),
            Junk::Null => Node::Null,
            Junk::Seq(items) => Node::Seq(items.iter().take(4).map(|s| s.node(PLAIN)).collect()),
            Junk::Map(entries) => Node::pairs(
                entries
                    .iter()
                    .take(4)
                    .map(|(k, v)| (k.pick(FIELDS), v.node(PLAIN)))
                    .collect(),
            ),
        }
    }
}

/// Extra `field: junk` entries: a known field with a wrong type, or an unknown field.
#[derive(Arbitrary, Debug, Clone, Default)]
pub struct Extra(Vec<(S, Junk)>);

impl Extra {
    fn apply(&self, node: &mut Node) {
        for (key, value) in self.0.iter().take(3) {
            node.put(&key.pick(FIELDS), value.node());
        }
    }
}

const HOSTS: &[&str] = &[
    "webapp.istioinaction.io",
    "catalog.istioinaction.io",
    "*.istioinaction.io",
    "*",
    "webapp",
    "catalog.istioinaction.svc.cluster.local",
    "istioinaction/*",
    "*/webapp.istioinaction.io",
    "./catalog.istioinaction.io",
    "simple-sni-1.istioinaction.io",
    "WEBAPP.Istioinaction.IO",
    "10.0.0.1",
    "[::1]",
    "a..b",
    "*.*.io",
    "*.io",
    "webapp.istioinaction.io:80",
    "",
];
const NAMES: &[&str] = &[
    "webapp",
    "catalog",
    "coolstore-gateway",
    "gw",
    "a",
    "Upper",
    "dot.ted",
    "",
];
const NAMESPACES: &[&str] = &["istioinaction", "istio-system", "default", "other", "."];
const GATEWAY_REFS: &[&str] = &[
    "coolstore-gateway",
    "istioinaction/coolstore-gateway",
    "istio-system/gw",
    "mesh",
    "gw",
    "missing/x",
    "a",
];
const PROTOCOLS: &[&str] = &[
    "HTTP", "HTTPS", "HTTP2", "GRPC", "TCP", "TLS", "MONGO", "http", "GRPC-WEB", "",
];
const TLS_MODES: &[&str] = &[
    "SIMPLE",
    "MUTUAL",
    "PASSTHROUGH",
    "AUTO_PASSTHROUGH",
    "ISTIO_MUTUAL",
    "OPTIONAL_MUTUAL",
    "simple",
    "",
];
const CREDENTIALS: &[&str] = &[
    "webapp-credential",
    "catalog-credential",
    "mtls-credential",
    "missing-credential",
    "ca",
    "../certs/webapp-credential",
    "kubernetes://webapp-credential",
    "",
];
const PORTS: &[i64] = &[80, 443, 8080, 31400, 2701, 9443, 0, 65535, 65536, -1];
const DEST_HOSTS: &[&str] = &[
    "webapp",
    "catalog",
    "webapp.istioinaction.svc.cluster.local",
    "catalog.istioinaction.svc.cluster.local",
    "tcp-echo-service.istioinaction.svc.cluster.local",
    "simple-tls-service-1",
    "catalog.istioinaction.io",
    "*.istioinaction.io",
    "missing",
    "",
];
const SUBSETS: &[&str] = &["version-v1", "version-v2", "v1", "missing", ""];
const LABEL_KEYS: &[&str] = &["version", "app", "istio", ""];
const LABEL_VALUES: &[&str] = &["v1", "v2", "ingressgateway", "my-user-gateway", ""];
const URIS: &[&str] = &["/", "/api", "/api/v1", "/items", "", "/%2e%2e/x", "/API"];
const REGEXES: &[&str] = &[
    "/v[0-9]+",
    ".*",
    "(a|b)+",
    "[",
    "(?i)abc",
    "a{0,1000}",
    "\\p{L}+",
    "^/x$",
    "\\d{100}{100}",
    "",
];
const HEADERS: &[&str] = &[
    "x-dark-launch",
    "user-agent",
    ":authority",
    "Host",
    "x-Bad Name",
    "cookie",
    "",
];
const METHODS: &[&str] = &["GET", "POST", "get", "CONNECT", ""];
const WEIGHTS: &[i64] = &[0, 1, 20, 80, 100, 50, -5, i64::MAX];
const DURATIONS: &[&str] = &[
    "1s", "0.5s", "100ms", "0s", "-1s", "1h", "5", "1.5m", "", "xyz",
];
const LB: &[&str] = &[
    "ROUND_ROBIN",
    "LEAST_REQUEST",
    "RANDOM",
    "PASSTHROUGH",
    "LEAST_CONN",
    "x",
];
const CLIENT_TLS: &[&str] = &["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL", "x"];
const RESOLUTIONS: &[&str] = &["STATIC", "DNS", "NONE", "DNS_ROUND_ROBIN", "x"];
const ADDRESSES: &[&str] = &[
    "127.0.0.1",
    "::1",
    "localhost",
    "10.0.0.1",
    "not an ip",
    "unix:///x",
    "127.0.0.1:80",
    "",
];
const SECRET_TYPES: &[&str] = &["kubernetes.io/tls", "Opaque", "istio.io/cacert", ""];
const PLAIN: &[&str] = &[
    "80",
    "true",
    "null",
    "~",
    "a: b",
    "[1, 2",
    "{}",
    "-",
    "*",
    "&a",
    "*a",
    "!!binary aGk=",
    "0x10",
    "1e3",
    ".inf",
    "'",
    "\"",
    "# c",
    "| x",
    "",
];
/// Field names of the model, for wrongly typed and misplaced fields.
const FIELDS: &[&str] = &[
    "hosts",
    "port",
    "number",
    "protocol",
    "name",
    "tls",
    "mode",
    "credentialName",
    "http",
    "tcp",
    "match",
    "route",
    "destination",
    "host",
    "subset",
    "weight",
    "subsets",
    "labels",
    "trafficPolicy",
    "endpoints",
    "resolution",
    "selector",
    "gateways",
    "exportTo",
    "uri",
    "headers",
    "timeout",
    "retries",
    "fault",
    "redirect",
    "directResponse",
    "rewrite",
    "corsPolicy",
    "mirror",
    "sniHosts",
    "bind",
    "httpsRedirect",
    "x-unknown",
];

/// Files as `(name, YAML)`.
pub type Files = Vec<(String, String)>;
/// A subset: name, labels, policy.
pub type SubsetGen = (S, Vec<(S, S)>, Option<TrafficPolicy>);
/// An endpoint: address, ports by name, labels, weight.
pub type EndpointGen = (S, Vec<(S, N)>, Vec<(S, S)>, Option<N>);

/// Some number of documents over some files, then one file edited (a reload).
#[derive(Arbitrary, Debug)]
pub struct Scenario {
    pub files: Vec<Vec<Doc>>,
    pub edit: Option<(u8, Vec<Doc>)>,
}

impl Scenario {
    /// The files before and after the edit, as `(name, YAML)`.
    pub fn files(&self) -> (Files, Files) {
        let before: Files = self
            .files
            .iter()
            .take(4)
            .enumerate()
            .map(|(i, docs)| (format!("{i}.yaml"), render_file(docs)))
            .collect();
        let mut after = before.clone();
        if let Some((which, docs)) = &self.edit {
            let i = *which as usize % (after.len() + 1);
            let entry = (format!("{i}.yaml"), render_file(docs));
            match after.get_mut(i) {
                Some(slot) => *slot = entry,
                None => after.push(entry),
            }
        }
        (before, after)
    }
}

pub fn render_file(docs: &[Doc]) -> String {
    let mut out = String::new();
    for doc in docs.iter().take(6) {
        out.push_str("---\n");
        out.push_str(&document(&doc.node()));
    }
    out
}

#[derive(Arbitrary, Debug)]
pub enum Doc {
    Gateway(Meta, Box<Gateway>),
    VirtualService(Meta, Box<VirtualService>),
    DestinationRule(Meta, Box<DestinationRule>),
    ServiceEntry(Meta, Box<ServiceEntry>),
    Secret(Meta, Secret),
    Other(Meta, S, Extra),
}

impl Doc {
    pub fn node(&self) -> Node {
        let (kind, meta, spec) = match self {
            Doc::Gateway(m, g) => ("Gateway", m, g.node()),
            Doc::VirtualService(m, v) => ("VirtualService", m, v.node()),
            Doc::DestinationRule(m, d) => ("DestinationRule", m, d.node()),
            Doc::ServiceEntry(m, s) => ("ServiceEntry", m, s.node()),
            Doc::Secret(m, s) => return s.node(m),
            Doc::Other(m, kind, extra) => {
                let mut spec = Node::map();
                extra.apply(&mut spec);
                let kind = kind.pick(&["Telemetry", "WorkloadEntry", "Sidecar", "List", ""]);
                return header(&kind, m.api_version, m).with("spec", spec);
            }
        };
        header(kind, meta.api_version, meta).with("spec", spec)
    }
}

fn header(kind: &str, api: u8, meta: &Meta) -> Node {
    let group = match kind {
        "Secret" => "v1",
        "Telemetry" => "telemetry.istio.io/v1",
        _ => [
            "networking.istio.io/v1",
            "networking.istio.io/v1beta1",
            "networking.istio.io/v1alpha3",
            "networking.istio.io/v2",
            "apps/v1",
        ][api as usize % 5],
    };
    Node::map()
        .with("apiVersion", str(group))
        .with("kind", str(kind))
        .with("metadata", meta.node())
}

#[derive(Arbitrary, Debug)]
pub struct Meta {
    pub api_version: u8,
    pub name: S,
    pub namespace: Option<S>,
    pub created: Option<u8>,
    pub labels: Vec<(S, S)>,
}

impl Meta {
    fn node(&self) -> Node {
        let mut m = Node::map().with("name", self.name.node(NAMES));
        m.put_opt(
            "namespace",
            self.namespace.as_ref().map(|n| n.node(NAMESPACES)),
        );
        m.put_opt(
            "creationTimestamp",
            self.created
                .map(|c| str(format!("2024-01-01T00:00:{:02}Z", c % 60))),
        );
        if !self.labels.is_empty() {
            m.put("labels", labels(&self.labels));
        }
        m
    }
}

fn labels(pairs: &[(S, S)]) -> Node {
    Node::pairs(
        pairs
            .iter()
            .take(3)
            .map(|(k, v)| (k.pick(LABEL_KEYS), v.node(LABEL_VALUES)))
            .collect(),
    )
}

fn list(items: &[S], vocab: &[&str]) -> Node {
    Node::Seq(items.iter().take(4).map(|s| s.node(vocab)).collect())
}

#[derive(Arbitrary, Debug)]
pub struct Gateway {
    pub selector: Vec<(S, S)>,
    pub servers: Vec<Server>,
    pub extra: Extra,
}

impl Gateway {
    fn node(&self) -> Node {
        let selector = if self.selector.is_empty() {
            Node::map().with("istio", str("ingressgateway"))
        } else {
            labels(&self.selector)
        };
        let servers = self.servers.iter().take(4).map(Server::node).collect();
        let mut n = Node::map()
            .with("selector", selector)
            .with("servers", Node::Seq(servers));
        self.extra.apply(&mut n);
        n
    }
}

#[derive(Arbitrary, Debug)]
pub struct Server {
    pub number: N,
    pub protocol: S,
    pub name: S,
    pub target_port: Option<N>,
    pub bind: Option<S>,
    pub hosts: Vec<S>,
    pub tls: Option<ServerTls>,
    pub extra: Extra,
}

impl Server {
    fn node(&self) -> Node {
        let mut port = Node::map()
            .with("number", self.number.node(PORTS))
            .with(
                "name",
                self.name.node(&["http", "https", "tcp", "tls", "h", ""]),
            )
            .with("protocol", self.protocol.node(PROTOCOLS));
        port.put_opt(
            "targetPort",
            self.target_port.as_ref().map(|p| p.node(PORTS)),
        );
        let mut n = Node::map()
            .with("port", port)
            .with("hosts", list(&self.hosts, HOSTS));
        n.put_opt(
            "bind",
            self.bind
                .as_ref()
                .map(|b| b.node(&["0.0.0.0", "127.0.0.1", "::", "unix:///x", "x"])),
        );
        n.put_opt("tls", self.tls.as_ref().map(ServerTls::node));
        self.extra.apply(&mut n);
        n
    }
}

#[derive(Arbitrary, Debug)]
pub struct ServerTls {
    pub mode: S,
    pub credential_name: Option<S>,
    pub https_redirect: Option<bool>,
    pub min_version: Option<S>,
    pub subject_alt_names: Vec<S>,
    pub spki: Vec<S>,
    pub extra: Extra,
}

impl ServerTls {
    fn node(&self) -> Node {
        let mut n = Node::map().with("mode", self.mode.node(TLS_MODES));
        n.put_opt(
            "credentialName",
            self.credential_name.as_ref().map(|c| c.node(CREDENTIALS)),
        );
        n.put_opt("httpsRedirect", self.https_redirect.map(Node::Bool));
        n.put_opt(
            "minProtocolVersion",
            self.min_version
                .as_ref()
                .map(|v| v.node(&["TLSV1_2", "TLSV1_3", "TLSV1_0", "TLS_AUTO", "x"])),
        );
        if !self.subject_alt_names.is_empty() {
            n.put("subjectAltNames", list(&self.subject_alt_names, HOSTS));
        }
        if !self.spki.is_empty() {
            n.put(
                "verifyCertificateSpki",
                list(&self.spki, &["AAAA", "not base64", ""]),
            );
        }
        self.extra.apply(&mut n);
        n
    }
}

#[derive(Arbitrary, Debug)]
pub struct VirtualService {
    pub hosts: Vec<S>,
    pub gateways: Vec<S>,
    pub export_to: Vec<S>,
    pub http: Vec<HttpRoute>,
    pub tcp: Vec<L4Route>,
    pub tls: Vec<L4Route>,
    pub extra: Extra,
}

impl VirtualService {
    fn node(&self) -> Node {
        let mut n = Node::map()
            .with("hosts", list(&self.hosts, HOSTS))
            .with("gateways", list(&self.gateways, GATEWAY_REFS));
        if !self.export_to.is_empty() {
            n.put(
                "exportTo",
                list(&self.export_to, &["*", ".", "istio-system", "x"]),
            );
        }
        if !self.http.is_empty() {
            n.put(
                "http",
                Node::Seq(self.http.iter().take(4).map(HttpRoute::node).collect()),
            );
        }
        for (key, routes, sni) in [("tcp", &self.tcp, false), ("tls", &self.tls, true)] {
            if !routes.is_empty() {
                let routes = routes.iter().take(3).map(|r| r.node(sni)).collect();
                n.put(key, Node::Seq(routes));
            }
        }
        self.extra.apply(&mut n);
        n
    }
}

#[derive(Arbitrary, Debug)]
pub struct HttpRoute {
    pub name: Option<S>,
    pub matches: Vec<HttpMatch>,
    pub route: Vec<WeightedDestination>,
    pub action: Option<HttpAction>,
    pub timeout: Option<S>,
    pub retries: Option<(N, Option<S>, Option<S>)>,
    pub fault: Option<(Option<S>, Option<N>, Option<f64>)>,
    pub rewrite: Option<(Option<S>, Option<S>)>,
    pub headers: Option<HeaderOps>,
    pub extra: Extra,
}

#[derive(Arbitrary, Debug)]
pub enum HttpAction {
    Redirect {
        uri: Option<S>,
        authority: Option<S>,
        port: Option<N>,
        derive_port: bool,
        scheme: Option<S>,
        code: Option<N>,
    },
    Direct {
        status: N,
        body: Option<S>,
    },
}

impl HttpRoute {
    fn node(&self) -> Node {
        let mut n = Node::map();
        n.put_opt("name", self.name.as_ref().map(|s| s.node(NAMES)));
        if !self.matches.is_empty() {
            let matches = self.matches.iter().take(3).map(HttpMatch::node).collect();
            n.put("match", Node::Seq(matches));
        }
        if !self.route.is_empty() {
            let route = self.route.iter().take(4).map(|d| d.node(true)).collect();
            n.put("route", Node::Seq(route));
        }
        match &self.action {
            Some(HttpAction::Redirect {
                uri,
                authority,
                port,
                derive_port,
                scheme,
                code,
            }) => {
                let mut r = Node::map();
                r.put_opt("uri", uri.as_ref().map(|u| u.node(URIS)));
                r.put_opt("authority", authority.as_ref().map(|a| a.node(HOSTS)));
                r.put_opt("port", port.as_ref().map(|p| p.node(PORTS)));
                if *derive_port {
                    r.put("derivePort", str("FROM_REQUEST_PORT"));
                }
                r.put_opt(
                    "scheme",
                    scheme
                        .as_ref()
                        .map(|s| s.node(&["http", "https", "ftp", ""])),
                );
                r.put_opt(
                    "redirectCode",
                    code.as_ref()
                        .map(|c| c.node(&[301, 302, 307, 308, 200, 0, 999])),
                );
                n.put("redirect", r);
            }
            Some(HttpAction::Direct { status, body }) => {
                let mut d = Node::map().with("status", status.node(&[200, 404, 503, 0, 99, 1000]));
                d.put_opt(
                    "body",
                    body.as_ref()
                        .map(|b| Node::map().with("string", b.node(&["ok", "", "\u{1f600}"]))),
                );
                n.put("directResponse", d);
            }
            None => {}
        }
        n.put_opt("timeout", self.timeout.as_ref().map(|t| t.node(DURATIONS)));
        if let Some((attempts, per_try, retry_on)) = &self.retries {
            let mut r = Node::map().with("attempts", attempts.node(&[0, 1, 3, -1, 1000]));
            r.put_opt("perTryTimeout", per_try.as_ref().map(|t| t.node(DURATIONS)));
            r.put_opt(
                "retryOn",
                retry_on
                    .as_ref()
                    .map(|r| r.node(&["5xx", "gateway-error,connect-failure", "503", "x", ""])),
            );
            n.put("retries", r);
        }
        if let Some((delay, abort, pct)) = &self.fault {
            let percentage = pct.filter(|p| p.is_finite()).map(Node::Float);
            let mut f = Node::map();
            if let Some(d) = delay {
                let mut delay = Node::map().with("fixedDelay", d.node(DURATIONS));
                delay.put_opt(
                    "percentage",
                    percentage.clone().map(|p| Node::map().with("value", p)),
                );
                f.put("delay", delay);
            }
            if let Some(a) = abort {
                let mut abort = Node::map().with("httpStatus", a.node(&[503, 500, 0, 600]));
                abort.put_opt(
                    "percentage",
                    percentage.map(|p| Node::map().with("value", p)),
                );
                f.put("abort", abort);
            }
            n.put("fault", f);
        }
        if let Some((uri, authority)) = &self.rewrite {
            let mut r = Node::map();
            r.put_opt("uri", uri.as_ref().map(|u| u.node(URIS)));
            r.put_opt("authority", authority.as_ref().map(|a| a.node(HOSTS)));
            n.put("rewrite", r);
        }
        n.put_opt("headers", self.headers.as_ref().map(HeaderOps::node));
        self.extra.apply(&mut n);
        n
    }
}

#[derive(Arbitrary, Debug)]
pub struct HeaderOps {
    pub set: Vec<(S, S)>,
    pub add: Vec<(S, S)>,
    pub remove: Vec<S>,
}

impl HeaderOps {
    fn node(&self) -> Node {
        let pairs = |p: &[(S, S)]| {
            Node::pairs(
                p.iter()
                    .take(3)
                    .map(|(k, v)| (k.pick(HEADERS), v.node(&["v", "", "a\u{7f}b", "%REQ(x)%"])))
                    .collect(),
            )
        };
        let ops = Node::map()
            .with("set", pairs(&self.set))
            .with("add", pairs(&self.add))
            .with("remove", list(&self.remove, HEADERS));
        Node::map()
            .with("request", ops.clone())
            .with("response", ops)
    }
}

/// An Istio `StringMatch`: one of exact, prefix, regex (or several, or none).
#[derive(Arbitrary, Debug)]
pub struct StrMatch {
    pub exact: Option<S>,
    pub prefix: Option<S>,
    pub regex: Option<S>,
}

impl StrMatch {
    fn node(&self, vocab: &[&str]) -> Node {
        let mut n = Node::map();
        n.put_opt("exact", self.exact.as_ref().map(|s| s.node(vocab)));
        n.put_opt("prefix", self.prefix.as_ref().map(|s| s.node(vocab)));
        n.put_opt("regex", self.regex.as_ref().map(|s| s.node(REGEXES)));
        n
    }
}

#[derive(Arbitrary, Debug)]
pub struct HttpMatch {
    pub name: Option<S>,
    pub uri: Option<StrMatch>,
    pub method: Option<StrMatch>,
    pub scheme: Option<StrMatch>,
    pub authority: Option<StrMatch>,
    pub headers: Vec<(S, StrMatch)>,
    pub without_headers: Vec<(S, StrMatch)>,
    pub query: Vec<(S, StrMatch)>,
    pub ignore_uri_case: bool,
    pub port: Option<N>,
    pub gateways: Vec<S>,
}

impl HttpMatch {
    fn node(&self) -> Node {
        let mut n = Node::map();
        n.put_opt("name", self.name.as_ref().map(|s| s.node(NAMES)));
        n.put_opt("uri", self.uri.as_ref().map(|m| m.node(URIS)));
        n.put_opt("method", self.method.as_ref().map(|m| m.node(METHODS)));
        n.put_opt(
            "scheme",
            self.scheme.as_ref().map(|m| m.node(&["http", "https", ""])),
        );
        n.put_opt("authority", self.authority.as_ref().map(|m| m.node(HOSTS)));
        let named = |pairs: &[(S, StrMatch)], names: &[&str]| {
            Node::pairs(
                pairs
                    .iter()
                    .take(3)
                    .map(|(k, m)| (k.pick(names), m.node(&["v2", "", "a,b", "Mozilla"])))
                    .collect(),
            )
        };
        if !self.headers.is_empty() {
            n.put("headers", named(&self.headers, HEADERS));
        }
        if !self.without_headers.is_empty() {
            n.put("withoutHeaders", named(&self.without_headers, HEADERS));
        }
        if !self.query.is_empty() {
            n.put("queryParams", named(&self.query, &["q", "a", "", "x y"]));
        }
        if self.ignore_uri_case {
            n.put("ignoreUriCase", Node::Bool(true));
        }
        n.put_opt("port", self.port.as_ref().map(|p| p.node(PORTS)));
        if !self.gateways.is_empty() {
            n.put("gateways", list(&self.gateways, GATEWAY_REFS));
        }
        n
    }
}

#[derive(Arbitrary, Debug)]
pub struct WeightedDestination {
    pub host: S,
    pub subset: Option<S>,
    pub port: Option<N>,
    pub weight: Option<N>,
    pub headers: Option<HeaderOps>,
}

impl WeightedDestination {
    fn node(&self, http: bool) -> Node {
        let mut d = Node::map().with("host", self.host.node(DEST_HOSTS));
        d.put_opt("subset", self.subset.as_ref().map(|s| s.node(SUBSETS)));
        d.put_opt(
            "port",
            self.port
                .as_ref()
                .map(|p| Node::map().with("number", p.node(&[80, 2701, 9443, 8000, 0]))),
        );
        let mut n = Node::map().with("destination", d);
        n.put_opt("weight", self.weight.as_ref().map(|w| w.node(WEIGHTS)));
        if http {
            n.put_opt("headers", self.headers.as_ref().map(HeaderOps::node));
        }
        n
    }
}

/// A `tcp` or `tls` route.
#[derive(Arbitrary, Debug)]
pub struct L4Route {
    pub sni_hosts: Vec<S>,
    pub port: Option<N>,
    pub gateways: Vec<S>,
    pub route: Vec<WeightedDestination>,
}

impl L4Route {
    fn node(&self, sni: bool) -> Node {
        let mut m = Node::map();
        if sni {
            m.put("sniHosts", list(&self.sni_hosts, HOSTS));
        }
        m.put_opt("port", self.port.as_ref().map(|p| p.node(PORTS)));
        if !self.gateways.is_empty() {
            m.put("gateways", list(&self.gateways, GATEWAY_REFS));
        }
        let route = self.route.iter().take(3).map(|d| d.node(false)).collect();
        Node::map()
            .with("match", Node::Seq(vec![m]))
            .with("route", Node::Seq(route))
    }
}

#[derive(Arbitrary, Debug)]
pub struct DestinationRule {
    pub host: S,
    pub policy: Option<TrafficPolicy>,
    pub subsets: Vec<SubsetGen>,
    pub extra: Extra,
}

impl DestinationRule {
    fn node(&self) -> Node {
        let mut n = Node::map().with("host", self.host.node(DEST_HOSTS));
        n.put_opt(
            "trafficPolicy",
            self.policy.as_ref().map(TrafficPolicy::node),
        );
        if !self.subsets.is_empty() {
            let subsets = self
                .subsets
                .iter()
                .take(3)
                .map(|(name, l, policy)| {
                    let mut s = Node::map()
                        .with("name", name.node(SUBSETS))
                        .with("labels", labels(l));
                    s.put_opt("trafficPolicy", policy.as_ref().map(TrafficPolicy::node));
                    s
                })
                .collect();
            n.put("subsets", Node::Seq(subsets));
        }
        self.extra.apply(&mut n);
        n
    }
}

#[derive(Arbitrary, Debug)]
pub struct TrafficPolicy {
    pub lb: Option<S>,
    pub hash_header: Option<S>,
    pub max_connections: Option<N>,
    pub max_pending: Option<N>,
    pub max_requests_per_connection: Option<N>,
    pub connect_timeout: Option<S>,
    pub idle_timeout: Option<S>,
    pub consecutive_errors: Option<N>,
    pub interval: Option<S>,
    pub ejection: Option<S>,
    pub max_ejection_percent: Option<N>,
    pub tls: Option<(S, Option<S>, Option<S>)>,
    pub port_level: Vec<(N, Option<S>)>,
    pub extra: Extra,
}

impl TrafficPolicy {
    fn node(&self) -> Node {
        let counts: &[i64] = &[0, 1, 10, 100, -1, 1 << 40];
        let mut n = Node::map();
        if self.lb.is_some() || self.hash_header.is_some() {
            let mut lb = Node::map();
            lb.put_opt("simple", self.lb.as_ref().map(|s| s.node(LB)));
            lb.put_opt(
                "consistentHash",
                self.hash_header
                    .as_ref()
                    .map(|h| Node::map().with("httpHeaderName", h.node(HEADERS))),
            );
            n.put("loadBalancer", lb);
        }
        let mut tcp = Node::map();
        tcp.put_opt(
            "maxConnections",
            self.max_connections.as_ref().map(|c| c.node(counts)),
        );
        tcp.put_opt(
            "connectTimeout",
            self.connect_timeout.as_ref().map(|t| t.node(DURATIONS)),
        );
        let mut http = Node::map();
        http.put_opt(
            "http1MaxPendingRequests",
            self.max_pending.as_ref().map(|c| c.node(counts)),
        );
        http.put_opt(
            "maxRequestsPerConnection",
            self.max_requests_per_connection
                .as_ref()
                .map(|c| c.node(counts)),
        );
        http.put_opt(
            "idleTimeout",
            self.idle_timeout.as_ref().map(|t| t.node(DURATIONS)),
        );
        n.put(
            "connectionPool",
            Node::map().with("tcp", tcp).with("http", http),
        );
        if self.consecutive_errors.is_some() || self.interval.is_some() || self.ejection.is_some() {
            let mut o = Node::map();
            o.put_opt(
                "consecutive5xxErrors",
                self.consecutive_errors.as_ref().map(|c| c.node(counts)),
            );
            o.put_opt(
                "interval",
                self.interval.as_ref().map(|t| t.node(DURATIONS)),
            );
            o.put_opt(
                "baseEjectionTime",
                self.ejection.as_ref().map(|t| t.node(DURATIONS)),
            );
            o.put_opt(
                "maxEjectionPercent",
                self.max_ejection_percent
                    .as_ref()
                    .map(|c| c.node(&[0, 10, 100, 101, -1])),
            );
            n.put("outlierDetection", o);
        }
        if let Some((mode, sni, credential)) = &self.tls {
            let mut t = Node::map().with("mode", mode.node(CLIENT_TLS));
            t.put_opt("sni", sni.as_ref().map(|s| s.node(HOSTS)));
            t.put_opt(
                "credentialName",
                credential.as_ref().map(|c| c.node(CREDENTIALS)),
            );
            n.put("tls", t);
        }
        if !self.port_level.is_empty() {
            let ports = self
                .port_level
                .iter()
                .take(2)
                .map(|(port, lb)| {
                    let mut p =
                        Node::map().with("port", Node::map().with("number", port.node(PORTS)));
                    p.put_opt(
                        "loadBalancer",
                        lb.as_ref().map(|l| Node::map().with("simple", l.node(LB))),
                    );
                    p
                })
                .collect();
            n.put("portLevelSettings", Node::Seq(ports));
        }
        self.extra.apply(&mut n);
        n
    }
}

#[derive(Arbitrary, Debug)]
pub struct ServiceEntry {
    pub hosts: Vec<S>,
    pub ports: Vec<(N, S, S, Option<N>)>,
    pub resolution: S,
    pub endpoints: Vec<EndpointGen>,
    pub export_to: Vec<S>,
    pub extra: Extra,
}

impl ServiceEntry {
    fn node(&self) -> Node {
        let ports = self
            .ports
            .iter()
            .take(3)
            .map(|(number, name, protocol, target)| {
                let mut p = Node::map()
                    .with("number", number.node(PORTS))
                    .with("name", name.node(&["http", "tcp", "tls", "h", ""]))
                    .with("protocol", protocol.node(PROTOCOLS));
                p.put_opt(
                    "targetPort",
                    target.as_ref().map(|t| t.node(&[9081, 9082, 0, 70000])),
                );
                p
            })
            .collect();
        let endpoints = self
            .endpoints
            .iter()
            .take(3)
            .map(|(address, ports, l, weight)| {
                let ports = Node::pairs(
                    ports
                        .iter()
                        .take(2)
                        .map(|(name, n)| {
                            (
                                name.pick(&["http", "tcp", "tls", ""]),
                                n.node(&[9081, 9082, 9083, 9090, 0, 65536]),
                            )
                        })
                        .collect(),
                );
                let mut e = Node::map()
                    .with("address", address.node(ADDRESSES))
                    .with("ports", ports)
                    .with("labels", labels(l));
                e.put_opt("weight", weight.as_ref().map(|w| w.node(&[0, 1, 100, -1])));
                e
            })
            .collect();
        let mut n = Node::map()
            .with("hosts", list(&self.hosts, DEST_HOSTS))
            .with("location", str("MESH_EXTERNAL"))
            .with("ports", Node::Seq(ports))
            .with("resolution", self.resolution.node(RESOLUTIONS))
            .with("endpoints", Node::Seq(endpoints));
        if !self.export_to.is_empty() {
            n.put(
                "exportTo",
                list(&self.export_to, &["*", ".", "istio-system"]),
            );
        }
        self.extra.apply(&mut n);
        n
    }
}

/// A TLS Secret: the demo's real PEM files, or odd bytes.
#[derive(Arbitrary, Debug)]
pub struct Secret {
    pub secret_type: S,
    pub cert: Pem,
    pub key: Pem,
    pub ca: Option<Pem>,
    pub base64: bool,
}

#[derive(Arbitrary, Debug)]
pub enum Pem {
    Demo(u8),
    Odd(String),
}

impl Pem {
    fn text(&self, key: bool) -> String {
        const DIRS: &[&str] = &["webapp-credential", "catalog-credential", "mtls-credential"];
        match self {
            Pem::Demo(i) => {
                let dir = DIRS[*i as usize % DIRS.len()];
                let file = match (key, i / 3 % 3) {
                    (_, 2) => "ca.crt",
                    (true, _) => "tls.key",
                    (false, _) => "tls.crt",
                };
                demo_pem(dir, file)
            }
            Pem::Odd(s) => format!("-----BEGIN CERTIFICATE-----\n{s}\n-----END CERTIFICATE-----\n"),
        }
    }
}

/// A demo credential file, read once per process.
fn demo_pem(dir: &str, file: &str) -> String {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let path = crate::certs_dir().join(dir).join(file);
    let key = path.display().to_string();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    cache
        .entry(key)
        .or_insert_with(|| std::fs::read_to_string(&path).unwrap_or_default())
        .clone()
}

impl Secret {
    fn node(&self, meta: &Meta) -> Node {
        let mut data = vec![
            ("tls.crt", self.cert.text(false)),
            ("tls.key", self.key.text(true)),
        ];
        if let Some(ca) = &self.ca {
            data.push(("ca.crt", ca.text(false)));
        }
        let (field, data) = if self.base64 {
            let entries = data
                .into_iter()
                .map(|(k, v)| (k.to_string(), str(base64(v.as_bytes()))))
                .collect();
            ("data", Node::pairs(entries))
        } else {
            let entries = data
                .into_iter()
                .map(|(k, v)| (k.to_string(), str(v)))
                .collect();
            ("stringData", Node::pairs(entries))
        };
        Node::map()
            .with("apiVersion", str("v1"))
            .with("kind", str("Secret"))
            .with("metadata", meta.node())
            .with("type", self.secret_type.node(SECRET_TYPES))
            .with(field, data)
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(super::base64(b"hello"), "aGVsbG8=");
        assert_eq!(super::base64(b"hi"), "aGk=");
        assert_eq!(super::base64(b"abc"), "YWJj");
    }
}
