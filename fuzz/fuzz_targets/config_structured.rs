//! Structure-aware configs: generated Gateway / VirtualService / DestinationRule / ServiceEntry /
//! Secret documents over up to four files, loaded and compiled, then one file edited and the
//! directory reloaded on top of the first snapshot (last-good resources, reused clusters).
//! `FUZZ_PRINT=1` prints the generated files (to read what an input in the corpus means).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::config::ConfigStore;
use tollgate::snapshot::compile;
use tollgate_fuzz::gen::Scenario;
use tollgate_fuzz::{check_load, check_snapshot, file, options};

fuzz_target!(|scenario: Scenario| {
    let (before, after) = scenario.files();
    if std::env::var_os("FUZZ_PRINT").is_some() {
        eprintln!("{before:#?}\n--- edited ---\n{after:#?}");
    }
    let before: Vec<_> = before.iter().map(|(n, t)| (file(n), t.as_str())).collect();
    let after: Vec<_> = after.iter().map(|(n, t)| (file(n), t.as_str())).collect();
    let first = tollgate_fuzz::load_and_compile(&before);
    let opts = options();
    let mut store = ConfigStore::new("/fuzz", "default");
    let load = store.load_texts(&before);
    let _ = store.load_texts(&before);
    let edited = store.load_texts(&after);
    check_load(&edited, &after);
    // Last good: a resource of an untouched file that was in force stays in force.
    let touched: Vec<_> = after
        .iter()
        .filter(|f| !before.contains(f))
        .map(|(p, _)| p.clone())
        .collect();
    for r in load
        .resources
        .iter()
        .filter(|r| !touched.contains(&r.origin.file.to_path_buf()))
    {
        assert!(
            edited.resources.iter().any(|e| e.key == r.key),
            "{} of an unchanged file dropped by a reload",
            r.key
        );
    }
    let second = compile(edited, &opts, &first, first.generation + 1);
    check_snapshot(&second, &after);
});
