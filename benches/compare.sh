#!/usr/bin/env bash
# Macro benchmark: pgbench -S throughput straight to PostgreSQL ("direct"), through PgBouncer
# (transaction mode) and through switchyard (transaction mode), all in ONE run on this machine.
#
# It starts its own PostgreSQL primary in a temporary directory on a free loopback port, its own
# PgBouncer and its own switchyard (release build), runs the matrix
#     protocol (MODES) x clients (CLIENTS) x ROUNDS rounds x contenders,
# alternating the contenders inside every round (and rotating who goes first) so that drift
# (thermal, page cache, noisy neighbours) hits all of them alike, and reports per cell the
# median TPS / average latency over the rounds plus ratios. Everything it started is stopped on
# exit. See benches/README.md.
#
# Environment (defaults in brackets):
#   SCALE [10]            pgbench -i scale factor
#   DURATION [10]         seconds per pgbench run (-T)
#   ROUNDS [3]            rounds per cell
#   CLIENTS ["1 16"]      client counts (-c); -j is min(clients, JOBS)
#   JOBS [2]              most pgbench threads
#   MODES ["simple prepared"]  pgbench -M values
#   CONTENDERS ["direct pgbouncer switchyard switchyard_mux"]
#                         switchyard: the default config (one server connection per transaction);
#                         switchyard_mux: the same with [pool] multiplex_depth = MUX_DEPTH
#   MUX_DEPTH [8]         multiplex_depth of the switchyard_mux contender
#   POOL_SIZE [20]        pool size of PgBouncer (default_pool_size) and switchyard ([pool] size)
#   WORKERS [0]           switchyard [general] workers (0: one per core)
#   WARMUP [3]            seconds of unrecorded pgbench -S per contender before measuring (0: none)
#   MAX_CLIENTS [1000]    client connection limit of PgBouncer (max_client_conn) and switchyard
#                         ([general] max_client_connections)
#   PGBOUNCER_PREPARED [run]  "run": also run PgBouncer with -M prepared and report failures;
#                         "skip": leave those cells out ("n/a")
#   SWITCHYARD_PG_BIN     directory of initdb/pg_ctl/postgres [/usr/lib/postgresql/15/bin]
#   PGBOUNCER [/usr/sbin/pgbouncer]
#   RESULTS_DIR [benches/results]  where latest.md and latest-raw.txt are written
#   SKIP_BUILD [0]        1: do not run cargo build --release (use the existing binary)
#   SKIP_DEPS [0]         1: do not run scripts/install-deps.sh
#   KEEP_TMP [0]          1: keep the temporary directory (logs, configs) for inspection
#   HOLD                  seconds: start everything, print the ports, wait that long, stop (profiling)
#   SERVER_TLS [0]        1: the server has TLS on (a self-signed certificate) and both proxies
#                         reach it over TLS (PgBouncer server_tls_sslmode = require, switchyard
#                         [[cluster]] tls = "require"); pgbench reaches every contender, direct
#                         included, in plain TCP
set -euo pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

SCALE=${SCALE:-10}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-"1 16"}
JOBS=${JOBS:-2}
MODES=${MODES:-"simple prepared"}
CONTENDERS=${CONTENDERS:-"direct pgbouncer switchyard switchyard_mux"}
MUX_DEPTH=${MUX_DEPTH:-8}
POOL_SIZE=${POOL_SIZE:-20}
WORKERS=${WORKERS:-0}
WARMUP=${WARMUP:-3}
PGBOUNCER_PREPARED=${PGBOUNCER_PREPARED:-run}
MAX_CLIENTS=${MAX_CLIENTS:-1000}
PGBOUNCER=${PGBOUNCER:-/usr/sbin/pgbouncer}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/benches/results}
SKIP_BUILD=${SKIP_BUILD:-0}
SKIP_DEPS=${SKIP_DEPS:-0}
KEEP_TMP=${KEEP_TMP:-0}
SERVER_TLS=${SERVER_TLS:-0}

