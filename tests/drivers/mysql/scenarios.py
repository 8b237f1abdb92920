#!/usr/bin/env python3
"""MySQL driver scenarios for PyMySQL and mysql-connector-python, run by
tests/mysql_drivers.rs through the proxy and directly against the MariaDB primary.

Usage: scenarios.py DRIVER SCENARIO [ARGS...]    DRIVER: pymysql | connector

The server under test: SY_HOST, SY_PORT, SY_USER, SY_PASSWORD, SY_DB. The MariaDB primary
itself (to read back what was really committed): SY_DIRECT_PORT, same user and database. When
a scenario runs directly against the primary, both name the same server.

Each driver is used the way applications use it:
- PyMySQL as SQLAlchemy drives it: autocommit off, CLIENT_FOUND_ROWS, utf8mb4, a queue pool
  that rolls back every connection it gets back, text protocol (client-side parameters).
- mysql-connector-python with its defaults (caching_sha2_password answer, autocommit off),
  its own MySQLConnectionPool (COM_RESET_CONNECTION on return), prepared cursors (the binary
  protocol), and its connect options sql_mode / time_zone / init_command.

Every scenario prints its observable results on stdout, one fact a line, in an order that does
not depend on timing, then END, and exits 0. Every driver call has a timeout (connect, read and
write timeouts) and every step a faulthandler deadline that dumps the stacks and exits 1.
"""

import contextlib
import datetime
import decimal
import faulthandler
import hashlib
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time

DRIVER = sys.argv[1]
SCENARIO = sys.argv[2]
ARGS = sys.argv[3:]

HOST = os.environ.get("SY_HOST", "127.0.0.1")
PORT = int(os.environ["SY_PORT"])
USER = os.environ["SY_USER"]
PASSWORD = os.environ["SY_PASSWORD"]
DB = os.environ["SY_DB"]
DIRECT_PORT = int(os.environ.get("SY_DIRECT_PORT", PORT))

if DRIVER == "pymysql":
    import pymysql
    from pymysql.constants import CLIENT

    DriverError = pymysql.err.MySQLError
elif DRIVER == "connector":
    import mysql.connector
    import mysql.connector.pooling
    from mysql.connector.constants import ClientFlag

    DriverError = mysql.connector.Error
else:
    raise SystemExit(f"unknown driver {DRIVER}")

CALL = 20  # seconds allowed for one driver call


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def out(*a):
    print(*a, flush=True)


