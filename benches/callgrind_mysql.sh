#!/usr/bin/env bash
# Instructions the proxy spends per MySQL query, counted with callgrind (repeatable whatever
# else the machine is doing). One worker, sysbench with server-side prepared statements.
#
# Needs the servers of the MySQL bench, held up:
#   HOLD=3600 cargo bench --bench mysql_sysbench      # prints "direct PORT ... "
# then, with the primary's port and (for the split) the replica's:
#   PRIMARY=PORT [REPLICA=PORT] benches/callgrind_mysql.sh [BINARY]
#   TEST=oltp_read_only EVENTS=500 PRIMARY=... benches/callgrind_mysql.sh
#   CG_OUT=/tmp/cg.new PRIMARY=... benches/callgrind_mysql.sh   # keep the profile (callgrind_annotate)
#
# Runs 100 warm-up events, zeroes the counters, runs EVENTS events with 4 threads, dumps the
# counters, and prints the instructions per query (Ir total / sysbench's query count; the
# health checker's probes are in the total, a few per second).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/switchyard}
TEST=${TEST:-oltp_read_write}
EVENTS=${EVENTS:-1000}
: "${PRIMARY:?PRIMARY=port of the held MariaDB primary}"
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }
command -v sysbench >/dev/null || { echo "needs sysbench" >&2; exit 1; }

TMP=$(mktemp -d /tmp/switchyard-cgmy.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

REPLICAS=
[ -n "${REPLICA:-}" ] && REPLICAS="replicas = [\"127.0.0.1:$REPLICA\"]"
cat >"$TMP/switchyard.toml" <<EOF
[general]
workers = 1

[mysql]
listen = "127.0.0.1:$PORT"

[health]
interval = "500ms"

[pool]
size = 4

[[user]]
name = "app"
password = "app_pw"

[[cluster]]
name = "sbtest"
protocol = "mysql"
database = "sbtest"
primary = "127.0.0.1:$PRIMARY"
$REPLICAS
user = "switchyard"
password = "switchyard_pw"
max_lag = "30s"
EOF

SWITCHYARD_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" \
    "$BIN" run --config "$TMP/switchyard.toml" 2>"$TMP/vg.log" &
PID=$!
for _ in $(seq 1 120); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1)" 2>/dev/null && break
    sleep 0.5
done
sleep 3 # the health checker sees the replica

EXTRA=()
[ "$TEST" = oltp_read_write ] && EXTRA=(--skip_trx=on --mysql-ignore-errors=1062,1213,1205,1020)
sb() {
    sysbench "$TEST" --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$PORT" \
        --mysql-user=app --mysql-password=app_pw --mysql-db=sbtest --tables=4 \
        --table-size=10000 --threads=4 --time=0 --events="$1" "${EXTRA[@]}" run
}
sb 100 >/dev/null
callgrind_control -z "$PID" >/dev/null
QUERIES=$(sb "$EVENTS" | awk '$1 == "queries:" {print $2}')
callgrind_control -d "$PID" >/dev/null
sleep 1
IR=$(cat "$TMP"/cg.out* | awk '/^summary:/ {s+=$2} /^totals:/ {t+=$2} END {print (s ? s : t)}')
[ -n "${CG_OUT:-}" ] && cp "$TMP"/cg.out.1 "$CG_OUT"
echo "$TEST: $QUERIES queries, $IR instructions, $((IR / QUERIES)) per query ($BIN)"
