#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian 12 / Ubuntu machine that already has
# Rust: PostgreSQL server binaries (15 preferred), psql, pgbouncer and python3, plus the real
# drivers of tests/pg_drivers.rs (psycopg 3, asyncpg, node-postgres, pgjdbc and a JDK).
# Idempotent: does nothing (and touches no package list) when everything is present.
# The tests run their own servers on free ports; they never use a packaged service.
set -euo pipefail

log() { echo "install-deps: $*" >&2; }

# Same search order as src/testkit/pg.rs: $SWITCHYARD_PG_BIN, /usr/lib/postgresql/15/bin,
# the newest /usr/lib/postgresql/*/bin, then PATH.
find_pg_bin() {
    if [ -n "${SWITCHYARD_PG_BIN:-}" ]; then
        [ -x "$SWITCHYARD_PG_BIN/initdb" ] && { echo "$SWITCHYARD_PG_BIN"; return 0; }
        return 1
    fi
    if [ -x /usr/lib/postgresql/15/bin/initdb ]; then
        echo /usr/lib/postgresql/15/bin
        return 0
    fi
    local d best=""
    for d in $(ls -1 /usr/lib/postgresql 2>/dev/null | grep -E '^[0-9]+$' | sort -n); do
        [ -x "/usr/lib/postgresql/$d/bin/initdb" ] && best="/usr/lib/postgresql/$d/bin"
    done
    [ -n "$best" ] && { echo "$best"; return 0; }
    d=$(command -v initdb 2>/dev/null) && { dirname "$d"; return 0; }
    return 1
}

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    fi
fi

missing=()
if ! find_pg_bin >/dev/null; then missing+=(server); fi
if ! have psql; then missing+=(postgresql-client); fi
if ! have pgbouncer; then missing+=(pgbouncer); fi
if ! have python3; then missing+=(python3); fi

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
        log "missing ${missing[*]} and not root (no sudo): install them by hand"
        exit 1
    fi
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q >&2
    pkgs=()
    for m in "${missing[@]}"; do
        if [ "$m" = server ]; then
            if apt-cache show postgresql-15 >/dev/null 2>&1; then
                pkgs+=(postgresql-15)
            else
                pkgs+=(postgresql)
            fi
        else
            pkgs+=("$m")
        fi
    done
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2
    # The packages may start services (postgresql on 5432, pgbouncer on 6432) that the tests
    # never use: stop the ones this run installed.
    for m in "${missing[@]}"; do
        case "$m" in
            server) "${SUDO[@]}" service postgresql stop >/dev/null 2>&1 || true ;;
            pgbouncer) "${SUDO[@]}" service pgbouncer stop >/dev/null 2>&1 || true ;;
        esac
    done
fi

pg_bin=$(find_pg_bin) || { log "PostgreSQL server binaries not found"; exit 1; }
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    # As root the test harness runs the servers as this unprivileged user.
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
fi
log "PostgreSQL binaries: $pg_bin ($("$pg_bin/postgres" --version 2>/dev/null || echo unknown))"

# The metrics test parses /metrics with the reference Prometheus parser.
if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
    log "installing python package prometheus_client"
    python3 -m pip install --quiet prometheus_client >&2 || python3 -m pip install --quiet --break-system-packages prometheus_client >&2
fi

# Real-driver tests (tests/pg_drivers.rs): psycopg 3 and asyncpg from PyPI, node-postgres from
# npm into tests/drivers/node, pgjdbc and a JDK from Debian. A driver that cannot be installed
# fails this script: the driver tests never skip silently.
pip_install() {
    python3 -m pip install --quiet "$@" >&2 || python3 -m pip install --quiet --break-system-packages "$@" >&2
}
if ! python3 -c 'import psycopg; psycopg.pq.version()' >/dev/null 2>&1; then
    log "installing python package psycopg[binary]"
    pip_install 'psycopg[binary]>=3.1'
fi
if ! python3 -c 'import asyncpg' >/dev/null 2>&1; then
    log "installing python package asyncpg"
    pip_install asyncpg
fi
python3 -c 'import psycopg, asyncpg' || { log "psycopg/asyncpg still not importable"; exit 1; }

apt_missing=()
if ! have javac || ! have java; then apt_missing+=(default-jdk-headless); fi
if [ ! -f /usr/share/java/postgresql.jar ]; then apt_missing+=(libpostgresql-jdbc-java); fi
if ! have node || ! have npm; then apt_missing+=(nodejs npm); fi
if [ ${#apt_missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
        log "missing ${apt_missing[*]} and not root (no sudo): install them by hand"
        exit 1
    fi
    log "installing: ${apt_missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q >&2
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${apt_missing[@]}" >&2
fi
for t in java javac node npm; do
    have "$t" || { log "$t not found after installing"; exit 1; }
done
[ -f /usr/share/java/postgresql.jar ] || { log "/usr/share/java/postgresql.jar missing"; exit 1; }

node_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/drivers/node"
if [ ! -d "$node_dir/node_modules/pg" ]; then
    log "installing node-postgres into $node_dir"
    (cd "$node_dir" && { npm ci --no-audit --no-fund --loglevel=error || npm install --no-audit --no-fund --loglevel=error; }) >&2
fi
[ -d "$node_dir/node_modules/pg" ] || { log "node-postgres (pg) not installed in $node_dir"; exit 1; }
