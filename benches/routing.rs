//! The per-request routing cost: virtual host lookup among 10,000 hosts, then route matching.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use tollgate::config::ConfigStore;
use tollgate::route::RequestView;
use tollgate::snapshot::{compile, ListenerKind, Options, Snapshot};

#[path = "../src/allocator.rs"]
mod allocator;

/// The same allocator as the binary, so the numbers match what it does.
#[global_allocator]
static ALLOCATOR: allocator::MiMalloc = allocator::MiMalloc;

mod common;

fn routing(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    common::write_config(dir.path(), 10_000);
    let snapshot = compile(
        ConfigStore::new(dir.path(), "default").load(),
        &Options::default(),
        &Snapshot::empty(),
        1,
    );
    let Some(ListenerKind::Http(table)) = snapshot.listeners.values().next().map(|l| &l.kind)
    else {
        panic!("bench config has no HTTP listener")
    };
    let mut group = c.benchmark_group("route_lookup_10k_hosts");
    for (name, host) in [
        ("exact", "host-4242.example.com"),
        ("exact_with_port_mixed_case", "Host-4242.Example.com:8080"),
        ("wildcard", "a.b.w4249.example.com"),
        ("miss", "nothing.example.org"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| black_box(table.find_vhost(black_box(host))).is_some())
        });
    }
    let mut headers = HeaderMap::new();
    headers.insert("user-agent", HeaderValue::from_static("bench"));
    headers.insert("x-canary", HeaderValue::from_static("no"));
    let method = Method::GET;
    for (name, path) in [
        ("first_rule_miss_regex_hit", "/items/1234"),
        ("fall_through_to_weighted", "/other"),
    ] {
        group.bench_function(format!("vhost_and_route_{name}"), |b| {
            b.iter(|| {
                let vhost = table
                    .find_vhost(black_box("host-4242.example.com"))
                    .expect("vhost");
                let view = RequestView {
                    path,
                    query: None,
                    method: &method,
                    scheme: "http",
                    authority: "host-4242.example.com",
                    headers: &headers,
                };
                black_box(vhost.find_route(&view)).is_some()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
