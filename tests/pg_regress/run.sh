#!/usr/bin/env bash
# PostgreSQL's own regression suite (pg_regress, parallel_schedule) run three ways against a
# fresh PostgreSQL 15 primary each: directly, through Switchyard in session mode and through
# Switchyard in transaction mode. The servers have TLS on; pg_regress's clients connect
# without it (PGSSLMODE=disable), and so does the session-mode proxy, while the
# transaction-mode proxy reaches its server over TLS ([[cluster]] tls = "require"), so that
# both of the proxy's server streams run the whole suite.
#
# Usage: tests/pg_regress/run.sh [--prepare | --is-prepared] [--modes direct,session,transaction]
#   --prepare      only fetch the matching PostgreSQL source and build the test modules, then exit
#   --is-prepared  exit 0 when that is done already (cached), 1 when not; changes nothing
#   --modes        comma-separated subset of direct, session, transaction (default: all three)
#
# Environment (all optional):
#   SWITCHYARD_BIN        proxy binary (default: `cargo build`, then target/debug/switchyard)
#   SWITCHYARD_PG_BIN     PostgreSQL server binaries (default /usr/lib/postgresql/15/bin)
#   PG_REGRESS_CACHE      where the source and the built modules are kept
#                         (default ${XDG_CACHE_HOME:-$HOME/.cache}/switchyard/pg_regress)
#   PG_REGRESS_SRC        an unpacked PostgreSQL 15 source tree to use instead of `apt-get source`
#   PG_REGRESS_OUT        results directory (default target/pg_regress in the repository)
#   PG_REGRESS_TIMEOUT    seconds one mode may take before it counts as a hang (default 300)
#
# Results: $PG_REGRESS_OUT/summary.txt (human) and, per mode, $PG_REGRESS_OUT/<mode>/ with
# result (key=value lines read by tests/pg_regress.rs), regression.diffs (and diffs/<test>.diff),
# regression.out, pg_regress.log, postgres.log, proxy.log and switchyard.toml. Exit status: 0 when every mode ran to the end
# (failing tests included), 1 when a mode could not be run or hung, 2 on a usage error.
#
# Needs what scripts/install-deps.sh installs: a deb-src entry, postgresql-server-dev-15 of the
# installed server's version (PGXS and pg_regress), gcc, make, bzip2. Runs the servers as the
# unprivileged `postgres` user when started as root. Everything it starts is stopped on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

log() { echo "pg_regress/run.sh: $*" >&2; }
die() {
    log "$*"
    exit 1
}

prepare_only=0
modes="direct,session,transaction"
while [ $# -gt 0 ]; do
    case "$1" in
        --prepare) prepare_only=1 ;;
        --is-prepared) prepare_only=check ;;
        --modes)
            modes="${2:-}"
            shift
            ;;
        --modes=*) modes="${1#--modes=}" ;;
        -h | --help)
            sed -n '2,27p' "$0"
            exit 0
            ;;
        *)
            echo "unknown argument: $1" >&2
            exit 2
            ;;
    esac
    shift
done
IFS=',' read -r -a mode_list <<<"$modes"
for m in "${mode_list[@]}"; do
    case "$m" in
        direct | session | transaction) ;;
        *)
            echo "unknown mode: $m" >&2
            exit 2
            ;;
    esac
done

pg_bin=${SWITCHYARD_PG_BIN:-/usr/lib/postgresql/15/bin}
[ -x "$pg_bin/initdb" ] || die "no PostgreSQL server binaries in $pg_bin (set SWITCHYARD_PG_BIN)"
pg_config="$pg_bin/pg_config"
[ -x "$pg_config" ] || pg_config=$(command -v pg_config || true)
[ -n "$pg_config" ] || die "pg_config not found"
pgxs=$("$pg_config" --pgxs 2>/dev/null || true)
pgxs_dir=${pgxs%/src/makefiles/pgxs.mk}
pg_regress_bin="$pgxs_dir/src/test/regress/pg_regress"
server_version=$("$pg_bin/postgres" --version | sed -E 's/.* ([0-9]+\.[0-9]+).*/\1/')
major=${server_version%%.*}
[ "$major" = 15 ] || log "warning: the expectations are written for PostgreSQL 15, server is $server_version"

