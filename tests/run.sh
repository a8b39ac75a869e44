#!/usr/bin/env bash
# Runs every test of the repository: the README's test command, and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# The end-to-end tests start the `weir` binary; building a dependency's library does not build
# its binary, so build it first.
cargo build -p weir
cargo test --workspace --no-fail-fast
# The built-in plugins' own tests run natively (no WebAssembly needed).
cargo test --manifest-path plugins/Cargo.toml --target-dir target/plugins-native
