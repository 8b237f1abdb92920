#!/usr/bin/env bash
# What read/write splitting costs: pgbench -S through Switchyard with routing off
# (read_write_split = false, the two replicas configured), with routing on where the one
# "replica" is the primary itself (every statement classified and a replica sought; the health
# checker sees a primary there, so the fallback sends the read to the primary: the pure cost
# of classification and selection on the same server), and with routing on and two streaming
# replicas (reads spread over them). One run, contenders alternating per round.
#
#   benches/routing.sh            # env: DURATION [10], ROUNDS [3], CLIENTS ["1 16"],
#                                 #      MODES ["simple prepared"], SCALE [10]
# Loopback only; every pgbench run is bounded by -T; everything is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10} ROUNDS=${ROUNDS:-3} CLIENTS=${CLIENTS:-"1 16"} MODES=${MODES:-"simple prepared"} SCALE=${SCALE:-10}
log() { printf '[routing %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
bash scripts/install-deps.sh >/dev/null
cargo build --release -q
BIN=target/release/switchyard
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ON_PORT=$(free_port)
# Each proxy in its own session (own autogroup), as a service manager would run it; in this
# script's session it would share one CPU share with pgbench.
setsid "$BIN" demo --port "$ON_PORT" >"$WORK/demo.out" 2>"$WORK/demo.err" </dev/null &
pids+=($!)
for _ in $(seq 100); do grep -q '^replica.*replica' <(tr '\n' ' ' <"$WORK/demo.out") 2>/dev/null && break; sleep 0.2; done
grep -c '^replica' "$WORK/demo.out" | grep -q 2 || { cat "$WORK/demo.err" >&2; exit 1; }
PRIMARY=$(awk '/^primary/ {print $2}' "$WORK/demo.out" | sed 's|.*:\([0-9]*\)/.*|\1|')
REPLICAS=$(awk '/^replica/ {print $2}' "$WORK/demo.out" | sed 's|.*:\([0-9]*\)/.*|"127.0.0.1:\1"|' | paste -sd, -)
log "demo topology up: primary on $PRIMARY, routed proxy on $ON_PORT"

proxy() { # NAME PORT CLUSTER_EXTRA REPLICAS
    cat >"$WORK/$1.toml" <<CFG
[postgres]
listen = "127.0.0.1:$2"
[[user]]
name = "app"
password = "app"
[[cluster]]
name = "$1"
database = "app"
primary = "127.0.0.1:$PRIMARY"
replicas = [$4]
user = "postgres"
$3
CFG
    setsid "$BIN" run --config "$WORK/$1.toml" 2>"$WORK/$1.log" </dev/null &
    pids+=($!)
}
OFF_PORT=$(free_port); NOREP_PORT=$(free_port)
proxy off "$OFF_PORT" "read_write_split = false" "$REPLICAS"
proxy self "$NOREP_PORT" "" "\"127.0.0.1:$PRIMARY\""
sleep 1
pgbench -i -q -s "$SCALE" "postgres://postgres@127.0.0.1:$PRIMARY/app" >/dev/null 2>&1
sleep 3 # let the replicas replay the load

declare -A RESULTS
run() { # NAME PORT MODE CLIENTS
    local j=$(( $4 < 2 ? $4 : 2 ))
    local out
    out=$(pgbench -n -S -M "$3" -c "$4" -j "$j" -T "$DURATION" "postgres://app:app@127.0.0.1:$2/app" 2>&1) || true
    local tps failed
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
    if grep -q "pgbench: error" <<<"$out" || [ -z "$tps" ]; then tps=FAIL; fi
    RESULTS["$1 $3 $4"]+="${tps} "
    log "$1 $3 c=$4: $tps TPS (failed ${failed:-?})"
}
names=(off self on)
declare -A PORT=([off]=$OFF_PORT [self]=$NOREP_PORT [on]=$ON_PORT)
for mode in $MODES; do for c in $CLIENTS; do for r in $(seq "$ROUNDS"); do
    for k in 0 1 2; do n=${names[$(( (k + r) % 3 ))]}; run "$n" "${PORT[$n]}" "$mode" "$c"; done
done; done; done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo
echo "pgbench -S, scale $SCALE, ${DURATION}s x $ROUNDS rounds, median TPS ($(date -u +%FT%TZ), $(nproc) cores)"
echo
echo "| mode | clients | routing off | routing on, primary as replica | routing on, 2 replicas | on-self/off | on-2-replicas/off |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for mode in $MODES; do for c in $CLIENTS; do
    off=$(median <<<"${RESULTS[off $mode $c]}"); norep=$(median <<<"${RESULTS[self $mode $c]}"); on=$(median <<<"${RESULTS[on $mode $c]}")
    printf '| %s | %s | %.0f | %.0f | %.0f | %.2f | %.2f |\n' "$mode" "$c" "$off" "$norep" "$on" \
        "$(awk -v a="$norep" -v b="$off" 'BEGIN{print a/b}')" "$(awk -v a="$on" -v b="$off" 'BEGIN{print a/b}')"
done; done