# ---------------------------------------------------------------------------------------------
# Source and test modules (cached, keyed by the exact server package version)
# ---------------------------------------------------------------------------------------------
cache_root=${PG_REGRESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/switchyard/pg_regress}
deb_version=$(dpkg-query -W -f='${Version}' "postgresql-$major" 2>/dev/null || true)
key=${deb_version:-$server_version}
[ -n "${PG_REGRESS_SRC:-}" ] && key="src-$(echo "$PG_REGRESS_SRC" | md5sum | cut -c1-12)"
cache="$cache_root/$key"

prepare() {
    [ -f "$cache/.ready" ] && return 0
    [ -f "$pgxs" ] || die "PGXS not found ($pg_config --pgxs): install postgresql-server-dev-$major of version ${deb_version:-$server_version} (scripts/install-deps.sh)"
    [ -x "$pg_regress_bin" ] || die "pg_regress not found at $pg_regress_bin (postgresql-server-dev-$major)"
    if [ -n "$deb_version" ]; then
        dev_version=$(dpkg-query -W -f='${Version}' "postgresql-server-dev-$major" 2>/dev/null || true)
        [ "$dev_version" = "$deb_version" ] ||
            die "postgresql-server-dev-$major is '${dev_version:-not installed}', the server is $deb_version: run scripts/install-deps.sh"
    fi
    mkdir -p "$cache_root"
    # One preparer at a time (several worktrees may share the cache).
    exec 9>"$cache_root/.lock"
    flock -w 600 9 || die "timed out waiting for $cache_root/.lock"
    if [ -f "$cache/.ready" ]; then
        exec 9>&-
        return 0
    fi
    rm -rf "$cache_root"/.prepare.* # left by an interrupted run
    local work
    work=$(mktemp -d "$cache_root/.prepare.XXXXXX")
    local src
    if [ -n "${PG_REGRESS_SRC:-}" ]; then
        src=$PG_REGRESS_SRC
    else
        [ -n "$deb_version" ] || die "the server is not a Debian package: set PG_REGRESS_SRC to a PostgreSQL $server_version source tree"
        log "fetching the source of postgresql-$major=$deb_version"
        (cd "$work" && timeout 300 apt-get source --download-only -q "postgresql-$major=$deb_version" >"$work/apt.log" 2>&1) || {
            cat "$work/apt.log" >&2
            rm -rf "$work"
            die "apt-get source postgresql-$major=$deb_version failed (is there a deb-src entry? scripts/install-deps.sh adds one)"
        }
        local tarball
        tarball=$(ls "$work"/postgresql-"$major"_*.orig.tar.* | head -n1)
        tar xf "$tarball" -C "$work" --wildcards '*/src/test/regress/*' '*/contrib/spi/*'
        src=$(dirname "$(dirname "$(dirname "$(ls -d "$work"/*/src/test/regress)")")")
    fi
    [ -f "$src/src/test/regress/parallel_schedule" ] || die "no src/test/regress/parallel_schedule in $src"
    mkdir -p "$work/out/lib" "$work/build"
    cp -r "$src/src/test/regress" "$work/out/regress"
    rm -f "$work/out/regress/"*.c "$work/out/regress/"*.h "$work/out/regress/"*akefile
    cp "$src/src/test/regress/regress.c" "$src/contrib/spi/autoinc.c" "$src/contrib/spi/refint.c" "$work/build/"
    cat >"$work/build/Makefile" <<EOF
MODULES = regress autoinc refint
PG_CPPFLAGS = -DREFINT_VERBOSE
PG_CONFIG = $pg_config
PGXS := \$(shell \$(PG_CONFIG) --pgxs)
include \$(PGXS)
EOF
    log "building regress.so, autoinc.so, refint.so"
    make -s -C "$work/build" with_llvm=no >"$work/build.log" 2>&1 || {
        cat "$work/build.log" >&2
        die "building the test modules failed"
    }
    cp "$work/build/"{regress,autoinc,refint}.so "$work/out/lib/"
    rm -rf "$cache"
    mv "$work/out" "$cache"
    rm -rf "$work"
    touch "$cache/.ready"
    exec 9>&-
    log "prepared $cache"
}

