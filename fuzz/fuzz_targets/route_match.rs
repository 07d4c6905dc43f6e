//! The route matcher: arbitrary requests against a compiled route table (the bundled demo plus
//! a table using every match condition, or a small generated config). For every route table of
//! the snapshot: virtual-host lookup is case- and port-insensitive and returns one of the
//! table's hosts; `find_route` returns the first route whose matcher holds, which belongs to the
//! host; `mismatch` agrees with `matches`; path normalization is idempotent; and `explain`
//! (which `tollgate explain` and `/debug/route` use) names the same route as the data path.
#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use tollgate::explain::{explain, Query};
use tollgate::route::{RequestView, RouteTable};
use tollgate::snapshot::tls::TlsAction;
use tollgate::snapshot::{ListenerKind, Snapshot};
use tollgate_fuzz::gen::{render_file, Doc};

#[derive(Arbitrary, Debug)]
struct Input {
    generated: Option<Vec<Doc>>,
    requests: Vec<Req>,
}

#[derive(Arbitrary, Debug)]
struct Req {
    port: Option<u8>,
    scheme: u8,
    sni: Option<Pick>,
    authority: Pick,
    authority_port: Option<u16>,
    path: Pick,
    query: Option<Pick>,
    method: Pick,
    headers: Vec<(Pick, Pick)>,
}

/// A value from a vocabulary, or anything.
#[derive(Arbitrary, Debug)]
enum Pick {
    V(u8),
    Odd(String),
}

impl Pick {
    fn get<'a>(&'a self, vocab: &[&'a str]) -> &'a str {
        match self {
            Pick::V(i) => vocab[*i as usize % vocab.len()],
            Pick::Odd(s) => s,
        }
    }
}

const AUTHORITIES: &[&str] = &[
    "webapp.istioinaction.io",
    "catalog.istioinaction.io",
    "match.example.com",
    "a.wild.example.com",
    "b.a.wild.example.com",
    "wild.example.com",
    "secure.istioinaction.io",
    "mtls.istioinaction.io",
    "simple-sni-1.istioinaction.io",
    "WEBAPP.istioinaction.IO",
    "127.0.0.1",
    "[::1]",
    "",
];
const PATHS: &[&str] = &[
    "/",
    "/hello",
    "/items",
    "/v1/items",
    "/v12/items/x",
    "/search",
    "/SEARCH",
    "/old",
    "/derive/x",
    "/a/../b",
    "/%2e%2e/x",
    "/./",
    "",
    "*",
];
const QUERIES: &[&str] = &["q=abc&flag", "flag&q=ab", "q=a", "flag=1", "", "&&=", "q"];
const METHODS: &[&str] = &["GET", "POST", "HEAD", "get", "CONNECT"];
const HEADER_NAMES: &[&str] = &["x-dark-launch", "user-agent", "x-debug", "host", "cookie"];
const HEADER_VALUES: &[&str] = &["v2", "v1", "Mozilla Mobile", "Mobile", "", "1"];
const PORTS: &[u16] = &[80, 443, 8000, 31400, 8080, 8443, 1];

fn demo() -> &'static Snapshot {
    static DEMO: OnceLock<Snapshot> = OnceLock::new();
    DEMO.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        let mut names: Vec<_> = std::fs::read_dir(root.join("../gateway-configs"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        names.sort();
        for path in names {
            if let Ok(text) = std::fs::read_to_string(&path) {
                files.push((path, text));
            }
        }
        let routes = root.join("src/routes.yaml");
        let text = std::fs::read_to_string(&routes).unwrap_or_default();
        files.push((routes, text));
        let files: Vec<_> = files.iter().map(|(p, t)| (p.clone(), t.as_str())).collect();
        let snapshot = tollgate_fuzz::load_and_compile(&files);
        assert!(
            snapshot.listeners.len() >= 4,
            "the demo compiles to its listeners"
        );
        snapshot
    })
}

fn tables(snapshot: &Snapshot) -> Vec<(u16, &Arc<RouteTable>)> {
    let mut out = Vec::new();
    for l in snapshot.listeners.values() {
        match &l.kind {
            ListenerKind::Http(t) => out.push((l.key.port, t)),
            ListenerKind::Tls(tls) => {
                for s in &tls.servers {
                    if let TlsAction::Https { routes, .. } = &s.action {
                        out.push((l.key.port, routes));
                    }
                }
            }
            ListenerKind::Tcp(_) => {}
        }
    }
    out
}

