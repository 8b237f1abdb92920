#!/usr/bin/env python3
"""CPU time per transaction, split by process: run a pgbench command and report, per
transaction, the user and system CPU that PostgreSQL, PgBouncer and switchyard used meanwhile
(from /proc/<pid>/stat before and after), plus machine-wide user/system/idle/irq time (from
/proc/stat). pgbench's own processes exit before the second reading, so they are not listed;
the machine-wide figures include them.

Usage (servers started with `HOLD=600 KEEP_TMP=1 benches/compare.sh`):
    benches/cpu_per_tx.py pgbench -n -S -M simple -c 16 -j 2 -T 8 -h 127.0.0.1 -p PORT -U bench bench
"""
import os
import re
import subprocess
import sys

HZ = os.sysconf("SC_CLK_TCK")
GROUPS = ("postgres", "pgbouncer", "switchyard")


def snapshot():
    seen = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        seen[pid] = (comm, int(fields[11]), int(fields[12]))
    return seen


def machine():
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def group(comm):
    return next((g for g in GROUPS if comm.startswith(g)), "other")


def main():
    before, m0 = snapshot(), machine()
    out = subprocess.run(sys.argv[1:], capture_output=True, text=True).stdout
    after, m1 = snapshot(), machine()
    n = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
    tps = re.search(r"tps = ([\d.]+)", out).group(1)
    per = lambda ticks: 1e6 * ticks / HZ / n  # microseconds per transaction
    acc = {}
    for pid, (comm, ut, st) in after.items():
        _, u0, s0 = before.get(pid, (comm, 0, 0))
        a = acc.setdefault(group(comm), [0, 0])
        a[0] += ut - u0
        a[1] += st - s0
    d = [b - a for a, b in zip(m0, m1)]
    parts = " ".join(f"{g} user {per(u):.1f} sys {per(s):.1f}" for g, (u, s) in sorted(acc.items()))
    print(f"tps {tps}, {n} transactions; us/tx: {parts}; machine user {per(d[0] + d[1]):.1f} "
          f"sys {per(d[2]):.1f} idle {per(d[3]):.1f} irq {per(d[5] + d[6]):.1f}")


if __name__ == "__main__":
    main()