if [ "$prepare_only" = check ]; then
    [ -f "$cache/.ready" ]
    exit
fi
prepare
if [ "$prepare_only" = 1 ]; then
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# Processes and cleanup
# ---------------------------------------------------------------------------------------------
as_root=0
run_as=()
if [ "$(id -u)" -eq 0 ]; then
    as_root=1
    run_as=(runuser -u postgres --)
fi
# Run a command as the unprivileged server user (when we are root).
as_pg() {
    if [ "$as_root" = 1 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-pg-regress.XXXXXX")
chmod 755 "$tmp"
[ "$as_root" = 1 ] && chown postgres: "$tmp"
running_pgdata=""
proxy_pid=""

stop_postgres() {
    if [ -n "$running_pgdata" ] && [ -f "$running_pgdata/postmaster.pid" ]; then
        as_pg "$pg_bin/pg_ctl" stop -D "$running_pgdata" -m immediate -w -t 30 >/dev/null 2>&1 || true
    fi
    running_pgdata=""
}

stop_proxy() {
    if [ -n "$proxy_pid" ]; then
        kill -TERM "$proxy_pid" 2>/dev/null || true
        local i
        for i in $(seq 1 100); do
            kill -0 "$proxy_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$proxy_pid" 2>/dev/null || true
        wait "$proxy_pid" 2>/dev/null || true
    fi
    proxy_pid=""
}

# Ends pg_regress and its psql children (their own process group).
kill_regress() {
    [ -f "$tmp/regress.pgid" ] || return 0
    local pgid i
    pgid=$(cat "$tmp/regress.pgid")
    [ -n "$pgid" ] || return 0
    kill -TERM -- "-$pgid" 2>/dev/null || return 0
    for i in $(seq 1 50); do
        kill -0 -- "-$pgid" 2>/dev/null || return 0
        sleep 0.2
    done
    kill -KILL -- "-$pgid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e # stop everything, even if one step fails
    kill_regress
    stop_proxy
    stop_postgres
    if [ -n "${watchdog_pid:-}" ]; then kill "$watchdog_pid" 2>/dev/null; fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' INT TERM HUP

# If this script is killed with SIGKILL, a detached watchdog stops the servers it left.
watchdog() {
    local parent=$1
    while kill -0 "$parent" 2>/dev/null; do sleep 2; done
    for pid_file in "$tmp"/*/postmaster.pid; do
        [ -f "$pid_file" ] && as_pg "$pg_bin/pg_ctl" stop -D "$(dirname "$pid_file")" -m immediate >/dev/null 2>&1
    done
    [ -f "$tmp/proxy.pid" ] && kill -KILL "$(cat "$tmp/proxy.pid")" 2>/dev/null
    [ -f "$tmp/regress.pgid" ] && kill -KILL -- "-$(cat "$tmp/regress.pgid")" 2>/dev/null
    rm -rf "$tmp"
}
watchdog $$ </dev/null >/dev/null 2>&1 &
watchdog_pid=$!

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null && return 0
    # Fallback: a random port nobody answers on.
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || {
            echo "$p"
            return 0
        }
    done
}

# Waits until something accepts TCP connections on 127.0.0.1:$1 (up to $2 seconds).
wait_port() {
    local deadline=$((SECONDS + $2))
    while [ $SECONDS -lt "$deadline" ]; do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------------------------------------
# Proxy binary, output directory, template cluster
# ---------------------------------------------------------------------------------------------
if [ -z "${SWITCHYARD_BIN:-}" ]; then
    log "building the proxy (cargo build)"
    (cd "$repo" && cargo build -q --bin switchyard) || die "cargo build failed"
    target_dir=$(cd "$repo" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null || echo "$repo/target")
    SWITCHYARD_BIN="$target_dir/debug/switchyard"
fi
[ -x "$SWITCHYARD_BIN" ] || die "proxy binary $SWITCHYARD_BIN not found"
SWITCHYARD_BIN=$(cd "$(dirname "$SWITCHYARD_BIN")" && pwd)/$(basename "$SWITCHYARD_BIN")
out=${PG_REGRESS_OUT:-$repo/target/pg_regress}
timeout_s=${PG_REGRESS_TIMEOUT:-300}
mkdir -p "$out"
for m in "${mode_list[@]}"; do rm -rf "${out:?}/$m"; done
rm -f "$out/summary.txt"

# pg_regress and psql: plain TCP, as before the servers had TLS.
export PGSSLMODE=disable

log "initdb (template cluster)"
as_pg "$pg_bin/initdb" -D "$tmp/template" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
    --no-sync >"$tmp/initdb.log" 2>&1 || {
    cat "$tmp/initdb.log" >&2
    die "initdb failed"
}
cat >>"$tmp/template/postgresql.conf" <<EOF

# added by tests/pg_regress/run.sh
listen_addresses = '127.0.0.1'
max_connections = 200
fsync = off
full_page_writes = off
# What pg_regress's own temporary instance sets:
max_prepared_transactions = 2
log_line_prefix = '%m %b[%p] %q%a '
log_lock_waits = on
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
EOF
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -keyout "$tmp/template/server.key" -out "$tmp/template/server.crt" \
    >"$tmp/openssl.log" 2>&1 || {
    cat "$tmp/openssl.log" >&2
    die "openssl req failed"
}
chmod 0600 "$tmp/template/server.key"
[ "$as_root" = 1 ] && chown postgres: "$tmp/template/server.key" "$tmp/template/server.crt"

# The input directory and the modules must be readable by the server and by psql run as
# `postgres`; the output directory writable by both (COPY TO writes there).
cp -r "$cache/regress" "$tmp/input"
cp -r "$cache/lib" "$tmp/lib"
[ "$as_root" = 1 ] && chown -R postgres: "$tmp/input" "$tmp/lib"

# ---------------------------------------------------------------------------------------------
# One mode
# ---------------------------------------------------------------------------------------------
run_mode() {
    local mode=$1
    local dir="$out/$mode"
    local data="$tmp/$mode"
    local work="$tmp/$mode-out"
    mkdir -p "$dir" "$work"
    [ "$as_root" = 1 ] && chown postgres: "$work"
    local start=$SECONDS

    local pg_port
    pg_port=$(free_port)
    cp -a "$tmp/template" "$data"
    cat >>"$data/postgresql.conf" <<EOF
port = $pg_port
unix_socket_directories = '$data'
EOF
    running_pgdata=$data
    as_pg "$pg_bin/pg_ctl" start -D "$data" -w -t 60 -l "$data/postgres.log" >/dev/null 2>&1 || {
        cp "$data/postgres.log" "$dir/" 2>/dev/null || true
        echo "status=error" >"$dir/result"
        log "$mode: PostgreSQL did not start (see $dir/postgres.log)"
        return 1
    }
    local sql="CREATE DATABASE regression TEMPLATE=template0;"
    local s
    for s in "lc_messages TO 'C'" "lc_monetary TO 'C'" "lc_numeric TO 'C'" "lc_time TO 'C'" \
        "bytea_output TO 'hex'" "timezone_abbreviations TO 'Default'" "intervalstyle TO 'postgres_verbose'"; do
        sql+="ALTER DATABASE regression SET $s;"
    done
    echo "$sql" | "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres \
        >/dev/null || {
        echo "status=error" >"$dir/result"
        log "$mode: creating the regression database failed"
        return 1
    }

    local port=$pg_port
    # Transaction mode reaches the server over TLS, session mode without.
    local tls=disable
    [ "$mode" = transaction ] && tls=require
    if [ "$mode" != direct ]; then
        port=$(free_port)
        cat >"$tmp/$mode.toml" <<EOF
[general]
drain_timeout = "2s"

[postgres]
listen = "127.0.0.1:$port"
pool_mode = "$mode"

[pool]
size = 120
checkout_timeout = "30s"

[[user]]
name = "postgres"
auth = "trust"

[[cluster]]
name = "regression"
database = "regression"
primary = "127.0.0.1:$pg_port"
user = "postgres"
tls = "$tls"

[[cluster]]
name = "postgres"
database = "postgres"
primary = "127.0.0.1:$pg_port"
user = "postgres"
tls = "$tls"
EOF
        cp "$tmp/$mode.toml" "$dir/switchyard.toml"
        "$SWITCHYARD_BIN" run --config "$tmp/$mode.toml" >"$dir/proxy.log" 2>&1 &
        proxy_pid=$!
        echo "$proxy_pid" >"$tmp/proxy.pid"
        wait_port "$port" 30 || {
            echo "status=error" >"$dir/result"
            log "$mode: the proxy did not start listening (see $dir/proxy.log)"
            return 1
        }
    fi

    log "$mode: running pg_regress on port $port (timeout ${timeout_s}s)"
    # pg_regress and its psql children run in a session of their own, so that a hang can be
    # ended by killing that whole process group (also from cleanup).
    (cd "$work" && exec setsid bash -c 'echo $$ >"$0"; exec "$@"' "$tmp/regress.pgid" \
        "${run_as[@]}" \
        env PGTZ=PST8PDT PGDATESTYLE='Postgres, MDY' "$pg_regress_bin" --use-existing \
        --host=127.0.0.1 --port="$port" --user=postgres --dbname=regression --bindir="$pg_bin" \
        --inputdir="$tmp/input" --outputdir="$work" --dlpath="$tmp/lib" \
        --schedule="$tmp/input/parallel_schedule") >"$dir/pg_regress.log" 2>&1 </dev/null &
    local reg_pid=$!
    local rc=0 hung=0
    local deadline=$((SECONDS + timeout_s))
    while kill -0 "$reg_pid" 2>/dev/null; do
        if [ $SECONDS -ge "$deadline" ]; then
            hung=1
            log "$mode: no end after ${timeout_s}s: stopping pg_regress"
            kill_regress
            break
        fi
        sleep 0.5
    done
    wait "$reg_pid" || rc=$?
    rm -f "$tmp/regress.pgid"
    local elapsed=$((SECONDS - start))

    local proxy_alive=""
    if [ -n "$proxy_pid" ]; then
        if kill -0 "$proxy_pid" 2>/dev/null; then proxy_alive=yes; else proxy_alive=no; fi
        stop_proxy
        rm -f "$tmp/proxy.pid"
    fi
    stop_postgres
    cp "$data/postgres.log" "$dir/postgres.log" 2>/dev/null || true
    cp "$work/regression.diffs" "$work/regression.out" "$dir/" 2>/dev/null || true
    # One diff per failed test: diffs/<test>.diff (named after its results/<test>.out).
    if [ -f "$dir/regression.diffs" ]; then
        mkdir -p "$dir/diffs"
        awk -v d="$dir/diffs" '/^diff /{n=split($NF, p, "/"); f=d "/" p[n]; sub(/\.out$/, ".diff", f)}
            f {print > f}' "$dir/regression.diffs"
    fi

    # Test lines look like "test name ... ok  12 ms" or "     name ... FAILED  12 ms".
    local results="$dir/pg_regress.log"
    local passed failed ignored failed_tests unfinished=""
    passed=$(grep -cE '^(test | +)[^ ]+ +\.\.\. ok ' "$results" || true)
    failed_tests=$(grep -E '^(test | +)[^ ]+ +\.\.\. FAILED' "$results" | awk '{print ($1 == "test") ? $2 : $1}' | tr '\n' ' ' | sed 's/ $//')
    failed=$(grep -cE '^(test | +)[^ ]+ +\.\.\. FAILED' "$results" || true)
    ignored=$(grep -cE '^(test | +)[^ ]+ +\.\.\. failed \(ignored\)' "$results" || true)
    local total
    total=$(grep -oE '(All|of) [0-9]+ tests' "$results" | grep -oE '[0-9]+' | tail -n1 || true)
    local status=ok
    if [ "$hung" = 1 ]; then
        status=hung
        # The tests of the schedule line in progress (the k-th "test:" line, k = the number of
        # group or single-test headers printed) that did not end.
        local k group finished
        k=$(grep -cE '^(parallel group \(|test )' "$results" || true)
        group=$(grep -E '^test:' "$tmp/input/parallel_schedule" | sed -n "${k}p" | sed 's/^test: *//')
        # A parallel group's header line names its tests as they end; results follow the group.
        finished=$({
            grep -E '^(test | +)[^ ]+ +\.\.\. +(ok|FAILED|failed)' "$results" |
                awk '{print ($1 == "test") ? $2 : $1}'
            grep -E '^(parallel group \(|test )' "$results" | tail -n1 |
                sed -nE 's/(Session terminated|Terminated).*//; s/^parallel group \([^)]*\): *//p' | tr ' ' '\n'
        } | sort -u)
        for t in $group; do
            grep -qx "$t" <<<"$finished" || unfinished+="${unfinished:+ }$t"
        done
    elif [ -z "$total" ]; then
        status=error
    fi
    {
        echo "mode=$mode"
        echo "status=$status"
        echo "exit_code=$rc"
        echo "seconds=$elapsed"
        echo "total=${total:-}"
        echo "passed=$passed"
        echo "failed=$failed"
        echo "ignored=$ignored"
        echo "failed_tests=$failed_tests"
        echo "unfinished_tests=$unfinished"
        echo "proxy_alive_at_end=$proxy_alive"
    } >"$dir/result"
    log "$mode: $status in ${elapsed}s: passed $passed, failed $failed${total:+ of $total}${failed_tests:+ ($failed_tests)}"
    [ "$status" = ok ]
}

overall=0
for m in "${mode_list[@]}"; do
    run_mode "$m" || overall=1
done

{
    echo "pg_regress (PostgreSQL $server_version${deb_version:+, Debian $deb_version}) $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "proxy: $SWITCHYARD_BIN"
    for m in "${mode_list[@]}"; do
        f="$out/$m/result"
        [ -f "$f" ] || continue
        get() { sed -n "s/^$1=//p" "$f"; }
        printf '\n%-12s %s, %ss: passed %s, failed %s of %s\n' "$m" "$(get status)" "$(get seconds)" \
            "$(get passed)" "$(get failed)" "$(get total)"
        if [ -n "$(get failed_tests)" ]; then echo "  failed: $(get failed_tests)"; fi
        if [ -n "$(get unfinished_tests)" ]; then echo "  unfinished (hung): $(get unfinished_tests)"; fi
        if [ "$(get proxy_alive_at_end)" = no ]; then echo "  the proxy had exited before the end of the run"; fi
        for t in $(get failed_tests); do
            echo "  $t:"
            # The start of its first hunk (context included), lines cut at 110 characters.
            awk '/^@@/{n++} n == 1' "$out/$m/diffs/$t.diff" 2>/dev/null | sed -n '2,9p' | cut -c1-110 |
                sed 's/^/      /' || true
        done
        if [ -f "$out/$m/regression.diffs" ]; then echo "  diffs: $out/$m/regression.diffs"; fi
    done
} >"$out/summary.txt"
cat "$out/summary.txt"
exit "$overall"
