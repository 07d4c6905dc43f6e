//! Arbitrary bytes as one YAML file of a watched config dir: parse, classify, validate, last-good
//! and dedupe, compile, then a reload reusing the snapshot. Nothing may panic, and the invariants
//! of `tollgate_fuzz::load_and_compile` must hold.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The loader reads files as UTF-8 and rejects others before parsing: nothing to fuzz there.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    tollgate_fuzz::load_and_compile(&[(tollgate_fuzz::file("config.yaml"), text)]);
});