# The exact command line, with every setting that shapes the numbers.
CMDLINE="SCALE=$SCALE DURATION=$DURATION ROUNDS=$ROUNDS CLIENTS='$CLIENTS' MODES='$MODES' \
POOL_SIZE=$POOL_SIZE WORKERS=$WORKERS WARMUP=$WARMUP JOBS=$JOBS MUX_DEPTH=$MUX_DEPTH \
CONTENDERS='$CONTENDERS' SERVER_TLS=$SERVER_TLS benches/compare.sh${*:+ $*}"

log() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for v in SCALE DURATION ROUNDS JOBS POOL_SIZE WORKERS WARMUP MUX_DEPTH SERVER_TLS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
[ "$DURATION" -ge 1 ] && [ "$ROUNDS" -ge 1 ] && [ "$JOBS" -ge 1 ] && [ "$POOL_SIZE" -ge 1 ] \
    || die "DURATION, ROUNDS, JOBS and POOL_SIZE must be at least 1"
for c in $CLIENTS; do [[ $c =~ ^[1-9][0-9]*$ ]] || die "bad client count '$c'"; done
for m in $MODES; do
    case $m in simple | extended | prepared) ;; *) die "bad mode '$m'" ;; esac
done
for c in $CONTENDERS; do
    case $c in direct | pgbouncer | switchyard | switchyard_mux) ;; *) die "bad contender '$c'" ;; esac
done
case $PGBOUNCER_PREPARED in run | skip) ;; *) die "PGBOUNCER_PREPARED must be run or skip" ;; esac

# Only our own servers, only loopback, no TLS/GSS negotiation round trips, no stray PG* settings.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGSERVICEFILE PGOPTIONS PGPASSWORD \
    PGPASSFILE PGAPPNAME PGTARGETSESSIONATTRS PGREQUIRESSL PGSSLROOTCERT PGSSLCERT PGSSLKEY || true
export PGSSLMODE=disable PGGSSENCMODE=disable PGCONNECT_TIMEOUT=5

# ---------------------------------------------------------------------------------------------
# Dependencies and build
# ---------------------------------------------------------------------------------------------
if [ "$SKIP_DEPS" != 1 ]; then
    log "checking dependencies (scripts/install-deps.sh)"
    "$ROOT/scripts/install-deps.sh"
fi

if [ -n "${SWITCHYARD_PG_BIN:-}" ]; then
    PG_BIN=$SWITCHYARD_PG_BIN
else
    PG_BIN=/usr/lib/postgresql/15/bin
fi
[ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] || die "no initdb/pg_ctl in $PG_BIN (set SWITCHYARD_PG_BIN)"
PGBENCH=$(command -v pgbench || true)
[ -n "$PGBENCH" ] || { [ -x "$PG_BIN/pgbench" ] && PGBENCH=$PG_BIN/pgbench; } || die "pgbench not found"
PSQL=$(command -v psql || true)
[ -n "$PSQL" ] || { [ -x "$PG_BIN/psql" ] && PSQL=$PG_BIN/psql; } || die "psql not found"
command -v python3 >/dev/null || die "python3 not found (used to pick free ports)"
if [[ " $CONTENDERS " == *" pgbouncer "* ]]; then
    [ -x "$PGBOUNCER" ] || die "pgbouncer not found at $PGBOUNCER (set PGBOUNCER)"
fi

SWITCHYARD=$ROOT/target/release/switchyard
if [ "$SKIP_BUILD" != 1 ]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release) >&2
fi
[ -x "$SWITCHYARD" ] || die "$SWITCHYARD missing (cargo build --release)"

# As root, PostgreSQL and PgBouncer run as the unprivileged postgres user (both refuse root);
# as a normal user they run as that user.
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user"
    AS_SERVER=(runuser -u postgres --)
    SERVER_USER=postgres
else
    AS_SERVER=()
    SERVER_USER=$(id -un)
fi

