#!/usr/bin/env python3
"""Memory a proxy keeps per client connection (PostgreSQL, MySQL or HTTP), read from the
kernel's side.

    benches/conn_memory.py NAME PORT PID N [USER [DBNAME]]
    PROTOCOL=mysql PASSWORD=app_pw benches/conn_memory.py NAME PORT PID N app sbtest
    PROTOCOL=http benches/conn_memory.py NAME PORT PID N       # keep-alive HTTP/1.1
    PROTOCOL=https benches/conn_memory.py NAME PORT PID N      # the same over TLS

Opens N client connections to PORT (psycopg 3, autocommit, over loopback; with
PROTOCOL=mysql, PyMySQL, autocommit; with PROTOCOL=http, raw keep-alive sockets asking for
/1k.bin and /64k.bin) and reads the resident set (VmRSS in /proc/PID/status) of the proxy
process PID at each step:

  start      before any client
  logged in  N clients connected and logged in, none has sent a statement
  one query  each client has run SELECT 1 (its session has served a statement)
  64 KiB     each client has read one 64 KiB row (buffers grown for a larger answer)
  all gone   every client closed, a second later

and prints one Markdown row per step: the RSS and the growth per client since "start". Run
by benches/conn_memory.sh (PostgreSQL: the servers and both proxies) and
benches/edge_memory.sh (HTTP: nginx and the edge).
"""
import os
import sys
import time


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
    if os.environ.get("PROTOCOL") == "mysql":
        import pymysql

        def connect():
            return pymysql.connect(
                host="127.0.0.1",
                port=port,
                user=user,
                password=os.environ.get("PASSWORD", ""),
                database=db,
                autocommit=True,
            )

        def query(c, sql):
            with c.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()

    elif os.environ.get("PROTOCOL") in ("http", "https"):
        import socket
        import ssl

        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE

        def connect():
            s = socket.create_connection(("127.0.0.1", port))
            if os.environ.get("PROTOCOL") == "https":
                s = tls.wrap_socket(s, server_hostname="localhost")
            return s

        def query(c, sql):
            # The two statements stand for a small answer and a 64 KiB one.
            path = "/64k.bin" if "65536" in sql else "/1k.bin"
            c.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            data = b""
            while b"\r\n\r\n" not in data:
                data += c.recv(65536)
            head, body = data.split(b"\r\n\r\n", 1)
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:
                body += c.recv(65536)
            assert head.startswith(b"HTTP/1.1 200"), head
            return [(body,)]

    else:
        import psycopg

        dsn = f"host=127.0.0.1 port={port} user={user} dbname={db}"

        def connect():
            return psycopg.connect(dsn, autocommit=True)

        def query(c, sql):
            return c.execute(sql).fetchall()

    steps = []

    def step(label):
        time.sleep(1.0)
        steps.append((label, rss_kib(pid)))

    step("start")
    conns = []
    t0 = time.monotonic()
    for _ in range(n):
        conns.append(connect())
    login_s = time.monotonic() - t0
    step("connected" if os.environ.get("PROTOCOL", "").startswith("http") else "logged in")
    for c in conns:
        query(c, "SELECT 1")
    step("one query")
    for c in conns:
        (row,) = query(c, "SELECT repeat('x', 65536)")
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
