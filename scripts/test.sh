#!/usr/bin/env bash
# Installs missing system dependencies, then runs every test target. Extra arguments go to
# `cargo test`; the exit status is cargo's.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec cargo test --all-targets "$@"
