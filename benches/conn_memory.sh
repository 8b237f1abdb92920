#!/usr/bin/env bash
# Memory per client connection: PgBouncer and switchyard (both transaction pooling, release
# build) in front of one PostgreSQL server, each given N client connections by
# benches/conn_memory.py, which reads the proxy's resident set at each step (logged in, one
# query each, a 64 KiB answer each, all gone). The servers come from benches/compare.sh's
# HOLD mode, so the configs are exactly the compare bench's.
#
#   N=5000 benches/conn_memory.sh              # prints a Markdown table
#   WORKERS=1 N=2000 benches/conn_memory.sh    # switchyard [general] workers (default: 0, one per core)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-5000}
[ "$(ulimit -n)" -gt $((N + 200)) ] || ulimit -n $((N + 1000)) 2>/dev/null \
    || { echo "need more than $N open files (ulimit -n)" >&2; exit 1; }
LOG=$(mktemp /tmp/switchyard-mem.XXXXXX)
HOLD=1800 CONTENDERS="pgbouncer switchyard" MAX_CLIENTS=$((N + 100)) SCALE=1 WARMUP=0 \
    bash benches/compare.sh >"$LOG" 2>&1 &
HOLDER=$!
trap 'kill $HOLDER 2>/dev/null; pkill -P $HOLDER 2>/dev/null; wait 2>/dev/null; rm -f "$LOG"' EXIT
for _ in $(seq 1 600); do
    grep -q "holding for" "$LOG" && break
    kill -0 $HOLDER 2>/dev/null || { cat "$LOG" >&2; exit 1; }
    sleep 1
done
line=$(grep "holding for" "$LOG")
pgb_port=$(sed -E 's/.*pgbouncer=([0-9]+).*/\1/' <<<"$line")
pgb_pid=$(sed -E 's/.*pgbouncer=[0-9]+ \(pid ([0-9]+)\).*/\1/' <<<"$line")
sy_port=$(sed -E 's/.* switchyard=([0-9]+).*/\1/' <<<"$line")
sy_pid=$(sed -E 's/.* switchyard=[0-9]+ \(pid ([0-9]+)\).*/\1/' <<<"$line")
echo "| proxy | clients | step | RSS MiB | growth per client KiB |"
echo "|---|---|---|---|---|"
python3 benches/conn_memory.py PgBouncer "$pgb_port" "$pgb_pid" "$N"
python3 benches/conn_memory.py switchyard "$sy_port" "$sy_pid" "$N"