@contextlib.contextmanager
def deadline(what, secs=60):
    """Backstop: dump every thread's stack and exit 1 if `what` takes longer than `secs`."""
    log(f"step: {what} (deadline {secs}s)")
    faulthandler.dump_traceback_later(secs, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def code_of(e):
    """The server error number of a driver error, or the exception class."""
    if DRIVER == "pymysql":
        if isinstance(e, pymysql.err.MySQLError) and e.args and isinstance(e.args[0], int):
            return e.args[0]
    else:
        n = getattr(e, "errno", None)
        if n and n > 0:
            return n
    return type(e).__name__


def show(v):
    """A value with its Python type, so that equal text with different types differs."""
    if v is None:
        return "NULL"
    if isinstance(v, (bytes, bytearray)):
        return "bytes:" + bytes(v).hex()
    if isinstance(v, (set, frozenset)):
        return "set:" + ",".join(sorted(v))
    if isinstance(v, float):
        return "float:" + repr(v)
    text = str(v)
    if len(text) > 80:
        h = hashlib.sha256(text.encode()).hexdigest()[:16]
        text = f"{text[:20]}...[{len(text)} chars, sha256 {h}]"
    return f"{type(v).__name__}:{text}"


def show_row(row):
    return "(" + ", ".join(show(v) for v in row) + ")"


# ---------------------------------------------------------------------------------------------
# connections


def connect(port=None, autocommit=False, init=None, multi=False, sql_mode=None,
            time_zone=None, found_rows=True):
    """A connection with the driver's application habits (see the module doc)."""
    port = port or PORT
    if DRIVER == "pymysql":
        flags = CLIENT.FOUND_ROWS if found_rows else 0  # SQLAlchemy's pymysql dialect
        if multi:
            flags |= CLIENT.MULTI_STATEMENTS
        sets = []
        if sql_mode is not None:
            sets.append(f"sql_mode = '{sql_mode}'")
        if time_zone is not None:
            sets.append(f"time_zone = '{time_zone}'")
        if init:
            sets.append(init)
        init_command = ("SET " + ", ".join(sets)) if sets else None
        return pymysql.connect(host=HOST, port=port, user=USER, password=PASSWORD, database=DB,
                               charset="utf8mb4", autocommit=autocommit, client_flag=flags,
                               init_command=init_command, connect_timeout=10,
                               read_timeout=CALL, write_timeout=CALL)
    # The driver's defaults include CLIENT_MULTI_STATEMENTS; SQLAlchemy's dialect adds
    # CLIENT_FOUND_ROWS.
    flags = [ClientFlag.FOUND_ROWS] if found_rows else []
    if not multi:
        flags.append(-ClientFlag.MULTI_STATEMENTS)
    kw = {}
    if sql_mode is not None:
        kw["sql_mode"] = sql_mode
    if time_zone is not None:
        kw["time_zone"] = time_zone
    if init:
        kw["init_command"] = "SET " + init
    return mysql.connector.connect(host=HOST, port=port, user=USER, password=PASSWORD,
                                   database=DB, charset="utf8mb4", autocommit=autocommit,
                                   client_flags=flags, ssl_disabled=True, use_pure=True,
                                   connection_timeout=10, read_timeout=CALL,
                                   write_timeout=CALL, **kw)


def direct():
    """An autocommit connection straight to the primary, to see what is committed."""
    return connect(port=DIRECT_PORT, autocommit=True)


def one(conn, sql, args=None):
    cur = conn.cursor()
    cur.execute(sql, args)
    row = cur.fetchone()
    cur.close()
    return row


def scalar_direct(sql, args=None):
    c = direct()
    try:
        return one(c, sql, args)[0]
    finally:
        c.close()


def prepared_cursor(conn):
    """The binary protocol where the driver has it (connector); None for PyMySQL."""
    if DRIVER == "connector":
        return conn.cursor(prepared=True)
    return None


def raw_socket(conn):
    if DRIVER == "pymysql":
        return conn._sock
    return conn._socket.sock


def drop_socket(conn):
    """The client vanishes: its socket closes without COM_QUIT."""
    if DRIVER == "connector":
        conn.shutdown()
        return
    s = raw_socket(conn)
    s.shutdown(socket.SHUT_RDWR)
    s.close()


def wait_visible(conn, sql, want, secs=10):
    """Polls `sql` (autocommit reads may go to a replica) until it returns `want` ten times in
    a row: one match proves only the replica that answered it, and the next read may go to
    another."""
    end = time.time() + secs
    got = None
    streak = 0
    while time.time() < end:
        got = one(conn, sql)[0]
        streak = streak + 1 if got == want else 0
        if streak >= 10:
            return True
        if streak == 0:
            time.sleep(0.05)
    log(f"{sql}: {got!r}, waited for {want!r}")
    return False


# ---------------------------------------------------------------------------------------------
# a. values, metadata, multi-statements, parameters


TYPES_DDL = """CREATE TABLE vals (
  id INT PRIMARY KEY,
  ti TINYINT, si SMALLINT UNSIGNED, mi MEDIUMINT, i INT, bi BIGINT, ubi BIGINT UNSIGNED,
  fl FLOAT, db DOUBLE, de DECIMAL(20,6), de0 DECIMAL(5,0),
  d DATE, dt DATETIME(6), ts TIMESTAMP(3) NULL DEFAULT NULL, tm TIME(6), yr YEAR,
  ch CHAR(10), vc VARCHAR(100), tx MEDIUMTEXT, bl LONGBLOB, vb VARBINARY(40),
  en ENUM('a','b','c'), st SET('x','y','z'), bt BIT(8), js JSON
) DEFAULT CHARSET = utf8mb4"""

LITERAL_ROWS = r"""INSERT INTO vals VALUES
 (1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (2, -128, 65535, -8388608, -2147483648, -9223372036854775808, 18446744073709551615,
  3.25, -1.7976931348623157e308, -12345678901234.123456, 99999,
  '1000-01-01', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999', '-838:59:59.000000',
  1901, 'fix', 'héllo wörld 世界 🚀', REPEAT('long text ', 300), X'00FF7F80', X'',
  'c', 'x,z', b'10100101', '{"k": [1, 2.5, "ü", null]}'),
 (3, 0, 0, 0, 0, 0, 0, 0, 0, 0.000001, 0, '2024-02-29', '2024-02-29 12:34:56.000001',
  '1970-01-01 00:00:01.000', '00:00:00', 2024, '', '', '', '', '', 'a', '', b'0', '[]')"""


# Every column; YEAR as a number: mysql-connector-python (pure) misreads a binary-protocol row
# that has a YEAR next to a zero-length TIME (IndexError in read_lc_string, also directly).
BINARY_COLUMNS = ("id, ti, si, mi, i, bi, ubi, fl, db, de, de0, d, dt, ts, tm, yr + 0, ch, vc, "
                  "tx, bl, vb, en, st, bt, js")


def print_result(prefix, cur):
    """Column metadata, rows and counts of the current result of `cur`."""
    if cur.description:
        out(prefix, "columns", [tuple(d[:2]) + tuple(d[6:7]) for d in cur.description])
        for row in cur.fetchall():
            out(prefix, "row", show_row(row))
    else:
        out(prefix, "affected", cur.rowcount)


def all_results(prefix, cur):
    """Every result of a multi-statement or CALL: the current one, then nextset()."""
    n = 0
    while True:
        print_result(f"{prefix} #{n}", cur)
        n += 1
        if not cur.nextset():
            break


def params():
    """One parameter of each common Python type."""
    return [
        7, -9223372036854775808, 18446744073709551615, 2.5, decimal.Decimal("-123.456789"),
        "ünïcödé ✓ 𝄞", b"\x00\x01\xfe\xff", datetime.date(2001, 2, 3),
        datetime.datetime(2001, 2, 3, 4, 5, 6, 789000), datetime.timedelta(hours=-30, minutes=-5),
        None, True, "", "it's \"quoted\" \\ back",
    ]


def scenario_types():
    conn = connect()
    cur = conn.cursor()
    with deadline("ddl"):
        cur.execute("DROP TABLE IF EXISTS vals")
        cur.execute(TYPES_DDL)
        cur.execute("DROP PROCEDURE IF EXISTS two_results")
        cur.execute("CREATE PROCEDURE two_results(IN n INT) BEGIN "
                    "SELECT n AS n, n * 2 AS twice; SELECT 'b' AS b, NULL AS c, n + 0.5 AS h; END")
    with deadline("literal rows"):
        cur.execute(LITERAL_ROWS)
        out("literal insert affected", cur.rowcount)
        conn.commit()
    with deadline("parameter rows"):
        sql = ("INSERT INTO vals (id, i, bi, ubi, db, de, vc, vb, d, dt, tm, ti, ch, tx) "
               "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
        p = params()
        rows = [
            (10, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[11], p[12], p[13]),
            (11, None, None, None, None, None, None, None, None, None, None, None, None, None),
        ]
        if DRIVER == "connector":
            pc = prepared_cursor(conn)
            for r in rows:
                pc.execute(sql.replace("%s", "?"), r)
            pc.close()
        else:
            cur.executemany(sql, rows)
        big = bytes(range(256)) * 12000  # ~3 MB, several packets
        cur.execute("INSERT INTO vals (id, bl, tx) VALUES (%s, %s, %s)",
                    (20, big, "ü" * 100000))
        conn.commit()
    with deadline("affected rows"):
        # CLIENT_FOUND_ROWS (asked for by the driver setup): matched, not changed, rows.
        cur.execute("UPDATE vals SET vc = vc WHERE id = 2")
        out("update to the same value affected", cur.rowcount)
        cur.execute("UPDATE vals SET ti = 1 WHERE id IN (2, 3)")
        out("update of two rows affected", cur.rowcount)
        conn.rollback()
    with deadline("select text"):
        cur.execute("SELECT * FROM vals WHERE id < 20 ORDER BY id")
        print_result("text", cur)
        cur.execute("SELECT id, length(bl), sha2(bl, 256), char_length(tx) FROM vals WHERE id = 20")
        print_result("big", cur)
        cur.execute("SELECT bl, tx FROM vals WHERE id = 20")
        bl, tx = cur.fetchone()
        out("big read back", hashlib.sha256(bl).hexdigest(), len(tx), tx[:3])
    with deadline("expressions"):
        cur.execute("SELECT NULL, 1/3, 10/4, CAST(1 AS DECIMAL(10,3)), 2e0/3, "
                    "CAST('2020-01-01' AS DATE) + INTERVAL 1 DAY, TIMEDIFF('10:00', '12:30:15'), "
                    "_utf8mb4'ß' = 'ss', 'ä' COLLATE utf8mb4_bin, CONVERT('x' USING latin1), "
                    "X'E282AC', 18446744073709551615 + 0, -0.0, b'1' + 0")
        print_result("expr", cur)
    with deadline("echo parameters"):
        p = params()
        sql = "SELECT " + ", ".join(["%s"] * len(p))
        cur.execute(sql, p)
        print_result("echo", cur)
        if DRIVER == "connector":
            pc = prepared_cursor(conn)
            pc.execute(sql.replace("%s", "?"), p)
            print_result("echo binary", pc)
            pc.execute(f"SELECT {BINARY_COLUMNS} FROM vals WHERE id < 20 AND id > ? ORDER BY id",
                       (0,))
            print_result("binary", pc)
            pc.execute("SELECT ? + 1, ? IS NULL, CONCAT(?, '!')", (41, None, "é"))
            print_result("binary expr", pc)
            pc.close()
        conn.commit()
    with deadline("errors"):
        for sql in ["INSERT INTO vals (id) VALUES (2)", "SELECT * FROM no_such_table",
                    "SELEC 1", "SELECT 1 FROM vals WHERE id = 'x' + 'y' AND 1 / 0"]:
            try:
                cur.execute(sql)
                cur.fetchall()
                out("no error:", sql)
            except DriverError as e:
                out("error", code_of(e), sql)
        out("after errors", one(conn, "SELECT 42 + 0")[0])
        conn.rollback()
    with deadline("multi-statements"):
        m = connect(multi=True)
        mc = m.cursor()
        if DRIVER == "pymysql":
            mc.execute("SELECT 1 AS one; SELECT 'two' AS t, NULL AS n; "
                       "UPDATE vals SET i = i WHERE id = 1; SELECT 3")
            all_results("multi", mc)
        else:
            mc.execute("SELECT 1 AS one; SELECT 'two' AS t, NULL AS n; "
                       "UPDATE vals SET i = i WHERE id = 1; SELECT 3")
            all_results("multi", mc)
        mc.execute("CALL two_results(%s)", (21,))
        all_results("call", mc)
        try:
            mc.execute("SELECT 1; SELECT * FROM no_such_table; SELECT 3")
            n = 0
            while True:
                print_result(f"multi-err #{n}", mc)
                n += 1
                if not mc.nextset():
                    break
        except DriverError as e:
            out("multi-err error", code_of(e))
        mc.close()
        m.rollback()
        out("multi after error", one(m, "SELECT 'still usable'")[0])
        m.close()
    with deadline("no multi-statements"):
        # A client that did not ask for CLIENT_MULTI_STATEMENTS: the server refuses the text.
        s = connect(multi=False)
        try:
            sc = s.cursor()
            sc.execute("SELECT 1; SELECT 2")
            out("single-statement client: no error, first result", sc.fetchall())
            while sc.nextset():
                out("single-statement client: another result", sc.fetchall())
        except DriverError as e:
            out("single-statement client: error", code_of(e))
        try:
            s.close()
        except DriverError:
            pass
    with deadline("autocommit reads"):
        conn.autocommit(True) if DRIVER == "pymysql" else setattr(conn, "autocommit", True)
        if wait_visible(conn, "SELECT count(*) FROM vals", 6):
            cur = conn.cursor()
            cur.execute("SELECT * FROM vals WHERE id < 20 ORDER BY id")
            print_result("autocommit text", cur)
            if DRIVER == "connector":
                pc = prepared_cursor(conn)
                pc.execute(f"SELECT {BINARY_COLUMNS} FROM vals WHERE id < ? ORDER BY id", (20,))
                print_result("autocommit binary", pc)
                pc.close()
        else:
            out("rows never became visible")
    if DRIVER == "pymysql":
        with deadline("status flags without session tracking"):
            # PyMySQL does not ask for CLIENT_SESSION_TRACK: no "state changed" flag either.
            cur = conn.cursor()
            for q in ("SET @x = 1", "SELECT 1", "SET time_zone = '+01:00'", "DO 1"):
                cur.execute(q)
                out("server_status after", q, hex(conn.server_status))
    conn.close()


# ---------------------------------------------------------------------------------------------
# b. transactions, and a client that vanishes inside one


def reset_accounts(conn):
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS acct")
    cur.execute("CREATE TABLE acct (id INT PRIMARY KEY, v INT NOT NULL)")
    cur.execute("INSERT INTO acct VALUES (1, 0), (2, 0), (3, 0), (4, 0)")
    conn.commit()


def direct_v(i):
    return scalar_direct("SELECT v FROM acct WHERE id = %s", (i,))


def update_within(i, v, secs=1.0):
    """Another client updates row `i`: (done within `secs`, error)."""
    c = connect(autocommit=True)
    t0 = time.time()
    err = None
    try:
        cur = c.cursor()
        cur.execute("UPDATE acct SET v = %s WHERE id = %s", (v, i))
    except DriverError as e:
        err = code_of(e)
    took = time.time() - t0
    c.close()
    if took >= secs:
        log(f"update of row {i} took {took:.2f}s")
    return took < secs, err


def scenario_tx():
    conn = connect()
    cur = conn.cursor()
    with deadline("setup"):
        reset_accounts(conn)
    with deadline("commit"):
        cur.execute("UPDATE acct SET v = 1 WHERE id = 1")
        out("inside the tx, the client sees", one(conn, "SELECT v FROM acct WHERE id = 1")[0])
        out("inside the tx, the primary shows", direct_v(1))
        conn.commit()
        out("after COMMIT, the primary shows", direct_v(1))
    with deadline("rollback"):
        cur.execute("UPDATE acct SET v = 5 WHERE id = 2")
        cur.execute("INSERT INTO acct VALUES (10, 10)")
        conn.rollback()
        out("after ROLLBACK, the primary shows", direct_v(2),
            scalar_direct("SELECT count(*) FROM acct"))
    with deadline("savepoint"):
        cur.execute("UPDATE acct SET v = 7 WHERE id = 2")
        cur.execute("SAVEPOINT s1")
        cur.execute("UPDATE acct SET v = 8 WHERE id = 2")
        cur.execute("ROLLBACK TO SAVEPOINT s1")
        conn.commit()
        out("after ROLLBACK TO SAVEPOINT and COMMIT, the primary shows", direct_v(2))
    with deadline("error inside a transaction"):
        cur.execute("UPDATE acct SET v = 9 WHERE id = 3")
        try:
            cur.execute("INSERT INTO acct VALUES (1, 1)")
        except DriverError as e:
            out("duplicate key inside the tx:", code_of(e))
        out("still inside the tx, the primary shows", direct_v(3))
        conn.commit()
        out("after COMMIT, the primary shows", direct_v(3))
    with deadline("explicit START TRANSACTION"):
        conn.autocommit(True) if DRIVER == "pymysql" else setattr(conn, "autocommit", True)
        cur = conn.cursor()
        cur.execute("START TRANSACTION")
        cur.execute("UPDATE acct SET v = v + 100 WHERE id = 4")
        cur.execute("SELECT v FROM acct WHERE id = 4 FOR UPDATE")
        out("START TRANSACTION read", cur.fetchall())
        out("inside START TRANSACTION, the primary shows", direct_v(4))
        cur.execute("COMMIT")
        out("after COMMIT, the primary shows", direct_v(4))
        cur.execute("BEGIN")
        cur.execute("UPDATE acct SET v = -1 WHERE id = 4")
        cur.execute("ROLLBACK")
        out("after BEGIN ... ROLLBACK, the primary shows", direct_v(4))
    conn.close()

    with deadline("socket dropped inside a transaction", 40):
        k = connect()
        kc = k.cursor()
        kc.execute("UPDATE acct SET v = 99 WHERE id = 3")
        drop_socket(k)
        time.sleep(0.2)
        ok, err = update_within(3, 33)
        out("row locked by the dropped client updated within 1s:", ok, "error:", err)
        out("the dropped client's update committed?", direct_v(3) == 99)

    with deadline("process killed inside a transaction", 40):
        child = subprocess.Popen([sys.executable, "-u", __file__, DRIVER, "hold_lock", "4"],
                                 stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
        line = child.stdout.readline().strip()
        out("child says", line)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        time.sleep(0.2)
        ok, err = update_within(4, 44)
        out("row locked by the killed process updated within 1s:", ok, "error:", err)
        out("the killed process's update committed?", direct_v(4) == 999)
    out("final", sorted(tuple(r) for r in all_rows_direct("SELECT id, v FROM acct ORDER BY id")))


def all_rows_direct(sql):
    c = direct()
    try:
        cur = c.cursor()
        cur.execute(sql)
        return cur.fetchall()
    finally:
        c.close()


def scenario_hold_lock():
    """Child of `tx`: locks a row inside a transaction, says so, and waits to be killed."""
    i = int(ARGS[0])
    c = connect()
    c.cursor().execute("UPDATE acct SET v = 999 WHERE id = %s", (i,))
    out("locked", i)
    time.sleep(60)


# ---------------------------------------------------------------------------------------------
# c. the driver's pool over a much smaller proxy pool


class QueuePool:
    """SQLAlchemy's QueuePool habits: connections made on demand up to `size`, a checkout
    timeout, and ROLLBACK on every return ("reset on return")."""

    def __init__(self, size, make):
        self.q = queue.LifoQueue()
        self.size = size
        self.made = 0
        self.make = make
        self.lock = threading.Lock()

    def get(self):
        try:
            return self.q.get_nowait()
        except queue.Empty:
            pass
        with self.lock:
            if self.made < self.size:
                self.made += 1
                return self.make()
        return self.q.get(timeout=30)

    def put(self, c):
        c.rollback()
        self.q.put(c)

    def close(self):
        while True:
            try:
                self.q.get_nowait().close()
            except queue.Empty:
                return


SETTINGS = [("ANSI_QUOTES,STRICT_TRANS_TABLES", "+03:00"), ("NO_ZERO_DATE", "-07:30")]


def make_pool(k, size):
    mode, zone = SETTINGS[k]
    if DRIVER == "pymysql":
        return QueuePool(size, lambda: connect(sql_mode=mode, time_zone=zone))
    return mysql.connector.pooling.MySQLConnectionPool(
        pool_name=f"p{k}", pool_size=size, pool_reset_session=True, host=HOST, port=PORT,
        user=USER, password=PASSWORD, database=DB, charset="utf8mb4", sql_mode=mode,
        time_zone=zone, ssl_disabled=True, use_pure=True, connection_timeout=10,
        read_timeout=CALL, write_timeout=CALL,
        client_flags=[ClientFlag.FOUND_ROWS])


def pool_get(pool):
    if DRIVER == "pymysql":
        return pool.get()
    end = time.time() + 30
    while True:
        try:
            return pool.get_connection()
        except mysql.connector.errors.PoolError:
            if time.time() > end:
                raise
            time.sleep(0.005)


def pool_put(pool, c):
    if DRIVER == "pymysql":
        pool.put(c)
    else:
        c.close()  # back to the pool: COM_RESET_CONNECTION, then the settings again


def scenario_pool():
    threads_n, per_thread, size = int(ARGS[0]), int(ARGS[1]), int(ARGS[2])
    with deadline("setup"):
        c = connect()
        cur = c.cursor()
        cur.execute("DROP TABLE IF EXISTS counter")
        cur.execute("DROP TABLE IF EXISTS ledger")
        cur.execute("CREATE TABLE counter (id INT PRIMARY KEY, n INT NOT NULL)")
        cur.execute("CREATE TABLE ledger (id INT AUTO_INCREMENT PRIMARY KEY, who INT, "
                    "at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))")
        cur.execute("INSERT INTO counter VALUES (1, 0)")
        c.commit()
        c.close()
    pools = [make_pool(0, size), make_pool(1, size)]
    lock = threading.Lock()
    stats = {"committed": 0, "rolled back": 0, "wrong settings": 0, "errors": 0}
    errors = []

    def worker(t):
        pool = pools[t % 2]
        mode, zone = SETTINGS[t % 2]
        rnd = random.Random(t)
        for k in range(per_thread):
            try:
                c = pool_get(pool)
                try:
                    cur = c.cursor()
                    cur.execute("SELECT @@sql_mode, @@time_zone")
                    got = tuple(cur.fetchone())
                    cur.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
                    cur.execute("INSERT INTO ledger (who) VALUES (%s)", (t,))
                    cur.execute("SELECT @@sql_mode, @@time_zone, @@in_transaction")
                    inside = tuple(cur.fetchone())
                    bad = got != (mode, zone) or inside != (mode, zone, 1)
                    if rnd.random() < 0.2:
                        c.rollback()
                        key = "rolled back"
                    else:
                        c.commit()
                        key = "committed"
                    with lock:
                        stats[key] += 1
                        if bad:
                            stats["wrong settings"] += 1
                            errors.append(f"thread {t}: {got} then {inside}")
                finally:
                    pool_put(pool, c)
            except Exception as e:  # noqa: BLE001 - every failure is counted and shown
                with lock:
                    stats["errors"] += 1
                    errors.append(f"thread {t} round {k}: {e!r}")

    with deadline("pooled transactions", 150):
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()

    for e in errors[:10]:
        log(e)
    for k in ["committed", "rolled back"]:
        # Depends on each thread's own random sequence only.
        out(f"{k}:", stats[k])
    out("wrong settings:", stats["wrong settings"])
    out("errors:", stats["errors"])
    out("primary counter:", scalar_direct("SELECT n FROM counter"))
    out("primary ledger rows:", scalar_direct("SELECT count(*) FROM ledger"))
    if DRIVER == "pymysql":
        for p in pools:
            p.close()


# ---------------------------------------------------------------------------------------------
# g. what a client asks about its own last statement, with other clients around


def scenario_own_results():
    """Autocommit clients (ARGS[0] threads, ARGS[1] rounds each) asking about their own last
    statement, as ORMs and hand-written code do: LAST_INSERT_ID(), ROW_COUNT(), FOUND_ROWS()
    and SHOW WARNINGS / @@warning_count belong to the session that ran the statement."""
    threads_n, rounds = int(ARGS[0]), int(ARGS[1])
    with deadline("setup"):
        c = connect(autocommit=True)
        cur = c.cursor()
        cur.execute("DROP TABLE IF EXISTS own")
        cur.execute("CREATE TABLE own (id INT AUTO_INCREMENT PRIMARY KEY, who INT)")
        cur.execute("INSERT INTO own (who) VALUES (0), (0), (0)")
        c.close()
    lock = threading.Lock()
    counts = {}
    errors = []

    def note(what, good, detail):
        with lock:
            key = f"{what}: {'as directly' if good else 'NOT the own statement'}"
            counts[key] = counts.get(key, 0) + 1
            if not good and len(errors) < 12:
                errors.append(f"{what}: {detail}")

    def worker(t):
        c = None
        try:
            c = connect(autocommit=True)
            cur = c.cursor()
            for r in range(rounds):
                cur.execute("INSERT INTO own (who) VALUES (%s)", (t,))
                mine = cur.lastrowid
                cur.execute("SELECT LAST_INSERT_ID()")
                last = cur.fetchone()[0]
                note("LAST_INSERT_ID() after an INSERT", last == mine, f"{last} vs {mine}")
                cur.execute("UPDATE own SET who = who WHERE id <= 3")
                cur.execute("SELECT ROW_COUNT()")
                rc = cur.fetchone()[0]
                note("ROW_COUNT() after an UPDATE of 3 rows", rc == 3, rc)
                cur.execute("SELECT SQL_CALC_FOUND_ROWS id FROM own WHERE id <= 3 LIMIT 1")
                cur.fetchall()
                cur.execute("SELECT FOUND_ROWS()")
                fr = cur.fetchone()[0]
                note("FOUND_ROWS() after SQL_CALC_FOUND_ROWS", fr == 3, fr)
                cur.execute("SELECT 1 / 0, CAST('12abc' AS INTEGER)")
                cur.fetchall()
                cur.execute("SHOW WARNINGS")
                w = [tuple(x)[1] for x in cur.fetchall()]
                note("SHOW WARNINGS after a statement with 2 warnings", w == [1365, 1292], w)
                cur.execute("SELECT 1 / 0")
                cur.fetchall()
                cur.execute("SELECT @@warning_count")
                wc = cur.fetchone()[0]
                note("@@warning_count after a statement with 1 warning", wc == 1, wc)
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(f"thread {t}: {e!r}")
                counts["errors"] = counts.get("errors", 0) + 1
        finally:
            if c is not None:
                c.close()

    with deadline("own results", 100):
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    for e in errors:
        log(e)
    for k in sorted(counts):
        out(f"{k}:", counts[k])


# ---------------------------------------------------------------------------------------------
# d. prepared statements across pooled connections


def scenario_prepared():
    threads_n, rounds = int(ARGS[0]), int(ARGS[1])
    with deadline("setup"):
        c = connect()
        cur = c.cursor()
        cur.execute("DROP TABLE IF EXISTS ps")
        cur.execute("CREATE TABLE ps (id INT PRIMARY KEY, s VARCHAR(40), d DECIMAL(10,2))")
        c.commit()
        c.close()
    lock = threading.Lock()
    stats = {"ok": 0, "mismatch": 0, "errors": 0}
    errors = []
    pool = make_pool(0, 3)

    def note(key, msg=None):
        with lock:
            stats[key] += 1
            if msg:
                errors.append(msg)

    def worker(t):
        for r in range(rounds):
            try:
                c = pool_get(pool)
                try:
                    i = t * 1000 + r
                    if DRIVER == "connector":
                        pc = c.cursor(prepared=True)
                        pc.execute("SELECT ? + 0, CONCAT(?, '-x'), ? IS NULL", (i, f"s{i}", None))
                        row = pc.fetchall()
                        want = [(i, f"s{i}-x", 1)]
                        # The same statement text with other parameter types.
                        pc.execute("SELECT ? + 0, CONCAT(?, '-x'), ? IS NULL",
                                   (decimal.Decimal("1.5"), i, "n"))
                        row2 = pc.fetchall()
                        want2 = [(decimal.Decimal("1.5"), f"{i}-x", 0)]
                        pc.execute("INSERT INTO ps VALUES (?, ?, ?)", (i, f"v{i}", decimal.Decimal(i) / 4))
                        c.commit()
                        pc.execute("SELECT s, d FROM ps WHERE id = ?", (i,))
                        row3 = pc.fetchall()
                        c.commit()
                        pc.close()  # COM_STMT_CLOSE; the next round prepares again
                    else:
                        cur = c.cursor()
                        cur.execute("SELECT %s + 0, CONCAT(%s, '-x'), %s IS NULL", (i, f"s{i}", None))
                        row = [tuple(x) for x in cur.fetchall()]
                        want = [(i, f"s{i}-x", 1)]
                        cur.execute("SELECT %s + 0, CONCAT(%s, '-x'), %s IS NULL",
                                    (decimal.Decimal("1.5"), i, "n"))
                        row2 = [tuple(x) for x in cur.fetchall()]
                        want2 = [(decimal.Decimal("1.5"), f"{i}-x", 0)]
                        cur.executemany("INSERT INTO ps VALUES (%s, %s, %s)",
                                        [(i, f"v{i}", decimal.Decimal(i) / 4)])
                        c.commit()
                        cur.execute("SELECT s, d FROM ps WHERE id = %s", (i,))
                        row3 = [tuple(x) for x in cur.fetchall()]
                        c.commit()
                    want3 = [(f"v{i}", decimal.Decimal(i) / 4)]
                    row = [tuple(x) for x in row]
                    row2 = [tuple(x) for x in row2]
                    row3 = [tuple(x) for x in row3]
                    if row == want and row2 == want2 and row3 == want3:
                        note("ok")
                    else:
                        note("mismatch", f"{t}/{r}: {row} {row2} {row3}")
                finally:
                    pool_put(pool, c)
            except Exception as e:  # noqa: BLE001
                note("errors", f"{t}/{r}: {e!r}")

    with deadline("pooled prepared statements", 150):
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    for e in errors[:10]:
        log(e)
    for k in ["ok", "mismatch", "errors"]:
        out(f"{k}:", stats[k])
    out("primary rows:", scalar_direct("SELECT count(*) FROM ps"))

    with deadline("a statement prepared in one transaction, executed in later ones"):
        c = connect()
        if DRIVER == "connector":
            pc = c.cursor(prepared=True)
            pc.execute("UPDATE ps SET s = ? WHERE id = ?", ("first", 0))
            c.commit()
            time.sleep(0.05)
            for k in range(5):
                pc.execute("UPDATE ps SET s = ? WHERE id = ?", (f"later{k}", k))
                c.commit()
            pc.execute("SELECT s FROM ps WHERE id <= ? ORDER BY id", (4,))
            out("later transactions", [r[0] for r in pc.fetchall()])
            c.commit()
            pc.close()
            # Closed, then prepared again: works the same.
            pc = c.cursor(prepared=True)
            pc.execute("SELECT s FROM ps WHERE id = ?", (0,))
            out("prepared again", pc.fetchall())
            pc.close()
        else:
            # PyMySQL has no server-side statements: SQL PREPARE / EXECUTE, the way a
            # text-protocol application reuses a plan across transactions.
            cur = c.cursor()
            cur.execute("PREPARE upd FROM 'UPDATE ps SET s = ? WHERE id = ?'")
            cur.execute("SET @s = 'first', @i = 0")
            cur.execute("EXECUTE upd USING @s, @i")
            c.commit()
            for k in range(5):
                cur.execute("SET @s = %s, @i = %s", (f"later{k}", k))
                cur.execute("EXECUTE upd USING @s, @i")
                c.commit()
            cur.execute("SELECT s FROM ps WHERE id <= 4 ORDER BY id")
            out("later transactions", [r[0] for r in cur.fetchall()])
            cur.execute("DEALLOCATE PREPARE upd")
            try:
                cur.execute("EXECUTE upd USING @s, @i")
                out("executed after DEALLOCATE")
            except DriverError as e:
                out("after DEALLOCATE", code_of(e))
            c.commit()
        c.close()
    out("primary later rows", sorted(r[0] for r in all_rows_direct(
        "SELECT s FROM ps WHERE id <= 4")))


# ---------------------------------------------------------------------------------------------
# e. a session that leaves state behind (the harness then looks at the connection)


def scenario_dirty():
    """Leaves everything a driver session can leave on its connection, with a transaction
    left open or not (ARGS[1] = tx | notx), then quits (COM_QUIT) or drops its socket
    (ARGS[0] = quit | drop)."""
    how, tx = ARGS[0], ARGS[1]
    c = connect(sql_mode="ANSI", time_zone="+05:45", init="max_statement_time = 7")
    cur = c.cursor()
    with deadline("dirty"):
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        cur.execute("SET @secret = 'left behind', @leak_n = 42")
        cur.execute("CREATE TEMPORARY TABLE tmp_leak (a INT)")
        cur.execute("SELECT GET_LOCK('sy_leak_lock', 0)")
        cur.fetchall()
        cur.execute("PREPARE leak_stmt FROM 'SELECT 1'")
        cur.execute("SET NAMES latin1")
        cur.execute("SET wait_timeout = 77, sql_select_limit = 3, lc_time_names = 'de_DE'")
        if DRIVER == "connector":
            pc = c.cursor(prepared=True)
            pc.execute("SELECT ? + 1", (1,))
            pc.fetchall()  # left open: never closed
        if tx == "tx":
            cur.execute("UPDATE leak_t SET v = v + 1 WHERE id = 1")  # left uncommitted
        else:
            c.commit()
        out("dirty:", tx, one(c, "SELECT @@in_transaction")[0])
    if how == "drop":
        drop_socket(c)
    else:
        c.close()


# ---------------------------------------------------------------------------------------------
# f. routing


def scenario_routing():
    n = int(ARGS[0])
    c = connect(autocommit=True)
    cur = c.cursor()
    with deadline("autocommit reads"):
        for _ in range(n):
            cur.execute("SELECT @@server_id")
            out("autocommit text read on", cur.fetchone()[0])
        if DRIVER == "connector":
            pc = c.cursor(prepared=True)
            for _ in range(n):
                pc.execute("SELECT @@server_id, ? + 0", (1,))
                out("autocommit prepared read on", pc.fetchone()[0])
            pc.close()
    with deadline("writes and transactions"):
        cur.execute("DROP TABLE IF EXISTS r")
        cur.execute("CREATE TABLE r (id INT AUTO_INCREMENT PRIMARY KEY, s INT)")
        for _ in range(3):
            cur.execute("INSERT INTO r (s) SELECT @@server_id")
            cur.execute("START TRANSACTION")
            cur.execute("SELECT @@server_id")
            out("read inside a transaction on", cur.fetchone()[0])
            cur.execute("INSERT INTO r (s) SELECT @@server_id")
            cur.execute("COMMIT")
            cur.execute("SELECT @@server_id FROM r LIMIT 1 FOR UPDATE")
            out("locking read on", cur.fetchone()[0])
        out("writes executed on", sorted(set(r[0] for r in all_rows_direct("SELECT s FROM r"))))
    with deadline("autocommit off"):
        c2 = connect(autocommit=False)
        cur2 = c2.cursor()
        for _ in range(3):
            cur2.execute("SELECT @@server_id")
            out("autocommit-off read on", cur2.fetchone()[0])
            c2.commit()
        c2.close()
    c.close()


# ---------------------------------------------------------------------------------------------
# Django on PyMySQL (pymysql.install_as_MySQLdb()): persistent connections, one per thread.
# Django's MySQL backend runs `SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED` on
# every new connection, asks `SELECT VERSION(), @@sql_mode, ...` once, and uses
# CLIENT_FOUND_ROWS; in transaction mode none of it may keep a server connection.


def scenario_django():
    threads, rounds = (int(a) for a in (ARGS or ["6", "4"]))
    import pymysql as pm

    pm.install_as_MySQLdb()
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={"default": {
            "ENGINE": "django.db.backends.mysql", "HOST": HOST, "PORT": PORT, "USER": USER,
            "PASSWORD": PASSWORD, "NAME": DB, "CONN_MAX_AGE": None,
            "OPTIONS": {"connect_timeout": 10, "read_timeout": CALL, "write_timeout": CALL},
        }},
        TIME_ZONE="UTC", USE_TZ=True, INSTALLED_APPS=[],
    )
    django.setup()
    log(f"Django {django.get_version()}")
    from django.db import connection, transaction
    from django.utils import timezone

    step = threading.Barrier(threads + 1, timeout=60)
    said = {i: [] for i in range(threads)}
    at = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)

    def worker(i):
        lines = said[i]
        try:
            connection.ensure_connection()
            for r in range(rounds):
                step.wait()
                with transaction.atomic(), connection.cursor() as c:
                    n = c.execute("INSERT INTO dj_t (who, at) VALUES (%s, %s)", [i, at])
                    lines.append(f"round {r}: inserted {n}, id {c.lastrowid > 0}")
                    c.execute("UPDATE dj_t SET n = n + 1 WHERE who = %s", [i])
                    lines.append(f"round {r}: updated {c.rowcount}")
                    c.execute("SELECT @@tx_isolation, @@in_transaction")
                    lines.append(f"round {r}: in transaction {c.fetchone()}")
                with connection.cursor() as c:
                    c.execute("SELECT count(*), sum(n), min(at) FROM dj_t WHERE who = %s", [i])
                    count, total, first = c.fetchone()
                    lines.append(f"round {r}: {count} rows, n {total}, aware {timezone.is_aware(first)} {first.isoformat()}")
                    c.execute("SELECT @@tx_isolation, @@autocommit")
                    lines.append(f"round {r}: outside {c.fetchone()}")
        except Exception as e:  # noqa: BLE001 - the outcome is what is compared
            lines.append(f"error {type(e).__name__} {code_of(e)}")
            step.abort()
        finally:
            connection.close()

    with deadline("Django threads", 120):
        ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        try:
            plain = connect(autocommit=True)
            try:
                for r in range(rounds):
                    step.wait()
                    with plain.cursor() as c:
                        c.execute("SELECT @@tx_isolation")
                        out(f"plain client, round {r}: {c.fetchone()[0]}")
            finally:
                plain.close()
        except threading.BrokenBarrierError:
            out("plain client: a Django thread failed")
        for t in ts:
            t.join()
    for i in range(threads):
        for line in said[i]:
            out(f"thread {i}: {line}")


def main():
    faulthandler.enable()
    fn = globals().get("scenario_" + SCENARIO)
    if fn is None:
        raise SystemExit(f"unknown scenario {SCENARIO}")
    fn()
    out("END")


if __name__ == "__main__":
    main()