fn check_table(table: &RouteTable, view: &RequestView<'_>) {
    let found = table.find_vhost(view.authority);
    if let Some(v) = found {
        assert!(
            table.vhosts.iter().any(|h| std::ptr::eq(h, v)),
            "virtual host not in the table"
        );
    }
    let same = |other: Option<&tollgate::route::VirtualHost>| match (found, other) {
        (Some(a), Some(b)) => std::ptr::eq(a, b),
        (None, None) => true,
        _ => false,
    };
    let upper = view.authority.to_ascii_uppercase();
    assert!(
        same(table.find_vhost(&upper)),
        "Host lookup is case-sensitive"
    );
    if !view.authority.contains([':', '[', ']']) {
        let with_port = format!("{}:8080", view.authority);
        assert!(
            same(table.find_vhost(&with_port)),
            "Host lookup depends on the port"
        );
    }
    for vhost in &table.vhosts {
        let route = vhost.find_route(view);
        let first = vhost.routes.iter().position(|r| r.matcher.matches(view));
        match (route, first) {
            (Some(r), Some(i)) => assert!(Arc::ptr_eq(r, &vhost.routes[i]), "not the first match"),
            (None, None) => {}
            _ => panic!("find_route disagrees with the matchers"),
        }
        for r in &vhost.routes {
            assert_eq!(
                r.matcher.mismatch(view).is_none(),
                r.matcher.matches(view),
                "mismatch() disagrees with matches() for {}",
                r.name
            );
        }
    }
}

fuzz_target!(|input: Input| {
    let generated;
    let snapshot = match &input.generated {
        Some(docs) => {
            let text = render_file(docs);
            generated = tollgate_fuzz::load_and_compile(&[(tollgate_fuzz::file("g.yaml"), &text)]);
            &generated
        }
        None => demo(),
    };
    let tables = tables(snapshot);
    for req in input.requests.iter().take(4) {
        let mut authority = req.authority.get(AUTHORITIES).to_string();
        if let Some(port) = req.authority_port {
            authority = format!("{authority}:{port}");
        }
        let raw_path = req.path.get(PATHS);
        let method = Method::from_bytes(req.method.get(METHODS).as_bytes()).unwrap_or(Method::GET);
        let mut headers = HeaderMap::new();
        for (name, value) in req.headers.iter().take(4) {
            let name = HeaderName::from_bytes(name.get(HEADER_NAMES).as_bytes());
            let value = HeaderValue::from_bytes(value.get(HEADER_VALUES).as_bytes());
            if let (Ok(n), Ok(v)) = (name, value) {
                headers.append(n, v);
            }
        }
        let query = req.query.as_ref().map(|q| q.get(QUERIES));
        let normalized = tollgate::http::path::normalize(raw_path);
        if let Some(n) = &normalized {
            assert!(n.starts_with('/'), "normalized path {n:?} is not absolute");
            assert_eq!(
                tollgate::http::path::normalize(n),
                None,
                "normalizing {raw_path:?} twice changed it again"
            );
        }
        let path = normalized.as_deref().unwrap_or(raw_path);
        let scheme = ["http", "https"][req.scheme as usize % 2];
        let view = RequestView {
            path,
            query,
            method: &method,
            scheme,
            authority: &authority,
            headers: &headers,
        };
        for (_, table) in &tables {
            check_table(table, &view);
        }

        // `tollgate explain` on the same request names the route the data path picks.
        let path_and_query = match query {
            Some(q) => format!("{raw_path}?{q}"),
            None => raw_path.to_string(),
        };
        let q = Query {
            port: req.port.map(|p| PORTS[p as usize % PORTS.len()]),
            scheme: (req.scheme % 3 != 2).then(|| scheme.to_string()),
            sni: req.sni.as_ref().map(|s| s.get(AUTHORITIES).to_string()),
            authority: authority.clone(),
            path: path_and_query,
            method: method.clone(),
            headers: headers.clone(),
            https_redirect_port: None,
            path_normalization: Default::default(),
        };
        let ex = explain(snapshot, &q);
        let _ = ex.outcome.message.len();
        let Some(info) = &ex.listener else {
            continue;
        };
        let Some(listener) = snapshot
            .listeners
            .values()
            .find(|l| l.key.port == info.port)
        else {
            panic!("explain chose port {} which has no listener", info.port);
        };
        if let (ListenerKind::Http(table), "http") = (&listener.kind, ex.request.scheme.as_str()) {
            // explain splits the query at the first `?` of the path, as the URI parser does.
            let (p, qs) = match q.path.split_once('?') {
                Some((p, qs)) => (p, Some(qs)),
                None => (q.path.as_str(), None),
            };
            let norm = tollgate::http::path::normalize(p);
            let view = RequestView {
                path: norm.as_deref().unwrap_or(p),
                query: qs,
                method: &method,
                scheme: "http",
                authority: &authority,
                headers: &headers,
            };
            let expected = table
                .find_vhost(&authority)
                .filter(|v| !v.https_redirect)
                .and_then(|v| v.find_route(&view))
                .map(|r| r.name.clone());
            assert_eq!(
                ex.matched_route, expected,
                "explain disagrees with the data path"
            );
        }
    }
});
