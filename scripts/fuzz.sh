#!/usr/bin/env bash
# Fuzzing with cargo-fuzz (libFuzzer). Only the stable toolchain exists here, so cargo-fuzz's
# nightly flags are enabled with RUSTC_BOOTSTRAP=1. Installs cargo-fuzz when it is missing.
#
#   scripts/fuzz.sh [TARGET] [SECONDS]   one target (default: client_hello for 600 s)
#   scripts/fuzz.sh --all [SECONDS]      every target in turn (CI: --all 30)
#   scripts/fuzz.sh --list               the targets
#
# Each run starts from the committed corpus (fuzz/corpus/TARGET) and adds what it finds there;
# `RUSTC_BOOTSTRAP=1 cargo fuzz cmin TARGET` (in fuzz/) shrinks it again before a commit. A crash
# stops the run with a non-zero exit, its input under fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1

# The [[bin]] names of fuzz/Cargo.toml (what `cargo fuzz list` prints, without needing it).
targets() { awk '/^\[\[bin\]\]/ { bin = 1; next } bin && /^name = / { gsub(/"/, "", $3); print $3; bin = 0 }' Cargo.toml; }

run_one() {
    local target=$1 seconds=$2 extra=()
    # Structure-aware inputs are decoded by `arbitrary`: let them be long from the start.
    case $target in config_structured | route_match) extra=(-len_control=0) ;; esac
    mkdir -p "corpus/$target"
    echo "== fuzz $target for ${seconds}s"
    cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -max_len=20000 \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${extra[@]}"
}

if [[ ${1:-} == --list ]]; then
    targets
    exit 0
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
if [[ ${1:-} == --all ]]; then
    seconds=${2:-30}
    cargo fuzz build
    passed=0 failed=()
    for target in $(targets); do
        if run_one "$target" "$seconds"; then
            passed=$((passed + 1))
        else
            failed+=("$target")
        fi
    done
    ((${#failed[@]} == 0)) || echo "fuzz: crashed: ${failed[*]} (inputs under fuzz/artifacts/)"
    echo "fuzz: $passed passed, ${#failed[@]} failed"
    ((${#failed[@]} == 0))
else
    run_one "${1:-client_hello}" "${2:-600}"
fi
