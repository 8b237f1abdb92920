#!/usr/bin/env python3
"""Memory a PostgreSQL proxy keeps per client connection, read from the kernel's side.

    benches/conn_memory.py NAME PORT PID N [USER [DBNAME]]

Opens N client connections to PORT (psycopg 3, autocommit, over loopback) and reads the
resident set (VmRSS in /proc/PID/status) of the proxy process PID at each step:

  start      before any client
  logged in  N clients connected and logged in, none has sent a statement
  one query  each client has run SELECT 1 (its session has served a statement)
  64 KiB     each client has read one 64 KiB row (buffers grown for a larger answer)
  all gone   every client closed, two seconds later

and prints one Markdown row per step: the RSS and the growth per client since "start". Run
by benches/conn_memory.sh, which starts the servers and both proxies.
"""
import sys
import time

import psycopg


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def main():
    name, port, pid, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    user = sys.argv[5] if len(sys.argv) > 5 else "bench"
    db = sys.argv[6] if len(sys.argv) > 6 else "bench"
    dsn = f"host=127.0.0.1 port={port} user={user} dbname={db}"
    steps = []

    def step(label):
        time.sleep(1.0)
        steps.append((label, rss_kib(pid)))

    step("start")
    conns = []
    t0 = time.monotonic()
    for _ in range(n):
        conns.append(psycopg.connect(dsn, autocommit=True))
    login_s = time.monotonic() - t0
    step("logged in")
    for c in conns:
        c.execute("SELECT 1").fetchall()
    step("one query")
    for c in conns:
        (row,) = c.execute("SELECT repeat('x', 65536)").fetchall()
        assert len(row[0]) == 65536
    step("64 KiB")
    for c in conns:
        c.close()
    time.sleep(1.0)
    step("all gone")

    base = steps[0][1]
    for label, kib in steps:
        per = (kib - base) * 1024 / n
        print(f"| {name} | {n} | {label} | {kib / 1024:.1f} | {per / 1024:.1f} |")
    print(f"({name}: {n} logins in {login_s:.1f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
