//! The ClientHello peeker on arbitrary bytes: it must never panic, and a decision on a prefix
//! must not change when more bytes arrive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::tls::client_hello::{peek, Peek};

fuzz_target!(|data: &[u8]| {
    let whole = peek(data);
    for cut in [data.len() / 3, data.len() / 2, data.len().saturating_sub(1)] {
        match peek(&data[..cut]) {
            Peek::NeedMore(_) => {}
            decided => assert_eq!(
                decided, whole,
                "a decision on {cut} bytes changed with more"
            ),
        }
    }
});
