//! Reload cost: YAML load + validation + compile (+ the arc-swap publish), at 1,000 and 10,000
//! VirtualServices.

use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, Criterion};
use tollgate::config::ConfigStore;
use tollgate::snapshot::{compile, Options, Snapshot};

#[path = "../src/allocator.rs"]
mod allocator;

/// The same allocator as the binary, so the numbers match what it does.
#[global_allocator]
static ALLOCATOR: allocator::MiMalloc = allocator::MiMalloc;

mod common;

fn reload(c: &mut Criterion) {
    let mut group = c.benchmark_group("reload");
    group.sample_size(10);
    for count in [1_000, 10_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        common::write_config(dir.path(), count);
        let opts = Options::default();
        let live = ArcSwap::from_pointee(Snapshot::empty());
        let mut store = ConfigStore::new(dir.path(), "default");
        let load = store.load();
        assert_eq!(
            load.diagnostics.iter().filter(|d| d.is_error()).count(),
            0,
            "bench config must be valid"
        );
        // A reload after some other file changed: this file is unchanged and not parsed again.
        group.bench_function(
            format!("reload_compile_swap_{count}_virtualservices"),
            |b| {
                b.iter(|| {
                    let previous = live.load_full();
                    let next = compile(store.load(), &opts, &previous, previous.generation + 1);
                    live.store(Arc::new(next));
                    tollgate::snapshot::retire(previous);
                })
            },
        );
        // The first load: every document parsed, validated and compiled.
        group.bench_function(
            format!("cold_load_compile_swap_{count}_virtualservices"),
            |b| {
                b.iter(|| {
                    let mut fresh = ConfigStore::new(dir.path(), "default");
                    let previous = live.load_full();
                    let next = compile(fresh.load(), &opts, &previous, previous.generation + 1);
                    live.store(Arc::new(next));
                    tollgate::snapshot::retire(previous);
                })
            },
        );
        let resources = store.load();
        group.bench_function(format!("compile_only_{count}_virtualservices"), |b| {
            b.iter_batched(
                || tollgate::config::LoadResult {
                    resources: resources.resources.clone(),
                    diagnostics: Vec::new(),
                    files: Vec::new(),
                },
                |load| compile(load, &opts, &Snapshot::empty(), 1),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, reload);
criterion_main!(benches);