# ---------------------------------------------------------------------------------------------
# Cleanup
# ---------------------------------------------------------------------------------------------
TMP=""
SY_PID=""
SYM_PID=""
BENCH_PID=""
PGB_STARTED=0
PG_STARTED=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
        kill -TERM "$BENCH_PID" 2>/dev/null # timeout passes it on to pgbench
        wait "$BENCH_PID" 2>/dev/null
    fi
    local pid
    for pid in $SY_PID $SYM_PID; do
        kill -0 "$pid" 2>/dev/null || continue
        log "stopping switchyard (pid $pid)"
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && { log "switchyard did not exit in 10 s; SIGKILL"; kill -KILL "$pid"; }
        wait "$pid" 2>/dev/null
    done
    if [ "$PGB_STARTED" = 1 ] && [ -f "$TMP/pgbouncer.pid" ]; then
        local p
        p=$(cat "$TMP/pgbouncer.pid" 2>/dev/null)
        if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
            log "stopping pgbouncer (pid $p)"
            kill -TERM "$p" 2>/dev/null
            for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$p" 2>/dev/null && kill -KILL "$p"
        fi
    fi
    if [ "$PG_STARTED" = 1 ]; then
        log "stopping postgres"
        "${AS_SERVER[@]}" "$PG_BIN/pg_ctl" -D "$TMP/pgdata" -m fast -w -t 30 stop >/dev/null 2>&1 \
            || "${AS_SERVER[@]}" "$PG_BIN/pg_ctl" -D "$TMP/pgdata" -m immediate -w stop >/dev/null 2>&1
    fi
    if [ -n "$TMP" ] && [ -d "$TMP" ]; then
        if [ "$KEEP_TMP" = 1 ]; then
            log "kept $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TMP=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-bench.XXXXXX")
chmod 0755 "$TMP"
[ "$(id -u)" -eq 0 ] && chown "$SERVER_USER:" "$TMP"
RAW=$TMP/raw.txt
RESULTS=$TMP/results.tsv
: >"$RAW"
: >"$RESULTS"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
PG_PORT=$(free_port)
PGB_PORT=$(free_port)
SY_PORT=$(free_port)
SYM_PORT=$(free_port)
while [ "$PGB_PORT" = "$PG_PORT" ]; do PGB_PORT=$(free_port); done
while [ "$SY_PORT" = "$PG_PORT" ] || [ "$SY_PORT" = "$PGB_PORT" ]; do SY_PORT=$(free_port); done
while [ "$SYM_PORT" = "$PG_PORT" ] || [ "$SYM_PORT" = "$PGB_PORT" ] || [ "$SYM_PORT" = "$SY_PORT" ]; do
    SYM_PORT=$(free_port)
done

