#!/usr/bin/env bash
# Memory per MySQL client connection of a standalone switchyard (release build, `workers = 1`,
# transaction pooling, a pool of 8 to the primary) in front of the MariaDB primary that
# `HOLD=N cargo bench --bench mysql_sysbench` keeps up: benches/conn_memory.py (PROTOCOL=mysql,
# PyMySQL) opens N clients and reads the proxy's resident set at each step (logged in, one
# query, one 64 KiB row read, all closed), then does it again in the same process (a second
# wave shows whether the first one's memory is reused or kept).
#
#   cargo build --release && N=5000 benches/mysql_conn_memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-5000}
BIN=$(realpath "${1:-target/release/switchyard}")
want=$((N + 500))
[ "$(ulimit -n)" -ge "$want" ] || ulimit -n "$want"
TMP=$(mktemp -d /tmp/switchyard-mymem.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
# The servers: held up for as long as the two waves may take (PyMySQL logs in in ~20 ms).
HOLD=$((N / 10 + 300)) WORKERS=1 ROUNDS=1 cargo bench --bench mysql_sysbench >"$TMP/bench.log" 2>&1 &
BENCH=$!
PIDS+=("$BENCH")
PRIMARY=""
for _ in $(seq 1 900); do
    PRIMARY=$(sed -n 's/^direct \([0-9]*\) .*holding.*/\1/p' "$TMP/bench.log")
    [ -n "$PRIMARY" ] && break
    kill -0 "$BENCH" 2>/dev/null || { cat "$TMP/bench.log" >&2; exit 1; }
    sleep 1
done
[ -n "$PRIMARY" ] || { cat "$TMP/bench.log" >&2; exit 1; }
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$TMP/switchyard.toml" <<EOF
[general]
workers = 1
max_client_connections = $want

[mysql]
listen = "127.0.0.1:$PORT"

[pool]
size = 8

[[user]]
name = "app"
password = "app_pw"

[[cluster]]
name = "sbtest"
protocol = "mysql"
database = "sbtest"
primary = "127.0.0.1:$PRIMARY"
user = "switchyard"
password = "switchyard_pw"
EOF
"$BIN" run --config "$TMP/switchyard.toml" >"$TMP/switchyard.log" 2>&1 &
SY_PID=$!
PIDS+=("$SY_PID")
for _ in $(seq 1 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT)).close()" 2>/dev/null && break
    sleep 0.1
done
echo "| proxy | clients | step | RSS MiB | growth per client KiB |"
echo "|---|---|---|---|---|"
for wave in first second; do
    PROTOCOL=mysql PASSWORD=app_pw python3 benches/conn_memory.py "switchyard ($wave wave)" \
        "$PORT" "$SY_PID" "$N" app sbtest
done
