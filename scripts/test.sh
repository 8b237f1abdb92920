#!/usr/bin/env bash
# Installs missing system dependencies, then runs every test target. Extra arguments go to
# `cargo test`; the exit status is cargo's.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# Benches must keep compiling, but criterion's output must not come after the test summary.
cargo build --all-targets
exec cargo test --lib --bins --tests "$@"