# Wait until `psql ... -c 'select 1'` works on a port (for the proxies: proves the whole path).
wait_sql() {
    local name=$1 port=$2 user=$3 i
    for i in $(seq 1 100); do
        if timeout 10 "$PSQL" -X -h 127.0.0.1 -p "$port" -U "$user" -d bench -Atqc 'select 1' \
            >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    timeout 10 "$PSQL" -X -h 127.0.0.1 -p "$port" -U "$user" -d bench -Atc 'select 1' >&2 || true
    die "$name on port $port does not answer queries"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------
log "initdb in $TMP/pgdata (port $PG_PORT, binaries $PG_BIN)"
"${AS_SERVER[@]}" "$PG_BIN/initdb" -D "$TMP/pgdata" -U postgres --auth=trust -E UTF8 \
    --locale=C.UTF-8 --no-sync >"$TMP/initdb.log" 2>&1 || { cat "$TMP/initdb.log" >&2; die "initdb failed"; }
cat >>"$TMP/pgdata/postgresql.conf" <<EOF

# --- switchyard benches/compare.sh ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$TMP'
max_connections = 200
fsync = off
full_page_writes = off
shared_buffers = 128MB
EOF
if [ "$SERVER_TLS" = 1 ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=127.0.0.1 -keyout "$TMP/pgdata/server.key" -out "$TMP/pgdata/server.crt" \
        >"$TMP/openssl.log" 2>&1 || { cat "$TMP/openssl.log" >&2; die "openssl req failed"; }
    chmod 0600 "$TMP/pgdata/server.key"
    [ "$(id -u)" -eq 0 ] && chown "$SERVER_USER:" "$TMP/pgdata/server.key" "$TMP/pgdata/server.crt"
    printf "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n" \
        >>"$TMP/pgdata/postgresql.conf"
fi
PG_STARTED=1
"${AS_SERVER[@]}" "$PG_BIN/pg_ctl" -D "$TMP/pgdata" -l "$TMP/postgres.log" -w -t 60 start >/dev/null \
    || { tail -n 30 "$TMP/postgres.log" >&2; die "postgres did not start"; }

psql_admin() { "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }
psql_admin -d postgres -c "CREATE ROLE bench LOGIN" -c "CREATE DATABASE bench OWNER bench" >/dev/null
log "pgbench -i -s $SCALE"
"$PGBENCH" -i -s "$SCALE" -q -h 127.0.0.1 -p "$PG_PORT" -U bench bench >"$TMP/pgbench-init.log" 2>&1 \
    || { cat "$TMP/pgbench-init.log" >&2; die "pgbench -i failed"; }
psql_admin -d bench -c "VACUUM ANALYZE" >/dev/null

# ---------------------------------------------------------------------------------------------
# PgBouncer
# ---------------------------------------------------------------------------------------------
start_pgbouncer() {
    printf '"bench" ""\n' >"$TMP/userlist.txt"
    cat >"$TMP/pgbouncer.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$PG_PORT dbname=bench user=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = trust
auth_file = $TMP/userlist.txt
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = $MAX_CLIENTS
logfile = $TMP/pgbouncer.log
pidfile = $TMP/pgbouncer.pid
log_connections = 0
log_disconnections = 0
server_tls_sslmode = $([ "$SERVER_TLS" = 1 ] && echo require || echo disable)
EOF
    [ "$(id -u)" -eq 0 ] && chown "$SERVER_USER:" "$TMP/userlist.txt" "$TMP/pgbouncer.ini"
    PGB_STARTED=1
    # Started through runuser, PgBouncer would get the login's soft limit of 1024 open
    # files, fewer than MAX_CLIENTS asks for (it stops accepting near 1,000 clients).
    "${AS_SERVER[@]}" bash -c 'ulimit -n "$1" 2>/dev/null || ulimit -n "$(ulimit -Hn)"; shift; exec "$@"' \
        limit $((MAX_CLIENTS + 100)) "$PGBOUNCER" -d "$TMP/pgbouncer.ini" >"$TMP/pgbouncer.stdout" 2>&1 \
        || { cat "$TMP/pgbouncer.stdout" "$TMP/pgbouncer.log" >&2 2>/dev/null; die "pgbouncer did not start"; }
    wait_sql pgbouncer "$PGB_PORT" bench
}

# ---------------------------------------------------------------------------------------------
# switchyard
# ---------------------------------------------------------------------------------------------
# start_switchyard NAME PORT MULTIPLEX_DEPTH: sets LAST_PID
start_switchyard() {
    local name=$1 port=$2 depth=$3
    cat >"$TMP/$name.toml" <<EOF
[general]
workers = $WORKERS
max_client_connections = $MAX_CLIENTS

[postgres]
listen = "127.0.0.1:$port"
pool_mode = "transaction"

[pool]
size = $POOL_SIZE
multiplex_depth = $depth

[[user]]
name = "bench"
auth = "trust"

[[cluster]]
name = "bench"
database = "bench"
primary = "127.0.0.1:$PG_PORT"
user = "bench"
tls = "$([ "$SERVER_TLS" = 1 ] && echo require || echo disable)"
EOF
    "$SWITCHYARD" check --config "$TMP/$name.toml" >&2 || die "switchyard check rejected the config"
    # In its own session, as a service manager would run it and as PgBouncer (-d) and
    # PostgreSQL (pg_ctl) run here: with the kernel's autogroup scheduling (on by default),
    # a process left in this script's session shares one CPU share with pgbench.
    setsid "$SWITCHYARD" run --config "$TMP/$name.toml" >"$TMP/$name.log" 2>&1 </dev/null &
    LAST_PID=$!
    wait_sql "$name" "$port" bench
    kill -0 "$LAST_PID" 2>/dev/null || { cat "$TMP/$name.log" >&2; die "$name exited"; }
}

port_of() {
    case $1 in
        direct) echo "$PG_PORT" ;;
        pgbouncer) echo "$PGB_PORT" ;;
        switchyard) echo "$SY_PORT" ;;
        switchyard_mux) echo "$SYM_PORT" ;;
    esac
}

