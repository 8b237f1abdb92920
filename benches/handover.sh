#!/usr/bin/env bash
# What a handover ([general] handover_socket) costs clients: pgbench connecting afresh for
# every transaction (-C) through the proxy while two new processes take the listeners over
# in turn (at about a third and two thirds of the run). Prints pgbench's summary and the
# slowest transactions (connect included) of the run and of the 200 ms after each handover.
#
#   benches/handover.sh [BINARY]                # default: target/release/switchyard
#   CLIENTS=8 DURATION=12 benches/handover.sh
#   MODE=restart benches/handover.sh            # instead: SIGTERM, then a new process binds
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-target/release/switchyard}")
CLIENTS=${CLIENTS:-8}
SECONDS_RUN=${DURATION:-12}
PG_BIN=${SWITCHYARD_PG_BIN:-/usr/lib/postgresql/15/bin}

TMP=$(mktemp -d /tmp/switchyard-ho.XXXXXX)
chmod 755 "$TMP"
AS=()
if [ "$(id -u)" -eq 0 ]; then
    AS=(runuser -u postgres --)
    mkdir "$TMP/pgdir" && chown postgres "$TMP/pgdir"
else
    mkdir "$TMP/pgdir"
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PGPORT=$(free_port)
PROXY_PORT=$(free_port)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    "${AS[@]}" "$PG_BIN/pg_ctl" -D "$TMP/pgdir/pg" -m immediate stop >/dev/null 2>&1 || true
    [ -n "${KEEP:-}" ] && echo "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT

"${AS[@]}" "$PG_BIN/initdb" -D "$TMP/pgdir/pg" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
cat >>"$TMP/pgdir/pg/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$TMP/pgdir'
fsync = off
max_connections = 200
EOF
"${AS[@]}" "$PG_BIN/pg_ctl" -D "$TMP/pgdir/pg" -l "$TMP/pgdir/pg.log" -w start >/dev/null
psql -h 127.0.0.1 -p "$PGPORT" -U postgres -qc "CREATE DATABASE bench" >/dev/null
pgbench -i -s 1 -q -h 127.0.0.1 -p "$PGPORT" -U postgres bench >/dev/null 2>&1

cat >"$TMP/switchyard.toml" <<EOF
[general]
workers = 2
drain_timeout = "10s"
$([ "${MODE:-handover}" = handover ] && echo "handover_socket = \"$TMP/handover.sock\"")

[postgres]
listen = "127.0.0.1:$PROXY_PORT"

[pool]
size = 8

[[user]]
name = "postgres"
auth = "trust"

[[cluster]]
name = "bench"
database = "bench"
primary = "127.0.0.1:$PGPORT"
user = "postgres"
EOF
start() {
    "$BIN" run --config "$TMP/switchyard.toml" 2>"$TMP/$1.log" &
    PIDS+=($!)
    for _ in $(seq 200); do
        grep -q "postgres listener ready" "$TMP/$1.log" && return 0
        sleep 0.02
    done
    echo "proxy $1 did not start" >&2; cat "$TMP/$1.log" >&2; exit 1
}
start a
cd "$TMP"
pgbench -C -S -n -c "$CLIENTS" -j 2 -T "$SECONDS_RUN" -l --log-prefix=tx \
    -h 127.0.0.1 -p "$PROXY_PORT" -U postgres bench >"$TMP/pgbench.out" 2>&1 &
BENCH=$!
T0=$(date +%s.%N)
MARKS=()
for name in b c; do
    sleep "$(python3 -c "print($SECONDS_RUN/3)")"
    MARKS+=("$(date +%s.%N)")
    if [ "${MODE:-handover}" = restart ]; then
        OLD=${PIDS[-1]}
        kill -TERM "$OLD"
        # The new process binds once the old one has closed its listeners (at once:
        # shutdown_grace = 0); until then the port is taken.
        for _ in $(seq 500); do
            python3 -c "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $PROXY_PORT))" 2>/dev/null && break
            sleep 0.002
        done
    fi
    start "$name"
done
wait "$BENCH" || true
cd - >/dev/null
grep -E "number of (transactions actually processed|failed)|latency average|connection time|tps|aborted" "$TMP/pgbench.out" || cat "$TMP/pgbench.out"
python3 - "$TMP" "${MARKS[@]}" <<'EOF'
import glob, sys
tmp, marks = sys.argv[1], [float(m) for m in sys.argv[2:]]
rows = []
for f in glob.glob(f"{tmp}/tx.*"):
    for line in open(f):
        p = line.split()
        # client tx latency_us script epoch_s epoch_us
        lat, end = int(p[2]), int(p[4]) + int(p[5]) / 1e6
        rows.append((end, lat))
rows.sort()
lats = sorted(l for _, l in rows)
q = lambda p: lats[min(len(lats) - 1, int(p * len(lats)))] / 1000
print(f"transactions logged {len(rows)}, latency ms p50 {q(.5):.2f} p99 {q(.99):.2f} max {lats[-1]/1000:.2f}")
for i, m in enumerate(marks):
    near = [l for e, l in rows if m <= e <= m + 0.2]
    if near:
        print(f"handover {i+1}: {len(near)} transactions ended in the 200 ms after it was started, max latency {max(near)/1000:.2f} ms")
EOF
for name in a b; do
    grep -h "handed over\|took over" "$TMP/$name.log" "$TMP/b.log" "$TMP/c.log" 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' | sort -u | cut -c1-150
    break
done
