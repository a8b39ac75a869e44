#!/usr/bin/env bash
# Runs every test of the repository: the README's test command, and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# The UI tests drive Debian's headless Chromium through chromedriver (tests/all/ui.rs); install
# them when missing (as root, no prompt; CI runs this too).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "tests/run.sh: chromium and chromium-driver are missing; run as root or install them" >&2
        exit 1
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver </dev/null
fi

# Formatting and lints first: they are cheap and a red one fails the run.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The end-to-end tests build the `weir` binary themselves when needed; building it first keeps
# that out of the tests' own time.
cargo build -p weir
cargo test --workspace --no-fail-fast
# The built-in plugins' own tests run natively (no WebAssembly needed).
cargo test --manifest-path plugins/Cargo.toml --target-dir target/plugins-native