[[ " $CONTENDERS " == *" pgbouncer "* ]] && { log "starting pgbouncer on port $PGB_PORT"; start_pgbouncer; }
if [[ " $CONTENDERS " == *" switchyard "* ]]; then
    log "starting switchyard on port $SY_PORT"
    start_switchyard switchyard "$SY_PORT" 0
    SY_PID=$LAST_PID
fi
if [[ " $CONTENDERS " == *" switchyard_mux "* ]]; then
    log "starting switchyard_mux (multiplex_depth = $MUX_DEPTH) on port $SYM_PORT"
    start_switchyard switchyard_mux "$SYM_PORT" "$MUX_DEPTH"
    SYM_PID=$LAST_PID
fi
wait_sql postgres "$PG_PORT" bench

if [ -n "${HOLD:-}" ]; then
    # For profiling: keep the servers up for HOLD seconds and print where they listen.
    log "holding for ${HOLD}s: direct=$PG_PORT pgbouncer=$PGB_PORT (pid $(cat "$TMP/pgbouncer.pid" 2>/dev/null || echo none)) switchyard=$SY_PORT (pid ${SY_PID:-none}) switchyard_mux=$SYM_PORT (pid ${SYM_PID:-none})"
    sleep "$HOLD" &
    wait $! || true
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------
# run_one CONTENDER MODE CLIENTS ROUND -> appends one line to $RESULTS:
#   mode clients contender round status tps latency_ms failed_tx
run_one() {
    local who=$1 mode=$2 clients=$3 round=$4
    local port jobs out rc tps lat failed status
    port=$(port_of "$who")
    jobs=$((clients < JOBS ? clients : JOBS))
    out=$TMP/run.out
    local cmd=("$PGBENCH" -n -S -M "$mode" -c "$clients" -j "$jobs" -T "$DURATION"
        -h 127.0.0.1 -p "$port" -U bench bench)
    rc=0
    # In the background + wait, so that a TERM/INT to this script is acted on at once.
    timeout -k 5 $((DURATION + 60)) "${cmd[@]}" >"$out" 2>&1 &
    BENCH_PID=$!
    wait "$BENCH_PID" || rc=$?
    BENCH_PID=""
    {
        printf '\n===== %s mode=%s clients=%s round=%s rc=%s\n$ %s\n' \
            "$who" "$mode" "$clients" "$round" "$rc" "${cmd[*]}"
        cat "$out"
    } >>"$RAW"
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time).*/\1/p' "$out" | head -n1)
    [ -n "$tps" ] || tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | head -n1)
    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$out" | head -n1)
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out" | head -n1)
    [ -n "$failed" ] || failed=0
    status=ok
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        status=timeout
    elif [ "$rc" -ne 0 ] || grep -q 'aborted' "$out"; then
        status=error
    elif grep -q '^pgbench: error' "$out"; then
        status=server_error # e.g. an ERROR the proxy passed on; pgbench went on
    elif [ "$failed" != 0 ]; then
        status=failed_tx
    elif [ -z "$tps" ]; then
        status=no_output
    fi
    [ -n "$tps" ] || tps=0
    [ -n "$lat" ] || lat=0
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$clients" "$who" "$round" "$status" "$tps" \
        "$lat" "$failed" >>"$RESULTS"
    if [ "$status" = ok ]; then
        log "  $who: $tps tps, $lat ms"
    else
        log "  $who: $status (rc=$rc, tps=$tps): $(grep -m1 -E 'error|ERROR|FATAL' "$out" || true)"
    fi
}

skipped() { # CONTENDER MODE -> true when this cell is left out on purpose
    [ "$1" = pgbouncer ] && [ "$2" = prepared ] && [ "$PGBOUNCER_PREPARED" = skip ]
}

