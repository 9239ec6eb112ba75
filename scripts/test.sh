#!/usr/bin/env bash
# Sets up everything the tests need and runs all of them: formatting, lints, unit, property,
# statistical and end-to-end tests. Works on a fresh machine with a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
# Library, binary, integration and doc tests. Benches are compiled by clippy above and run
# with `cargo bench` (docs/BENCHMARKS.md), not here.
cargo test --workspace
