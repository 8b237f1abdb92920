#!/bin/bash
# Where the machine's CPU goes per query while sysbench runs against PORT: the whole machine
# (from /proc/stat), each given process (from /proc/PID/stat: user + system) and sysbench
# itself, in microseconds per query, plus the idle ticks. For the `HOLD=N cargo bench --bench
# mysql_sysbench` servers and proxies (it prints their ports and pids; the MariaDB pids are in
# each node's mariadbd.pid).
#
#   benches/cpu_by_process.sh PORT name=PID [name=PID ...] -- TEST [sysbench options]
#   benches/cpu_by_process.sh 35409 proxy=9621 primary=9501 replica=9502 -- oltp_read_write --skip_trx=on
#
# Env: THREADS (8), TIME (8 s), TABLES (4), TABLE_SIZE (10000), USER (app), PASSWORD (app_pw),
# DB (sbtest).
set -euo pipefail
port=$1; shift
names=(); pids=()
while [ "$1" != "--" ]; do names+=("${1%%=*}"); pids+=("${1#*=}"); shift; done
shift
test=$1; shift
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
machine() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $5}' /proc/stat; }
before=(); for p in "${pids[@]}"; do before+=("$(ticks "$p")"); done
read -r busy0 idle0 < <(machine)
out=$( { /usr/bin/time -f "SYSBENCH_CPU %U %S" sysbench "$test" --db-driver=mysql \
  --mysql-host=127.0.0.1 --mysql-port="$port" --mysql-user="${USER:-app}" \
  --mysql-password="${PASSWORD:-app_pw}" --mysql-db="${DB:-sbtest}" --tables="${TABLES:-4}" \
  --table-size="${TABLE_SIZE:-10000}" --threads="${THREADS:-8}" --time="${TIME:-8}" \
  --report-interval=0 --mysql-ssl=off "$@" run; } 2>&1 )
read -r busy1 idle1 < <(machine)
queries=$(echo "$out" | awk '/queries:/ {print $2}')
tps=$(echo "$out" | awk '/transactions:/ {gsub("\\(", "", $3); print $3}')
us() { echo "$1" | awk -v q="$queries" '{printf "%.1f", $1 * 10000 / q}'; }
line="port $port: $tps TPS; us/query: machine $(us $((busy1 - busy0)))"
for i in "${!pids[@]}"; do
  line+=" ${names[$i]} $(us "$(echo "$(ticks "${pids[$i]}") - ${before[$i]}" | bc)")"
done
sb=$(echo "$out" | awk '/SYSBENCH_CPU/ {print ($2 + $3) * 100}')
line+=" sysbench $(us "$sb"); idle ticks $((idle1 - idle0))"
echo "$line"