read -r -a CONT <<<"$CONTENDERS"
NCONT=${#CONT[@]}

if [ "$WARMUP" -gt 0 ]; then
    log "warm-up: ${WARMUP}s of pgbench -S per contender (not recorded)"
    for who in "${CONT[@]}"; do
        timeout -k 5 $((WARMUP + 60)) "$PGBENCH" -n -S -c 4 -j 2 -T "$WARMUP" -h 127.0.0.1 \
            -p "$(port_of "$who")" -U bench bench >"$TMP/warmup.out" 2>&1 \
            || { cat "$TMP/warmup.out" >&2; die "warm-up against $who failed"; }
    done
fi

ncells=$(($(wc -w <<<"$MODES") * $(wc -w <<<"$CLIENTS")))
log "measuring: $ncells cells x $ROUNDS rounds x $NCONT contenders x ${DURATION}s \
(about $((ncells * ROUNDS * NCONT * (DURATION + 1) / 60 + 1)) min)"
START_TS=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
awk '{ exit !($1 > 1.0) }' /proc/loadavg \
    && log "note: load average is $LOAD_START before measuring; other work on this machine adds noise"
for mode in $MODES; do
    for clients in $CLIENTS; do
        for round in $(seq 1 "$ROUNDS"); do
            log "mode=$mode clients=$clients round $round/$ROUNDS"
            # Rotate the starting contender every round: d,p,s / p,s,d / s,d,p / ...
            for k in $(seq 0 $((NCONT - 1))); do
                who=${CONT[$(((round - 1 + k) % NCONT))]}
                skipped "$who" "$mode" && continue
                run_one "$who" "$mode" "$clients" "$round"
            done
        done
    done
done
END_TS=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
# median of the numbers on stdin (empty when none)
median() {
    sort -g | awk '{a[NR]=$1} END {
        if (NR == 0) exit;
        if (NR % 2) printf "%.6g\n", a[(NR+1)/2]; else printf "%.6g\n", (a[NR/2]+a[NR/2+1])/2 }'
}
# cell_stat MODE CLIENTS CONTENDER -> "tps lat nok nrun" (tps/lat: medians over ok rounds)
cell_stat() {
    local sel tps lat nok nrun
    sel=$(awk -F'\t' -v m="$1" -v c="$2" -v w="$3" '$1==m && $2==c && $3==w' "$RESULTS")
    nrun=$(printf '%s' "$sel" | grep -c . || true)
    nok=$(printf '%s\n' "$sel" | awk -F'\t' '$5=="ok"' | grep -c . || true)
    tps=$(printf '%s\n' "$sel" | awk -F'\t' '$5=="ok" {print $6}' | median)
    lat=$(printf '%s\n' "$sel" | awk -F'\t' '$5=="ok" {print $7}' | median)
    echo "${tps:--} ${lat:--} $nok $nrun"
}
fmt_tps() { [ "$1" = - ] && echo - || awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }
ratio() { # A B -> A/B with 2 decimals, or n/a
    if [ "$1" = - ] || [ "$2" = - ]; then echo n/a; else awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a/b }'; fi
}
# What a contender's cell shows: the median, or the failure count when a round failed.
show() { # TPS NOK NRUN
    local tps=$1 nok=$2 nrun=$3
    if [ "$nrun" -eq 0 ]; then
        echo "n/a"
    elif [ "$nok" -eq 0 ]; then
        echo "FAIL ($nrun/$nrun rounds)"
    elif [ "$nok" -lt "$nrun" ]; then
        echo "$(fmt_tps "$tps") (FAIL $((nrun - nok))/$nrun rounds)"
    else
        fmt_tps "$tps"
    fi
}
has() { [[ " $CONTENDERS " == *" $1 "* ]]; }

