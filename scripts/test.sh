#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and end-to-end tests. Needs curl on PATH
# (the end-to-end tests drive the gateway with it) and ../shared/fixtures for the fixture tests.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
