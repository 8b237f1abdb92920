#!/usr/bin/env python3
"""Scenarios for MariaDB Connector/Python (the `mariadb` package from PyPI, built on MariaDB
Connector/C), run by tests/mysql_drivers.rs through the proxy and directly against the MariaDB
primary, whose outputs must be equal.

Usage: mariadb_scenarios.py SCENARIO    (server under test: SY_HOST, SY_PORT, SY_USER,
SY_PASSWORD, SY_DB)

What this driver does that the others in tests/drivers/mysql do not:
- server-side cursors: `cursor(cursor_type=CURSOR.READ_ONLY, prefetch_size=N)` executes with a
  cursor flag and reads the rows N at a time with COM_STMT_FETCH;
- unbuffered result sets read a row at a time while the program does other work;
- `executemany` (array binding where the server offers it, one execute per row otherwise);
- its own ConnectionPool, which resets each connection (COM_RESET_CONNECTION) when it is
  given back;
- COM_CHANGE_USER answered from the handshake's scramble.

Prints one fact a line, then END; exits 0. Every call has read/write timeouts and every step a
faulthandler deadline that dumps the stacks and exits 1.
"""

import contextlib
import faulthandler
import os
import sys
import threading

import mariadb
from mariadb.constants import CURSOR

SCENARIO = sys.argv[1]
HOST = os.environ.get("SY_HOST", "127.0.0.1")
PORT = int(os.environ["SY_PORT"])
USER = os.environ["SY_USER"]
PASSWORD = os.environ["SY_PASSWORD"]
DB = os.environ["SY_DB"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def out(*a):
    print(*a, flush=True)


@contextlib.contextmanager
def deadline(what, secs=60):
    log(f"step: {what} (deadline {secs}s)")
    faulthandler.dump_traceback_later(secs, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def connect(autocommit=True):
    c = mariadb.connect(host=HOST, port=PORT, user=USER, password=PASSWORD, database=DB,
                        connect_timeout=10, read_timeout=20, write_timeout=20)
    c.autocommit = autocommit
    return c


def fetch_all(c, sql, args=()):
    """All rows of `sql` on connection `c` (text protocol)."""
    t = c.cursor()
    t.execute(sql, args)
    r = t.fetchall()
    t.close()
    return r


def code_of(e):
    n = getattr(e, "errno", None)
    return n if n else type(e).__name__


def scenario_cursors():
    """Server-side cursors: rows fetched a few at a time, other statements between fetches,
    two cursors open at once, a cursor given up early, cursors inside a transaction."""
    with deadline("setup"):
        c = connect()
        cur = c.cursor()
        cur.execute("DROP TABLE IF EXISTS curs")
        cur.execute("CREATE TABLE curs (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.executemany("INSERT INTO curs VALUES (?, ?)",
                        [(i, f"v{i}") for i in range(1, 51)])
        out("executemany rowcount", cur.rowcount)
        cur.close()
    with deadline("one cursor, statements between its fetches"):
        k = c.cursor(cursor_type=CURSOR.READ_ONLY, prefetch_size=7)
        k.execute("SELECT id, v FROM curs WHERE id > ? ORDER BY id", (10,))
        rows = [k.fetchone()]
        o = c.cursor(prepared=True)
        o.execute("SELECT COUNT(*) FROM curs WHERE id < ?", (5,))
        out("between", o.fetchall())
        o.close()
        rows += k.fetchmany(10)
        out("text between", fetch_all(c, "SELECT v FROM curs WHERE id = 3"))
        rows += k.fetchall()
        out("cursor rows", len(rows), rows[0], rows[-1])
        k.close()
    with deadline("two cursors at once"):
        a = c.cursor(cursor_type=CURSOR.READ_ONLY, prefetch_size=4)
        b = c.cursor(cursor_type=CURSOR.READ_ONLY, prefetch_size=3)
        a.execute("SELECT id FROM curs WHERE id <= ? ORDER BY id", (20,))
        b.execute("SELECT id FROM curs WHERE id > ? ORDER BY id DESC", (40,))
        seen = []
        for _ in range(5):
            seen.append(("a", a.fetchone()[0]))
            seen.append(("b", b.fetchone()[0]))
        out("interleaved", seen)
        out("a rest", [r[0] for r in a.fetchall()])
        out("b rest", [r[0] for r in b.fetchall()])
        a.close()
        b.close()
    with deadline("a cursor given up early, the statement executed again"):
        k = c.cursor(cursor_type=CURSOR.READ_ONLY, prefetch_size=2)
        k.execute("SELECT id FROM curs WHERE id > ? ORDER BY id", (0,))
        out("first of many", k.fetchone())
        k.execute("SELECT id FROM curs WHERE id > ? ORDER BY id", (45,))
        out("again", [r[0] for r in k.fetchall()])
        k.close()
    with deadline("cursors inside a transaction"):
        c.autocommit = False
        w = c.cursor(prepared=True)
        w.execute("UPDATE curs SET v = ? WHERE id = ?", ("tx", 2))
        k = c.cursor(cursor_type=CURSOR.READ_ONLY, prefetch_size=3)
        k.execute("SELECT id, v FROM curs WHERE id <= ? ORDER BY id", (9,))
        out("tx cursor", k.fetchall())
        k.close()
        w.close()
        c.rollback()
        # A new cursor: Connector/Python 1.1.14 crashes when a prepared cursor that ran an
        # UPDATE executes a SELECT.
        r = c.cursor(prepared=True)
        r.execute("SELECT v FROM curs WHERE id = ?", (2,))
        out("after rollback", r.fetchall())
        r.close()
        c.autocommit = True
    with deadline("an error on a cursor, then the connection goes on"):
        k = c.cursor(cursor_type=CURSOR.READ_ONLY, prefetch_size=2)
        try:
            k.execute("SELECT nope FROM curs WHERE id > ?", (1,))
            out("error", "none")
        except mariadb.Error as e:
            out("error", code_of(e))
        k.close()
        p = c.cursor(prepared=True)
        for i in (1, 25, 50):
            p.execute("SELECT v FROM curs WHERE id = ?", (i,))
            out("prepared", p.fetchall())
        p.close()
    with deadline("reset, then ping"):
        t = c.cursor()
        t.execute("SELECT CONNECTION_ID()")
        before = t.fetchall()[0][0]
        t.close()
        c.reset()
        t = c.cursor()
        t.execute("SELECT CONNECTION_ID()")
        after = t.fetchall()[0][0]
        out("connection id kept by reset", before == after, after != 0)
        t.close()
        c.ping()
        out("after reset", fetch_all(c, "SELECT COUNT(*), SUM(id) FROM curs"))
        c.close()


def scenario_unbuffered():
    """An unbuffered result read a row at a time, with pauses; then the next statements."""
    with deadline("setup"):
        c = connect()
        cur = c.cursor()
        cur.execute("DROP TABLE IF EXISTS big")
        cur.execute("CREATE TABLE big (id INT PRIMARY KEY, pad VARCHAR(200))")
        cur.executemany("INSERT INTO big VALUES (?, REPEAT('x', 200))",
                        [(i,) for i in range(1, 2001)])
        cur.close()
    with deadline("read slowly"):
        u = c.cursor(buffered=False)
        u.execute("/* switchyard:primary */ SELECT id, pad FROM big ORDER BY id")
        n, total = 0, 0
        for row in u:
            n += 1
            total += row[0]
            if n % 500 == 0:
                threading.Event().wait(0.2)
        out("unbuffered", n, total)
        u.close()
    with deadline("prepared unbuffered, given up early"):
        u = c.cursor(prepared=True, buffered=False)
        u.execute("/* switchyard:primary */ SELECT id FROM big WHERE id > ? ORDER BY id",
                  (100,))
        out("first", u.fetchone())
        u.close()
        out("after", fetch_all(c, "/* switchyard:primary */ SELECT COUNT(*) FROM big"))
        c.close()


def scenario_pool():
    """The driver's pool (it resets connections given back): session state set by one user of
    a pooled connection is gone for the next; prepared statements work after each reset."""
    with deadline("pool"):
        pool = mariadb.ConnectionPool(pool_name="p", pool_size=2, pool_reset_connection=True,
                                      host=HOST, port=PORT, user=USER, password=PASSWORD,
                                      database=DB, connect_timeout=10, read_timeout=20,
                                      write_timeout=20)
        for i in range(6):
            c = pool.get_connection()
            cur = c.cursor(prepared=True)
            cur.execute("SELECT @leak, @@session.sql_mode LIKE ?", ("%ANSI_QUOTES%",))
            out("round", i, cur.fetchall())
            cur.close()
            t = c.cursor()
            t.execute("SET @leak = 'from round %d', SESSION sql_mode = 'ANSI_QUOTES'" % i)
            t.close()
            c.close()  # back to the pool, reset
        pool.close()


def scenario_change_user():
    """COM_CHANGE_USER as Connector/C sends it (an answer for mysql_native_password computed
    from the handshake's scramble): a new session, with nothing of the old one; then a wrong
    password and an unknown database, refused."""
    with deadline("change user"):
        c = connect(autocommit=False)
        t = c.cursor()
        t.execute("SET @before = 'old session'")
        t.execute("SELECT CONNECTION_ID()")
        first_id = t.fetchall()[0][0]
        t.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()")
        t.fetchall()
        t.close()
        c.change_user(USER, PASSWORD, DB)
        t = c.cursor()
        t.execute("SELECT @before, DATABASE(), @@autocommit, @@in_transaction")
        out("after change_user", t.fetchall())
        t.execute("SELECT CONNECTION_ID()")
        out("same connection id", t.fetchall()[0][0] == first_id)
        t.close()
        p = c.cursor(prepared=True)
        p.execute("SELECT ? + 1", (41,))
        out("prepared after", p.fetchall())
        p.close()
        try:
            c.change_user(USER, PASSWORD + "-wrong", DB)
            out("wrong password", "accepted")
        except mariadb.Error as e:
            out("wrong password", code_of(e))
        # MariaDB keeps the connection, as the user it was, its session started again.
        out("after refusal", fetch_all(c, "SELECT @before, DATABASE(), @@in_transaction"))
        try:
            c.change_user(USER, PASSWORD, "no_such_db")
            out("unknown database", "accepted")
        except mariadb.Error as e:
            out("unknown database", code_of(e))
        out("after unknown database", fetch_all(c, "SELECT DATABASE()"))
        c.close()


def main():
    fn = globals().get(f"scenario_{SCENARIO}")
    if fn is None:
        raise SystemExit(f"unknown scenario {SCENARIO}")
    fn()
    out("END")


if __name__ == "__main__":
    main()
