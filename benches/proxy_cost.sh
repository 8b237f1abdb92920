#!/usr/bin/env bash
# What a proxy process costs per transaction: one `pgbench -S` run against PORT while the
# CPU time and context switches of process PID (the proxy; 0 for none, e.g. direct) and of
# the whole machine are read from /proc before and after. Prints one line:
#   tps, machine idle %, machine context switches per tx, the proxy's user and system
#   microseconds per tx, and its voluntary / involuntary context switches per tx.
#
# Use it on the servers `HOLD=600 KEEP_TMP=1 benches/compare.sh` keeps up (it prints the
# ports and switchyard's pid; PgBouncer's pid is in the kept directory's pgbouncer.pid):
#   benches/proxy_cost.sh PORT PID [CLIENTS=16] [SECONDS=10] [MODE=simple]
# Alternate the contenders and repeat: single runs move by 10-20% on a shared 2-core VM.
# Loopback only; bounded by -T.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
port=$1 pid=$2 clients=${3:-16} secs=${4:-10} mode=${5:-simple}
jobs=$((clients < 2 ? clients : 2))

cpu() { awk '/^cpu /{print $2+$3+$4+$6+$7+$8, $5}' /proc/stat; }
ctxt() { awk '/^ctxt/{print $2}' /proc/stat; }
proc_cpu() { if [ "$pid" != 0 ]; then awk '{print $14, $15}' "/proc/$pid/stat"; else echo 0 0; fi; }
proc_cs() {
    if [ "$pid" != 0 ]; then
        cat /proc/"$pid"/task/*/status | awk '/^voluntary_ctxt/{v+=$2} /^nonvoluntary_ctxt/{n+=$2} END{print v+0, n+0}'
    else
        echo 0 0
    fi
}

read -r busy1 idle1 < <(cpu); cs1=$(ctxt); read -r u1 s1 < <(proc_cpu); read -r v1 n1 < <(proc_cs)
out=$(pgbench -n -S -M "$mode" -c "$clients" -j "$jobs" -T "$secs" -h 127.0.0.1 -p "$port" -U bench bench 2>&1)
read -r busy2 idle2 < <(cpu); cs2=$(ctxt); read -r u2 s2 < <(proc_cpu); read -r v2 n2 < <(proc_cs)

tps=$(awk '/^tps/{print $3}' <<<"$out")
tx=$(awk '/transactions actually processed/{print $NF}' <<<"$out")
[ -n "$tx" ] && [ "$tx" -gt 0 ] || { echo "pgbench failed:" >&2; echo "$out" >&2; exit 1; }
awk -v tps="$tps" -v tx="$tx" -v b=$((busy2 - busy1)) -v i=$((idle2 - idle1)) -v cs=$((cs2 - cs1)) \
    -v u=$((u2 - u1)) -v s=$((s2 - s1)) -v v=$((v2 - v1)) -v n=$((n2 - n1)) -v hz="$(getconf CLK_TCK)" 'BEGIN {
    printf "tps %.0f idle %.1f%% machine_cs/tx %.2f proxy user %.2f sys %.2f us/tx, proxy cs/tx vol %.2f invol %.2f\n",
        tps, 100 * i / (b + i), cs / tx, u * 1e6 / hz / tx, s * 1e6 / hz / tx, v / tx, n / tx
}'
