//! Upstream HTTP/1.1 responses (heads, then chunked, length or close-delimited bodies) from
//! arbitrary bytes, in reads of any size: never a panic, never an endless wait on a head, and a
//! length-delimited body ends after exactly its length.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tollgate::upstream::h1::fuzz::responses(data));