TABLE=$TMP/table.md
{
    printf '| mode | clients |'
    for w in "${CONT[@]}"; do printf ' %s TPS | %s lat ms |' "$w" "$w"; done
    has pgbouncer && has direct && printf ' pgbouncer/direct |'
    for sy in switchyard switchyard_mux; do
        has $sy && has direct && printf ' %s/direct |' $sy
        has $sy && has pgbouncer && printf ' %s/pgbouncer | target | met |' $sy
    done
    printf '\n|---|---:|'
    for w in "${CONT[@]}"; do printf -- '---:|---:|'; done
    has pgbouncer && has direct && printf -- '---:|'
    for sy in switchyard switchyard_mux; do
        has $sy && has direct && printf -- '---:|'
        has $sy && has pgbouncer && printf -- '---:|---:|---|'
    done
    printf '\n'
    for mode in $MODES; do
        for clients in $CLIENTS; do
            declare -A T=() L=() OK=()
            printf '| %s | %s |' "$mode" "$clients"
            for w in "${CONT[@]}"; do
                read -r tps lat nok nrun <<<"$(cell_stat "$mode" "$clients" "$w")"
                if [ "$nrun" -gt 0 ] && [ "$nok" -eq "$nrun" ]; then
                    T[$w]=$tps L[$w]=$lat OK[$w]=1
                else
                    T[$w]=- L[$w]=- OK[$w]=0
                fi
                if [ "$nrun" -eq 0 ] && skipped "$w" "$mode"; then
                    printf ' n/a (not run) | - |'
                else
                    printf ' %s | %s |' "$(show "$tps" "$nok" "$nrun")" \
                        "$([ "$nok" -gt 0 ] && awk -v x="$lat" 'BEGIN{printf "%.3f", x}' || echo -)"
                fi
            done
            has pgbouncer && has direct && printf ' %s |' "$(ratio "${T[pgbouncer]}" "${T[direct]}")"
            for sy in switchyard switchyard_mux; do
            has $sy && has direct && printf ' %s |' "$(ratio "${T[$sy]}" "${T[direct]}")"
            if has $sy && has pgbouncer; then
                r=$(ratio "${T[$sy]}" "${T[pgbouncer]}")
                case $clients in 1) tgt=1.00 ;; 16) tgt=1.20 ;; *) tgt=- ;; esac
                if [ "$tgt" = - ]; then
                    met=-
                elif [ "${OK[$sy]}" != 1 ]; then
                    met="no ($sy failed)"
                elif [ "$r" = n/a ]; then
                    met="n/a (no pgbouncer result)"
                elif awk -v r="$r" -v t="$tgt" 'BEGIN { exit !(r >= t) }'; then
                    met=yes
                else
                    met=no
                fi
                printf ' %s | %s | %s |' "$r" "$([ "$tgt" = - ] && echo - || echo "≥ $tgt")" "$met"
            fi
            done
            printf '\n'
            unset T L OK
        done
    done
} >"$TABLE"

# Per-round detail, so the noise is visible.
ROUNDS_TABLE=$TMP/rounds.md
{
    printf '| mode | clients | contender | TPS per round (run order rotates each round) | failed rounds |\n'
    printf '|---|---:|---|---|---|\n'
    for mode in $MODES; do
        for clients in $CLIENTS; do
            for w in "${CONT[@]}"; do
                rows=$(awk -F'\t' -v m="$mode" -v c="$clients" -v w="$w" '$1==m && $2==c && $3==w' "$RESULTS")
                [ -n "$rows" ] || continue
                per=$(printf '%s\n' "$rows" | awk -F'\t' '{ printf "%s%s", (NR>1?", ":""), ($5=="ok" ? sprintf("%.0f", $6) : $5) }')
                bad=$(printf '%s\n' "$rows" | awk -F'\t' '$5!="ok"' | grep -c . || true)
                printf '| %s | %s | %s | %s | %s |\n' "$mode" "$clients" "$w" "$per" "$bad"
            done
        done
    done
} >"$ROUNDS_TABLE"

CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | sed 's/^model name[[:space:]]*:[[:space:]]*//' || true)
[ -n "$CPU_MODEL" ] || CPU_MODEL=$(uname -m)
PG_VERSION=$("$PG_BIN/postgres" --version 2>/dev/null || echo unknown)
PGB_VERSION=$("$PGBOUNCER" --version 2>/dev/null | head -n1 || echo unknown)
PGBENCH_VERSION=$("$PGBENCH" --version 2>/dev/null || echo unknown)
SY_VERSION=$("$SWITCHYARD" --version 2>/dev/null || echo unknown)
SY_BUILT=$(date -u -r "$SWITCHYARD" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo unknown)
GIT_REV=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(cd "$ROOT" && [ -n "$(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] \
    && echo " (working tree has uncommitted changes under src/)" || true)

# Problems the proxies logged during the run.
problems() { # LOGFILE
    [ -f "$1" ] || { echo "(no log)"; return; }
    local n
    n=$(grep -c -E 'ERROR|WARN|error|panick' "$1" || true)
    if [ "$n" -eq 0 ]; then
        echo "no ERROR/WARN lines"
    else
        echo "$n ERROR/WARN lines, first ones:"
        grep -m5 -E 'ERROR|WARN|error|panick' "$1" | cut -c1-300 | sed 's/^/    /'
    fi
}
SY_PROBLEMS=$(has switchyard && problems "$TMP/switchyard.log" || echo "not run")
SYM_PROBLEMS=$(has switchyard_mux && problems "$TMP/switchyard_mux.log" || echo "not run")
PGB_PROBLEMS=$(has pgbouncer && problems "$TMP/pgbouncer.log" || echo "not run")

REPORT=$TMP/report.md
{
    echo "# pgbench -S: direct vs PgBouncer vs switchyard"
    echo
    echo "- Date: $START_TS to $END_TS"
    echo "- Command: \`$CMDLINE\`"
    echo "- Machine: $(nproc) cores, $CPU_MODEL, Linux $(uname -r); load average $LOAD_START before, $LOAD_END after"
    echo "- PostgreSQL: $PG_VERSION (fsync=off, full_page_writes=off, shared_buffers=128MB, max_connections=200)"
    echo "- pgbench: $PGBENCH_VERSION; \`pgbench -n -S -M MODE -c CLIENTS -j min(CLIENTS,$JOBS) -T $DURATION\`, scale $SCALE, TCP to 127.0.0.1"
    echo "- PgBouncer: $PGB_VERSION, pool_mode=transaction, default_pool_size=$POOL_SIZE"
    echo "- switchyard: $SY_VERSION, git $GIT_REV$GIT_DIRTY, release build (binary from $SY_BUILT$([ "$SKIP_BUILD" = 1 ] && echo ', SKIP_BUILD=1')), pool_mode=transaction, [pool] size=$POOL_SIZE, workers=$WORKERS (0 = one per core); switchyard_mux: the same with multiplex_depth=$MUX_DEPTH"
    echo
    echo "Median over $ROUNDS rounds of ${DURATION}s each; contenders alternate inside every round."
    echo "Target (switchyard/pgbouncer TPS, for each switchyard contender): at least 1.00 at 1 client, at least 1.20 at 16 clients."
    echo "A cell marked FAIL had, in that many rounds, a non-zero pgbench exit, aborted clients, failed"
    echo "transactions or any \"pgbench: error\" line (an ERROR from the server or proxy); its ratios are n/a."
    echo "Raw pgbench output: latest-raw.txt next to this file."
    echo
    cat "$TABLE"
    echo
    echo "Per round:"
    echo
    cat "$ROUNDS_TABLE"
    echo
    echo "Proxy logs during the run:"
    echo
    echo "- switchyard: $SY_PROBLEMS"
    echo "- switchyard_mux: $SYM_PROBLEMS"
    echo "- pgbouncer: $PGB_PROBLEMS"
} >"$REPORT"

mkdir -p "$RESULTS_DIR"
cp "$REPORT" "$RESULTS_DIR/latest.md"
{
    echo "# raw pgbench output of the run in latest.md ($START_TS)"
    cat "$RAW"
    for f in switchyard.log switchyard_mux.log pgbouncer.log; do
        [ -f "$TMP/$f" ] || continue
        printf '\n===== %s (ERROR/WARN lines, at most 50)\n' "$f"
        grep -E 'ERROR|WARN|error|panick' "$TMP/$f" | head -n 50 || true
    done
} >"$RESULTS_DIR/latest-raw.txt"

echo
cat "$REPORT"
echo
log "written $RESULTS_DIR/latest.md and $RESULTS_DIR/latest-raw.txt"
