#!/usr/bin/env bash
# Installs missing system packages, then starts the demo topology: a PostgreSQL primary with
# two streaming replicas and Switchyard in front. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec cargo run --release -- demo "$@"
