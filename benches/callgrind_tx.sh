#!/usr/bin/env bash
# Instructions the proxy spends per pgbench transaction, counted with callgrind (repeatable
# whatever else the machine is doing). One worker, one client, a primary only.
#
#   benches/callgrind_tx.sh [BINARY]          # default: target/release/switchyard
#   MODES="simple extended prepared" SCRIPTS="select-only tpcb-like" TX=3000 benches/callgrind_tx.sh
#   GENERAL="query_digests = 0" benches/callgrind_tx.sh     # a line more in [general]
#   POOL='query_timeout = "30s"' benches/callgrind_tx.sh    # and in [pool]
#
# For each pgbench script and protocol: 300 warm-up transactions, counters zeroed, TX
# transactions, counters dumped; prints instructions per transaction (Ir total / TX).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/switchyard}
MODES=${MODES:-"simple extended prepared"}
SCRIPTS=${SCRIPTS:-"select-only tpcb-like"}
TX=${TX:-3000}
PG_BIN=${SWITCHYARD_PG_BIN:-/usr/lib/postgresql/15/bin}
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }

TMP=$(mktemp -d /tmp/switchyard-cg.XXXXXX)
AS=()
if [ "$(id -u)" -eq 0 ]; then
    AS=(runuser -u postgres --)
    chown postgres "$TMP"
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PGPORT=$(free_port)
PROXY_PORT=$(free_port)
PROXY_PID=
cleanup() {
    [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null && wait "$PROXY_PID" 2>/dev/null || true
    "${AS[@]}" "$PG_BIN/pg_ctl" -D "$TMP/pg" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

"${AS[@]}" "$PG_BIN/initdb" -D "$TMP/pg" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
cat >>"$TMP/pg/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$TMP'
fsync = off
full_page_writes = off
EOF
"${AS[@]}" "$PG_BIN/pg_ctl" -D "$TMP/pg" -l "$TMP/pg.log" -w start >/dev/null
psql -h 127.0.0.1 -p "$PGPORT" -U postgres -qc "CREATE DATABASE bench" >/dev/null
pgbench -i -s 1 -q -h 127.0.0.1 -p "$PGPORT" -U postgres bench >/dev/null 2>&1

cat >"$TMP/switchyard.toml" <<EOF
[general]
workers = 1
${GENERAL:-}

[postgres]
listen = "127.0.0.1:$PROXY_PORT"

[pool]
size = 4
${POOL:-}

[[user]]
name = "postgres"
auth = "trust"

[[cluster]]
name = "bench"
database = "bench"
primary = "127.0.0.1:$PGPORT"
user = "postgres"
EOF
valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.%p" "$BIN" run --config "$TMP/switchyard.toml" \
    >"$TMP/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 1 200); do
    psql -h 127.0.0.1 -p "$PROXY_PORT" -U postgres -d bench -qAtc "SELECT 1" >/dev/null 2>&1 && break
    sleep 0.2
done
echo "binary: $BIN ($(git rev-parse --short HEAD 2>/dev/null || echo ?))"
echo "| script | protocol | instructions per transaction |"
echo "|---|---|---:|"
for script in $SCRIPTS; do
    for mode in $MODES; do
        pg=(pgbench -n -b "$script" -M "$mode" -c 1 -h 127.0.0.1 -p "$PROXY_PORT" -U postgres bench)
        "${pg[@]}" -t 300 >/dev/null 2>&1
        callgrind_control -z "$PROXY_PID" >/dev/null 2>&1
        "${pg[@]}" -t "$TX" >/dev/null 2>&1
        callgrind_control -d "$PROXY_PID" >/dev/null 2>&1
        sleep 0.5
        out=$(ls -t "$TMP"/cg.$PROXY_PID* | head -1)
        ir=$(grep -E '^(summary|totals):' "$out" | head -1 | awk '{print $2}')
        echo "| $script | $mode | $((ir / TX)) |"
        if [ -n "${ANNOTATE:-}" ]; then
            cp "$out" "$ANNOTATE.$script.$mode.out"
        fi
        rm -f "$TMP"/cg.$PROXY_PID.*
    done
done
