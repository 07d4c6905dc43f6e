#!/usr/bin/env bash
# Long fuzzing runs (not part of the test suite). Only the stable toolchain exists here, so
# cargo-fuzz's nightly flags are enabled with RUSTC_BOOTSTRAP=1.
# Usage: scripts/fuzz.sh [TARGET] [SECONDS]     (default: client_hello for 600 s)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
target=${1:-client_hello}
seconds=${2:-600}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p "corpus/$target"
RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -max_len=20000
