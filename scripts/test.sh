#!/usr/bin/env bash
# Installs missing system dependencies, then runs every test target. Extra arguments go to
# `cargo test`; the exit status is cargo's.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# Benches must keep compiling, but criterion's output must not come after the test summary.
cargo build --all-targets
# The fuzz targets (their own crate, outside the workspace) must keep compiling too.
cargo check --manifest-path fuzz/Cargo.toml --bins
exec cargo test --lib --bins --tests "$@"
