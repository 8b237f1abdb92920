#!/usr/bin/env python3
"""Real-driver scenarios (psycopg 3, asyncpg, and Django on psycopg) run by tests/pg_drivers.rs.

Usage: scenarios.py SCENARIO [ARGS...]

The server under test is given by the environment: SY_HOST, SY_PORT, SY_USER, SY_PASSWORD,
SY_DB. The PostgreSQL primary itself (for reading back what really got committed) is
SY_DIRECT_PORT, SY_DIRECT_USER, SY_DIRECT_DB (no password). When the harness runs a scenario
directly against the primary, both name the same server.

Every scenario prints its observable results (rows, SQLSTATEs) on stdout, one fact a line, in
an order that does not depend on timing, and exits 0 when it ran to the end. Every driver call
has a timeout: asyncio.wait_for for asyncpg and psycopg's async API, and a faulthandler
deadline per step as a backstop, which dumps the stack and exits 1 if a step hangs (also
inside C code), so a hang is a failure with a traceback, never a stuck test.
"""

import asyncio
import collections
import contextlib
import faulthandler
import io
import os
import random
import sys
import threading
import time

import asyncpg
import psycopg
from psycopg import pq

HOST = os.environ.get("SY_HOST", "127.0.0.1")
PORT = int(os.environ["SY_PORT"])
USER = os.environ["SY_USER"]
PASSWORD = os.environ.get("SY_PASSWORD") or None
DB = os.environ["SY_DB"]
DIRECT_PORT = int(os.environ.get("SY_DIRECT_PORT", PORT))
DIRECT_USER = os.environ.get("SY_DIRECT_USER", USER)
DIRECT_DB = os.environ.get("SY_DIRECT_DB", DB)

CALL = 20.0  # seconds allowed for one driver call


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


def state_of(e):
    """SQLSTATE of a driver error, or the exception class for non-server errors."""
    code = getattr(e, "sqlstate", None)
    return code if code else type(e).__name__


# ---------------------------------------------------------------------------------------------
# connections


def pg3(direct=False, **kw):
    """A synchronous psycopg 3 connection (autocommit unless told otherwise)."""
    kw.setdefault("autocommit", True)
    if direct:
        return psycopg.connect(host=HOST, port=DIRECT_PORT, user=DIRECT_USER, dbname=DIRECT_DB,
                               connect_timeout=10, **kw)
    return psycopg.connect(host=HOST, port=PORT, user=USER, password=PASSWORD, dbname=DB,
                           connect_timeout=10, **kw)


async def apg3(**kw):
    """An asynchronous psycopg 3 connection to the server under test."""
    kw.setdefault("autocommit", True)
    return await asyncio.wait_for(
        psycopg.AsyncConnection.connect(host=HOST, port=PORT, user=USER, password=PASSWORD,
                                        dbname=DB, connect_timeout=10, **kw), CALL)


async def apg(direct=False, **kw):
    """An asyncpg connection."""
    if direct:
        return await asyncpg.connect(host=HOST, port=DIRECT_PORT, user=DIRECT_USER,
                                     database=DIRECT_DB, timeout=10, command_timeout=CALL, **kw)
    return await asyncpg.connect(host=HOST, port=PORT, user=USER, password=PASSWORD,
                                 database=DB, timeout=10, command_timeout=CALL, **kw)


def direct_scalar(sql):
    with deadline(f"direct: {sql}", 30):
        with pg3(direct=True) as c:
            return c.execute(sql).fetchone()[0]


# ---------------------------------------------------------------------------------------------
# b. session-state leaks between clients
#
# Defect targeted: state left by set_config(), DO blocks, functions, SELECT INTO TEMP, temp
# views and session advisory locks is not seen by the proxy (no ParameterStatus, no SET
# keyword), so the client is not pinned and the backend connection, state and all, goes to the
# next client.

LEAKS = {
    "statement_timeout": "SELECT set_config('statement_timeout', '1', false)",
    "search_path": "SELECT set_config('search_path', 'leak_schema', false)",
    "advisory_lock": "SELECT pg_advisory_lock(42)",
    "select_into_temp": "SELECT 1 AS x INTO TEMP t_leak",
    "temp_view": "CREATE OR REPLACE TEMP VIEW v_leak AS SELECT 1 AS x",
    "do_set_config": "DO $$ BEGIN PERFORM set_config('work_mem', '1234kB', false); END $$",
    "function_set_config": "SELECT leak_fn()",
}

CHECK_SQL = (
    "SELECT current_setting('statement_timeout'), current_setting('search_path'),"
    " current_setting('work_mem'),"
    " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()),"
    " (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()),"
    " to_regclass('t_leak') IS NULL AND to_regclass('v_leak') IS NULL"
)
SLEEP_SQL = "SELECT pg_sleep(0.01)"
COPY_QUERY = "SELECT g, md5(g::text) FROM generate_series(1, 10000) g"
COPY_SQL = f"COPY ({COPY_QUERY}) TO STDOUT"
PRIMARY_HINT = "/* switchyard:primary */ "


def fmt_check(mode, row, sleep, copy):
    st, sp, wm, locks, temp, noobj = row
    return (f"mode={mode} statement_timeout={st} search_path={sp} work_mem={wm} "
            f"own_advisory_locks={locks} own_temp_relations={temp} leak_objects_absent={noobj} "
            f"sleep={sleep} copy={copy}")


def pg3_checks(c):
    """The three ways a fresh psycopg client looks for someone else's state: in a transaction
    (primary), with a primary hint, and plainly in autocommit (maybe a replica). A failure
    anywhere in a mode (a leaked statement_timeout fails even BEGIN) is that mode's result."""
    lines = []
    for mode in ("tx", "hint", "plain"):
        prefix = PRIMARY_HINT if mode == "hint" else ""
        c.autocommit = mode != "tx"
        try:
            row = c.execute(prefix + CHECK_SQL).fetchone()
            c.execute(prefix + SLEEP_SQL)
            n = 0
            with c.cursor().copy(prefix + COPY_SQL) as cp:
                for _ in cp.rows():
                    n += 1
            if mode == "tx":
                c.commit()
            lines.append(fmt_check(mode, row, "ok", n))
        except psycopg.Error as e:
            lines.append(f"mode={mode} failed: {state_of(e)}")
            try:
                c.rollback()
            except psycopg.Error:
                pass
    c.autocommit = True
    return lines


async def apg_checks(c):
    lines = []
    for mode in ("tx", "hint", "plain"):
        prefix = PRIMARY_HINT if mode == "hint" else ""
        tx = c.transaction() if mode == "tx" else None
        try:
            if tx:
                await tx.start()
            row = tuple(await c.fetchrow(prefix + CHECK_SQL))
            await c.execute(prefix + SLEEP_SQL)
            buf = io.BytesIO()
            await c.copy_from_query(prefix + COPY_QUERY, output=buf, timeout=CALL)
            if tx:
                await tx.commit()
            lines.append(fmt_check(mode, row, "ok", buf.getvalue().count(b"\n")))
        except asyncpg.PostgresError as e:
            lines.append(f"mode={mode} failed: {state_of(e)}")
            if c.is_in_transaction():
                try:
                    await c.execute("ROLLBACK")
                except asyncpg.PostgresError:
                    pass
    return lines


def summarize(lines):
    for line, n in sorted(collections.Counter(lines).items()):
        out(f"{n} x {line}")


def leak_pg3(kind, keep, others):
    with deadline(f"client A runs {kind}", 30):
        a = pg3()
        try:
            a.execute(LEAKS[kind])
            out(f"A: {kind} ok")
        except psycopg.Error as e:
            out(f"A: {kind} {state_of(e)}")
        if not keep:
            a.close()
    lines = []
    for i in range(others):
        with deadline(f"other client {i}", 60):
            with pg3() as c:
                lines += pg3_checks(c)
    summarize(lines)
    if keep:
        with deadline("close client A", 20):
            a.close()


async def leak_apg(kind, keep, others):
    a = await apg()
    try:
        await asyncio.wait_for(a.execute(LEAKS[kind]), CALL)
        out(f"A: {kind} ok")
    except asyncpg.PostgresError as e:
        out(f"A: {kind} {state_of(e)}")
    if not keep:
        await apg_close_or_terminate(a)
    lines = []
    for _ in range(others):
        c = await apg()
        lines += await asyncio.wait_for(apg_checks(c), 60)
        await apg_close_or_terminate(c)
    summarize(lines)
    if keep:
        await apg_close_or_terminate(a)


def scenario_leak(driver, kind, keep, others="30"):
    keep = keep == "keep"
    if driver == "psycopg":
        leak_pg3(kind, keep, int(others))
    else:
        with deadline(f"asyncpg leak {kind}", 240):
            asyncio.run(leak_apg(kind, keep, int(others)))


# ---------------------------------------------------------------------------------------------
# c. session-leak detector and the sessions that dirty a connection
#
# The harness runs `dirty DRIVER KIND` then `detect DRIVER` through a proxy with one backend
# connection, so the detector surely lands on the connection the dirty session used; the
# detector's output must equal what a fresh direct connection of the same driver reports.
# Proxy-owned prepared statements (`sy_*`) are deliberately not reported: they are the
# proxy's documented cache of protocol-level statements, invisible to clients by name.

DETECT = [
    ("session_settings",
     "SELECT coalesce(string_agg(name || '=' || setting, ',' ORDER BY name), '')"
     " FROM pg_settings WHERE source = 'session'"),
    # Settings from startup packets (compared by the harness only to learn which names the
    # driver's own startup packet sets: the proxy applies those with set_config()).
    ("client_settings",
     "SELECT coalesce(string_agg(name || '=' || setting, ',' ORDER BY name), '')"
     " FROM pg_settings WHERE source = 'client'"),
    ("settings",
     "SELECT current_setting('statement_timeout') || ',' || current_setting('search_path')"
     " || ',' || current_setting('work_mem')"
     " || ',' || current_setting('default_transaction_read_only')"),
    ("application_name", "SELECT current_setting('application_name')"),
    ("temp_relations",
     "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()"),
    ("advisory_locks",
     "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"),
    ("prepared_statements",
     "SELECT coalesce(string_agg(name, ',' ORDER BY name), '') FROM pg_prepared_statements"
     " WHERE name NOT LIKE 'sy\\_%' AND name NOT LIKE '\\_\\_asyncpg\\_%'"),
    ("listening", "SELECT coalesce(string_agg(c, ',' ORDER BY c), '')"
                  " FROM pg_listening_channels() c"),
    ("cursors", "SELECT coalesce(string_agg(name, ',' ORDER BY name), '') FROM pg_cursors"
                " WHERE name <> ''"),
]


def scenario_detect(driver):
    """Print what a fresh client finds on its backend connection (see DETECT)."""
    if driver == "psycopg":
        with deadline("detect (psycopg)", 60):
            with pg3() as c:
                for name, sql in DETECT:
                    try:
                        v = c.execute(PRIMARY_HINT + sql).fetchone()[0]
                    except psycopg.Error as e:
                        v = f"ERR:{state_of(e)}"
                    out(f"{name}: {v}")
    else:
        async def run():
            c = await apg()
            for name, sql in DETECT:
                try:
                    v = await c.fetchval(PRIMARY_HINT + sql)
                except asyncpg.PostgresError as e:
                    v = f"ERR:{state_of(e)}"
                out(f"{name}: {v}")
            await asyncio.wait_for(c.close(timeout=5), 10)
        with deadline("detect (asyncpg)", 60):
            asyncio.run(run())


DIRTY = {
    "set": ["SET work_mem = '3MB'"],
    "set_application_name": ["SET application_name = 'dirty'"],
    "set_config": ["SELECT set_config('work_mem', '5MB', false)"],
    "set_config_search_path": ["SELECT set_config('search_path', 'leak_schema', false)"],
    "statement_timeout": ["SELECT set_config('statement_timeout', '1', false)"],
    "do_set_config": [LEAKS["do_set_config"]],
    "function_set_config": [LEAKS["function_set_config"]],
    "temp_table": ["CREATE TEMP TABLE tt_dirty (x int)"],
    "select_into_temp": [LEAKS["select_into_temp"]],
    "temp_view": [LEAKS["temp_view"]],
    "advisory_lock": ["SELECT pg_advisory_lock(7)"],
    "listen": ["LISTEN dirty_chan"],
    "sql_prepare": ["PREPARE dirty_stmt AS SELECT 1"],
    "cursor_with_hold": ["DECLARE dirty_cur CURSOR WITH HOLD FOR SELECT 1"],
    "read_only_default": ["SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"],
}


async def apg_close_or_terminate(c):
    """Close; if that hangs (a known proxy defect, tested on its own), drop the socket so the
    detector that follows still runs."""
    try:
        await asyncio.wait_for(c.close(timeout=5), 8)
    except (asyncio.TimeoutError, TimeoutError):
        log("close() timed out: terminated the connection instead")
        c.terminate()


def scenario_dirty(driver, kind):
    """A client that leaves `kind` of state on its connection, then leaves."""
    if kind == "protocol_prepare":
        # Server-side prepared statements of the driver itself (not SQL PREPARE).
        if driver == "psycopg":
            with deadline("psycopg prepare=True", 30):
                with pg3(prepare_threshold=0) as c:
                    for i in range(3):
                        c.execute("SELECT %s::int + 1", (i,), prepare=True).fetchone()
                out("dirty protocol_prepare ok")
        else:
            async def run():
                c = await apg()
                st = await c.prepare("SELECT $1::int + 2")
                await st.fetchval(1)
                await apg_close_or_terminate(c)
            with deadline("asyncpg prepare", 30):
                asyncio.run(run())
            out("dirty protocol_prepare ok")
        return
    stmts = DIRTY[kind]
    if driver == "psycopg":
        with deadline(f"dirty {kind} (psycopg)", 30):
            c = pg3()
            for s in stmts:
                try:
                    c.execute(s)
                    out(f"dirty {kind}: ok")
                except psycopg.Error as e:
                    out(f"dirty {kind}: {state_of(e)}")
            c.close()
    else:
        async def run():
            c = await apg()
            for s in stmts:
                try:
                    await c.execute(s)
                    out(f"dirty {kind}: ok")
                except asyncpg.PostgresError as e:
                    out(f"dirty {kind}: {state_of(e)}")
            await apg_close_or_terminate(c)
        with deadline(f"dirty {kind} (asyncpg)", 30):
            asyncio.run(run())


# ---------------------------------------------------------------------------------------------
# d. asyncpg pool bigger than the proxy's pool
#
# Defect targeted: asyncpg's reset query on release (pg_advisory_unlock_all(); CLOSE ALL;
# UNLISTEN *; RESET ALL) pins every pooled client connection to a backend, so 20 pooled
# client connections need 20 backend connections and the rest time out (53300
# checkout_timeout).


async def pool_stress(cycles, tasks):
    pool = await asyncio.wait_for(asyncpg.create_pool(
        host=HOST, port=PORT, user=USER, password=PASSWORD, database=DB, min_size=20,
        max_size=20, timeout=10, command_timeout=CALL), 60)
    errors = collections.Counter()
    done = collections.Counter()
    q = asyncio.Queue()
    for i in range(cycles):
        q.put_nowait(i)

    async def worker():
        while True:
            try:
                i = q.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                async with pool.acquire(timeout=CALL) as c:
                    if i % 10 == 3:
                        await c.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
                        done["update"] += 1
                    elif i % 10 == 7:
                        async with c.transaction():
                            await c.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
                            await c.execute("INSERT INTO ledger (i) VALUES ($1)", i)
                        done["transaction"] += 1
                    else:
                        v = await c.fetchval("select 1")
                        assert v == 1
                        done["select"] += 1
            except Exception as e:  # noqa: BLE001 - every failure is counted and printed
                errors[f"{state_of(e)}: {str(e).splitlines()[0][:120]}"] += 1

    await asyncio.wait_for(asyncio.gather(*[worker() for _ in range(tasks)]), 200)
    for k in sorted(done):
        out(f"{k}: {done[k]}")
    for k, n in sorted(errors.items()):
        out(f"error x{n}: {k}")
    out(f"errors: {sum(errors.values())}")
    out(f"counter: {await pool.fetchval(PRIMARY_HINT + 'SELECT n FROM counter WHERE id = 1')}")
    out(f"ledger: {await pool.fetchval(PRIMARY_HINT + 'SELECT count(*) FROM ledger')}")

    # One pooled connection changes its application_name; the pool keeps working, and the
    # setting does not follow the connection to other acquirers after its release.
    async with pool.acquire(timeout=CALL) as c:
        await c.execute("SET application_name = 'x'")
        out(f"own application_name: {await c.fetchval('SHOW application_name')}")
    seen = collections.Counter()
    errs = 0
    for _ in range(40):
        try:
            async with pool.acquire(timeout=CALL) as c:
                seen[await c.fetchval(PRIMARY_HINT + "SHOW application_name")] += 1
        except Exception as e:  # noqa: BLE001
            errs += 1
            log(f"after SET application_name: {e!r}")
    out(f"after SET application_name: errors={errs} values={sorted(seen)}")
    try:
        await asyncio.wait_for(pool.close(), 30)
        out("pool closed")
    except (asyncio.TimeoutError, TimeoutError):
        out("pool close timed out")
        pool.terminate()


def scenario_pool_stress(cycles="500", tasks="40"):
    with deadline("asyncpg pool stress", 240):
        asyncio.run(pool_stress(int(cycles), int(tasks)))


# ---------------------------------------------------------------------------------------------
# e. psycopg 3 pipeline mode and server-side prepared statements
#
# Defect targeted: a pipeline (several extended-protocol statements up to one Sync) is routed
# by its first statement: `SELECT 1` sends the whole batch to a replica, and the UPDATE after
# it fails with 25006 "cannot execute UPDATE in a read-only transaction".


def guarded(label, fn, secs=30):
    """Runs fn; a driver error anywhere in it (also in a `with` block's exit) is its result."""
    with deadline(label, secs):
        try:
            fn()
        except psycopg.Error as e:
            out(f"{label}: {state_of(e)} {str(e).splitlines()[0]}")


def scenario_pipeline():
    def autocommit_pipeline():
        with pg3() as c:
            with c.pipeline():
                c1 = c.execute("SELECT 1")
                c.execute("UPDATE t SET v = v + 1 WHERE id = 1")
                c3 = c.execute("SELECT v FROM t WHERE id = 1")
            out(f"autocommit pipeline: {c1.fetchone()[0]} {c3.fetchone()[0]}")

    guarded("autocommit pipeline", autocommit_pipeline)
    out(f"direct after autocommit pipeline: {direct_scalar('SELECT v FROM t WHERE id = 1')}")

    def transaction_pipeline():
        with pg3(autocommit=False) as c:
            with c.pipeline():
                c1 = c.execute("SELECT count(*) FROM t")
                c.execute("UPDATE t SET v = v + 10 WHERE id = 1")
                c3 = c.execute("SELECT v FROM t WHERE id = 1")
            out(f"transaction pipeline: {c1.fetchone()[0]} {c3.fetchone()[0]}")
            c.rollback()

    guarded("transaction pipeline", transaction_pipeline)
    out(f"direct after rolled back pipeline: {direct_scalar('SELECT v FROM t WHERE id = 1')}")

    def executemany_pipeline():
        with pg3() as c:
            with c.pipeline():
                c.execute("SELECT 2")
                c.cursor().executemany("INSERT INTO t (id, v) VALUES (%s, %s)",
                                       [(100 + i, i) for i in range(5)])
            out("executemany pipeline: ok")

    guarded("executemany pipeline", executemany_pipeline)
    out(f"direct rows 100..104: {direct_scalar('SELECT count(*) FROM t WHERE id >= 100')}")

    # Connections that served the pipelines above must come back clean: fresh clients (which
    # may get them) run prepared and plain statements without protocol errors.
    with deadline("fresh clients after the pipelines", 60):
        errs = collections.Counter()
        for i in range(20):
            try:
                with pg3(prepare_threshold=0) as c:
                    c.execute("SELECT %s::int", (i,), prepare=True).fetchone()
                    c.execute("SELECT v FROM t WHERE id = 1").fetchone()
            except psycopg.Error as e:
                errs[f"{state_of(e)} {str(e).splitlines()[0]}"] += 1
        out(f"fresh clients after pipelines: {sum(errs.values())} errors")
        for k, n in sorted(errs.items()):
            out(f"  error x{n}: {k}")

    # Server-side prepared statements: prepare=True, and prepare_threshold=0 (everything).
    # Each part reports its error (if any) and the next part goes on with a new connection.
    def prepared_read_autocommit():
        with pg3(prepare_threshold=0) as c:
            for _ in range(3):
                v = c.execute("SELECT v FROM t WHERE id = %s", (1,), prepare=True).fetchone()[0]
            out(f"prepared read autocommit: {v}")

    def prepared_write_autocommit():
        with pg3(prepare_threshold=0) as c:
            for _ in range(3):
                c.execute("UPDATE t SET v = v + 1 WHERE id = %s", (2,), prepare=True)
            v = c.execute(PRIMARY_HINT + "SELECT v FROM t WHERE id = 2").fetchone()[0]
            out(f"prepared write autocommit: {v}")

    def prepared_in_rolled_back_tx():
        with pg3(autocommit=False, prepare_threshold=0) as c:
            for _ in range(3):
                c.execute("UPDATE t SET v = v + 1 WHERE id = %s", (5,), prepare=True)
            mine = c.execute("SELECT v FROM t WHERE id = %s", (5,), prepare=True).fetchone()[0]
            out(f"prepared in transaction sees own writes: {mine}")
            c.rollback()

    def prepared_in_committed_tx():
        with pg3(autocommit=False, prepare_threshold=0) as c:
            for _ in range(2):
                c.execute("UPDATE t SET v = v + 1 WHERE id = %s", (3,), prepare=True)
            c.commit()

    def execute_autocommit():
        with pg3() as c:
            c.execute("UPDATE t SET v = v + 100 WHERE id = 4")
            # Hinted: an unhinted read may go to a replica that has not replayed the UPDATE yet
            # (the default consistency is eventual).
            v = c.execute(PRIMARY_HINT + "SELECT v FROM t WHERE id = 4").fetchone()[0]
            out(f"conn.execute autocommit: {v}")

    for part in (prepared_read_autocommit, prepared_write_autocommit,
                 prepared_in_rolled_back_tx, prepared_in_committed_tx, execute_autocommit):
        with deadline(part.__name__, 30):
            try:
                part()
                out(f"{part.__name__}: ok")
            except psycopg.Error as e:
                out(f"{part.__name__}: {state_of(e)} {str(e).splitlines()[0]}")
    out(f"direct id 2: {direct_scalar('SELECT v FROM t WHERE id = 2')}")
    out(f"direct id 3: {direct_scalar('SELECT v FROM t WHERE id = 3')}")
    out(f"direct id 4: {direct_scalar('SELECT v FROM t WHERE id = 4')}")
    out(f"direct id 5: {direct_scalar('SELECT v FROM t WHERE id = 5')}")


# ---------------------------------------------------------------------------------------------
# f. COPY
#
# Defect targeted: COPY FROM STDIN through the proxy hangs (the server sits in ClientRead,
# waiting for CopyData the proxy does not pass on).


async def copy_stress(total, conc, seed, max_rows):
    rnd = random.Random(seed)
    # Log-uniform sizes between 10 and max_rows keep the total bounded on 2 cores.
    sizes = [int(10 * (max_rows / 10) ** rnd.random()) for _ in range(total)]
    sizes[0] = max_rows
    sem = asyncio.Semaphore(conc)
    ok_rows = 0
    results = collections.Counter()

    async def one(i, n):
        nonlocal ok_rows
        async with sem:
            c = None
            try:
                c = await apg()
                recs = [(i, j, f"r{j}") for j in range(n)]
                await asyncio.wait_for(
                    c.copy_records_to_table("copied", records=recs, timeout=20), 25)
                ok_rows += n
                results["ok"] += 1
            except Exception as e:  # noqa: BLE001
                results[f"{state_of(e)}"] += 1
                log(f"copy {i} ({n} rows): {e!r}")
            finally:
                if c is not None:
                    try:
                        await asyncio.wait_for(c.close(timeout=5), 10)
                    except Exception as e:  # noqa: BLE001
                        results["close failed"] += 1
                        log(f"close after copy {i}: {e!r}")
                        c.terminate()

    await asyncio.gather(*[one(i, n) for i, n in enumerate(sizes)])
    for k, n in sorted(results.items()):
        out(f"copies {k}: {n}")
    out(f"rows copied (reported ok): {ok_rows}")


def scenario_copy_stress(total="100", conc="4", seed="1", max_rows="100000"):
    with deadline("asyncpg copy stress", 230):
        asyncio.run(copy_stress(int(total), int(conc), int(seed), int(max_rows)))


def scenario_copy_psycopg(rows="20000"):
    rows = int(rows)
    with deadline("psycopg COPY FROM STDIN", 30):
        with pg3() as c:
            with c.cursor().copy("COPY t2 (id, s) FROM STDIN") as cp:
                for i in range(rows):
                    cp.write_row((i, f"row {i}"))
            out("copy in: done")
    with deadline("psycopg COPY FROM STDIN in a transaction", 30):
        with pg3(autocommit=False) as c:
            with c.cursor().copy("COPY t2 (id, s) FROM STDIN") as cp:
                for i in range(10):
                    cp.write_row((rows + i, "tx"))
            out(f"copy in transaction sees: {c.execute('SELECT count(*) FROM t2').fetchone()[0]}")
            c.rollback()
    out(f"direct count: {direct_scalar('SELECT count(*) FROM t2')}")
    with deadline("psycopg COPY TO STDOUT", 30):
        with pg3() as c:
            n, total = 0, 0
            # Hinted: right after the COPY in, a replica may not have replayed it yet.
            sql = PRIMARY_HINT + "COPY (SELECT id, s FROM t2 ORDER BY id) TO STDOUT"
            with c.cursor().copy(sql) as cp:
                for row in cp.rows():
                    n += 1
                    total += int(row[0])
            out(f"copy out: rows={n} sum={total}")
    with deadline("psycopg COPY with a bad row", 30):
        with pg3() as c:
            try:
                with c.cursor().copy("COPY t2 (id, s) FROM STDIN") as cp:
                    cp.write(b"1\tok\nnot-a-number\tbad\n")
                out("bad copy: no error")
            except psycopg.Error as e:
                out(f"bad copy: {state_of(e)}")
            out(f"after bad copy: {c.execute('SELECT 1').fetchone()[0]}")


# ---------------------------------------------------------------------------------------------
# g. closing promptly after pinning
#
# Defect targeted: once a client is pinned to a backend, the proxy ignores its Terminate
# message, so asyncpg's close() (which sends Terminate and waits for the server to close the
# socket) never returns.

PIN = {
    "set_application_name": "SET application_name = 'x'",
    "set_search_path": "SET search_path = leak_schema, public",
    "set_config": "SELECT set_config('work_mem', '3MB', false)",
    "temp_table": "CREATE TEMP TABLE tt (x int)",
    "listen": "LISTEN c",
    "none": "SELECT 1",
}


async def close_after_pin():
    for kind, sql in PIN.items():
        c = await apg()
        await asyncio.wait_for(c.execute(sql), CALL)
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(c.close(timeout=5), 8)
            took = time.monotonic() - t0
            out(f"{kind}: closed {'promptly' if took < 2 else 'slowly'}")
            log(f"{kind}: close took {took:.3f}s")
        except (asyncio.TimeoutError, TimeoutError):
            out(f"{kind}: close timed out")
            c.terminate()


def scenario_close_after_pin():
    with deadline("asyncpg close after pinning", 120):
        asyncio.run(close_after_pin())


async def mixed_close(seconds, clients, seed):
    rnd = random.Random(seed)
    ops = [
        "SELECT 1", "SELECT v FROM t WHERE id = 1", "UPDATE t SET v = v + 1 WHERE id = 2",
        "SET application_name = 'mixed'", "SET search_path = leak_schema, public",
        "SELECT set_config('work_mem', '2MB', false)", "CREATE TEMP TABLE IF NOT EXISTS tm (x int)",
        "LISTEN mixed", "SELECT pg_try_advisory_lock(99)", "SELECT pg_advisory_unlock_all()",
        "BEGIN", "COMMIT", "ROLLBACK", "SELECT pg_sleep(0.005)", "DISCARD ALL",
        "PREPARE p_mixed AS SELECT 1", "DEALLOCATE ALL",
    ]
    stop = time.monotonic() + seconds
    closed = collections.Counter()

    async def asyncpg_client(k):
        r = random.Random(rnd.random())
        while time.monotonic() < stop:
            c = await apg()
            for _ in range(r.randint(1, 8)):
                op = r.choice(ops)
                try:
                    await asyncio.wait_for(c.execute(op), CALL)
                except asyncpg.PostgresError:
                    pass
                except Exception as e:  # noqa: BLE001 - not an SQL error: the client broke
                    closed["asyncpg statement failed (not an SQL error)"] += 1
                    log(f"asyncpg {op!r}: {e!r}")
                    break
            try:
                await asyncio.wait_for(c.close(timeout=5), 8)
                closed["asyncpg closed"] += 1
            except (asyncio.TimeoutError, TimeoutError):
                closed["asyncpg close timed out"] += 1
                c.terminate()

    async def psycopg_client(k):
        r = random.Random(rnd.random())
        while time.monotonic() < stop:
            c = await apg3()
            for _ in range(r.randint(1, 8)):
                op = r.choice(ops)
                try:
                    await asyncio.wait_for(c.execute(op), CALL)
                except (psycopg.errors.DatabaseError, psycopg.errors.ProgrammingError) as e:
                    if isinstance(e, psycopg.OperationalError):
                        closed["psycopg statement failed (not an SQL error)"] += 1
                        log(f"psycopg {op!r}: {e!r}")
                        break
                except Exception as e:  # noqa: BLE001 - not an SQL error: the client broke
                    closed["psycopg statement failed (not an SQL error)"] += 1
                    log(f"psycopg {op!r}: {e!r}")
                    break
            try:
                await asyncio.wait_for(c.close(), 8)
                closed["psycopg closed"] += 1
            except (asyncio.TimeoutError, TimeoutError):
                closed["psycopg close timed out"] += 1

    tasks = [asyncpg_client(k) if k % 2 == 0 else psycopg_client(k) for k in range(clients)]
    res = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), seconds + 60)
    errors = [r for r in res if isinstance(r, BaseException)]
    for e in errors:
        log(f"client failed: {e!r}")
    out(f"clients failed: {len(errors)}")
    out(f"closes timed out: {closed['asyncpg close timed out'] + closed['psycopg close timed out']}")
    out(f"closes ok: {'yes' if closed['asyncpg closed'] and closed['psycopg closed'] else 'no'}")
    out(f"statements failed without an SQL error: "
        f"{closed['asyncpg statement failed (not an SQL error)'] + closed['psycopg statement failed (not an SQL error)']}")


def scenario_mixed_close(seconds="20", clients="9", seed="7"):
    with deadline("mixed clients closing", int(seconds) + 90):
        asyncio.run(mixed_close(float(seconds), int(clients), int(seed)))


# ---------------------------------------------------------------------------------------------
# h. a table changes shape under statements asyncpg keeps prepared
#
# Defect targeted: a statement prepared before ALTER TABLE, bound on a server connection the
# proxy prepares it on anew, returns rows of the new columns where the client was told the old
# ones (a server refuses its own stale statement with 0A000, and asyncpg prepares again).

STALE_ALL = "SELECT * FROM stale_t WHERE id = $1"
STALE_TWO = "SELECT id, v FROM stale_t WHERE id = $1"
# The proxy's own server connections (a direct run has none): ended, as a restart or a
# recycled connection ends them, so the statements must be prepared on new ones.
END_PROXY_CONNECTIONS = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
    " WHERE datname = current_database() AND application_name = 'switchyard'"
)


async def stale_fetch(c, label, sql, in_tx=False):
    try:
        if in_tx:
            async with c.transaction():
                rows = await asyncio.wait_for(c.fetch(sql, 1), CALL)
        else:
            rows = await asyncio.wait_for(c.fetch(sql, 1), CALL)
        out(f"{label}: {[sorted(dict(r).items()) for r in rows]}")
    except Exception as e:  # noqa: BLE001 - the outcome is what is compared
        out(f"{label}: {type(e).__name__} {state_of(e)}")


async def stale_after_alter(n):
    conns = [await apg() for _ in range(n)]
    try:
        for i, c in enumerate(conns):
            await stale_fetch(c, f"conn {i} before, all", STALE_ALL)
            await stale_fetch(c, f"conn {i} before, two", STALE_TWO)
        for step, (alter, in_tx) in enumerate([
            ("ALTER TABLE stale_t ADD COLUMN w int DEFAULT 7", False),
            ("ALTER TABLE stale_t ALTER COLUMN v TYPE bigint", False),
            ("ALTER TABLE stale_t ADD COLUMN x text DEFAULT 'x'", True),
        ]):
            await asyncio.wait_for(conns[0].execute(alter), CALL)
            log(f"step {step}: ended {direct_scalar(END_PROXY_CONNECTIONS)} proxy connections")
            await asyncio.sleep(0.3)
            for i, c in enumerate(conns):
                await stale_fetch(c, f"step {step} conn {i}, all", STALE_ALL, in_tx)
                await stale_fetch(c, f"step {step} conn {i}, two", STALE_TWO, in_tx)
            # Once more: asyncpg prepared again where it could.
            for i, c in enumerate(conns):
                await stale_fetch(c, f"step {step} conn {i} again, all", STALE_ALL)
    finally:
        for c in conns:
            await c.close()


def scenario_stale_after_alter(n="6"):
    with deadline("asyncpg statements after ALTER TABLE", 120):
        asyncio.run(stale_after_alter(int(n)))


# ---------------------------------------------------------------------------------------------
# Django: its persistent connections (CONN_MAX_AGE=None), one per thread, in transaction mode.
#
# Defect targeted: Django runs `SELECT set_config('TimeZone', 'UTC', false)` on every new
# connection whose server reports another TimeZone name (Debian's initdb writes 'Etc/UTC'),
# which pinned each Django connection to a server connection for good: N threads needed N
# server connections, and past the pool's size the next could not even connect.


def scenario_django(threads="6", rounds="4"):
    import threading

    import django
    from django.conf import settings

    threads, rounds = int(threads), int(rounds)
    settings.configure(
        DATABASES={"default": {
            "ENGINE": "django.db.backends.postgresql", "HOST": HOST, "PORT": PORT,
            "USER": USER, "PASSWORD": PASSWORD or "", "NAME": DB, "CONN_MAX_AGE": None,
            "OPTIONS": {"connect_timeout": 10},
        }},
        TIME_ZONE="UTC", USE_TZ=True, INSTALLED_APPS=[],
    )
    django.setup()
    log(f"Django {django.get_version()}")
    from django.db import connection, transaction
    from django.utils import timezone

    # Every thread's connection is open at once (and the plain client's beside them).
    step = threading.Barrier(threads + 1, timeout=60)
    said = collections.defaultdict(list)

    def worker(i):
        lines = said[i]
        try:
            connection.ensure_connection()
            for r in range(rounds):
                step.wait()
                with transaction.atomic(), connection.cursor() as c:
                    c.execute("INSERT INTO dj_t (who, at) VALUES (%s, %s) RETURNING id IS NOT NULL",
                              [i, timezone.now()])
                    lines.append(f"insert {c.fetchone()}")
                    c.execute("SELECT current_setting('TimeZone')")
                    lines.append(f"in transaction: TimeZone {c.fetchone()[0]}")
                with connection.cursor() as c:
                    c.execute("SELECT count(*), min(at) IS NOT NULL FROM dj_t WHERE who = %s", [i])
                    lines.append(f"round {r}: {c.fetchone()}")
                    c.execute("SELECT at FROM dj_t WHERE who = %s ORDER BY id LIMIT 1", [i])
                    at = c.fetchone()[0]
                    lines.append(f"round {r}: aware {timezone.is_aware(at)} offset {at.utcoffset()}")
        except Exception as e:  # noqa: BLE001 - the outcome is what is compared
            lines.append(f"error {type(e).__name__} {state_of(e)}")
            step.abort()
        finally:
            connection.close()

    with deadline("Django threads", 120):
        ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        try:
            # Between rounds, a client that is not Django keeps the server's own TimeZone.
            with pg3() as plain:
                for r in range(rounds):
                    step.wait()
                    tz = plain.execute("SELECT current_setting('TimeZone')").fetchone()[0]
                    out(f"plain client, round {r}: TimeZone {tz}")
        except threading.BrokenBarrierError:
            out("plain client: a Django thread failed")
        for t in ts:
            t.join()
    for i in range(threads):
        for line in said[i]:
            out(f"thread {i}: {line}")


def scenario_psycopg_defaults(threads="6", rounds="4"):
    """psycopg 3 connections as the library makes them by default (not autocommit), each
    setting its session up when it connects: the SETs run inside the transaction psycopg opens
    for them, committed by the application (one thread's are rolled back instead). Every
    connection is open at once, over a small proxy pool.

    Defect targeted: a SET inside a transaction block pinned the client to a server
    connection, so such connections could not share a pool."""
    import threading

    threads, rounds = int(threads), int(rounds)
    step = threading.Barrier(threads + 1, timeout=60)
    said = collections.defaultdict(list)
    show = "SELECT current_setting('TimeZone'), current_setting('statement_timeout')"

    def worker(i):
        lines = said[i]
        try:
            with pg3(autocommit=False) as c:
                c.execute("SET TIME ZONE 'America/Lima'")
                c.execute(f"SET statement_timeout = '{i + 5}s'")
                if i == 0:
                    c.rollback()
                else:
                    c.commit()
                for r in range(rounds):
                    step.wait()
                    c.execute("INSERT INTO pd_t (who, at) VALUES (%s, now())", [i])
                    lines.append(f"round {r}: in transaction {c.execute(show).fetchone()}")
                    c.commit()
                    n = c.execute("SELECT count(*) FROM pd_t WHERE who = %s", [i]).fetchone()[0]
                    lines.append(f"round {r}: {n} rows, then {c.execute(show).fetchone()}")
                    c.commit()
        except Exception as e:  # noqa: BLE001 - the outcome is what is compared
            lines.append(f"error {type(e).__name__} {state_of(e)}")
            step.abort()

    with deadline("psycopg threads", 120):
        ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        try:
            with pg3() as plain:
                for r in range(rounds):
                    step.wait()
                    tz = plain.execute("SELECT current_setting('TimeZone')").fetchone()[0]
                    out(f"plain client, round {r}: TimeZone {tz}")
        except threading.BrokenBarrierError:
            out("plain client: a psycopg thread failed")
        for t in ts:
            t.join()
    for i in range(threads):
        for line in said[i]:
            out(f"thread {i}: {line}")


def scenario_sqlalchemy(threads="6", rounds="4"):
    """SQLAlchemy 2 (Core and ORM) on psycopg 3 and on asyncpg, as applications configure it: a
    QueuePool with pre-ping, an engine-wide isolation level, and per-connection execution
    options for read-only serializable work (`postgresql_readonly`, `postgresql_deferrable`,
    which begin `BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE`). Reads show only
    settings, so a replica may serve them; rows are counted on the primary at the end.

    Defect targeted: a serializable read-only transaction went to a replica, which refuses
    serializable transactions (0A000)."""
    import threading

    import sqlalchemy
    from sqlalchemy import Integer, create_engine, func, select, text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

    threads, rounds = int(threads), int(rounds)
    log(f"SQLAlchemy {sqlalchemy.__version__}")

    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "sa_item"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        who: Mapped[int] = mapped_column(Integer)

    url = sqlalchemy.engine.URL.create(
        "postgresql+psycopg", username=USER, password=PASSWORD, host=HOST, port=PORT, database=DB)
    engine = create_engine(url, pool_size=threads, max_overflow=0, pool_pre_ping=True,
                           pool_timeout=CALL, isolation_level="REPEATABLE READ",
                           connect_args={"connect_timeout": 10})
    show = text("SELECT current_setting('transaction_isolation') || ' '"
                " || current_setting('transaction_read_only') || ' '"
                " || current_setting('transaction_deferrable')")
    step = threading.Barrier(threads + 1, timeout=60)
    said = collections.defaultdict(list)

    def worker(i):
        lines = said[i]
        try:
            for r in range(rounds):
                step.wait()
                with Session(engine) as s, s.begin():
                    s.add(Item(who=i))
                    s.flush()
                    lines.append(f"round {r}: ORM transaction {s.execute(show).scalar_one()}, "
                                 f"rows {s.scalar(select(func.count()).where(Item.who == i))}")
                with engine.connect().execution_options(
                        isolation_level="SERIALIZABLE", postgresql_readonly=True,
                        postgresql_deferrable=True) as c:
                    lines.append(f"round {r}: read-only serializable {c.execute(show).scalar_one()}")
                    c.rollback()
                # (Not transaction_read_only: a standby's transactions are all read-only.)
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                    level = c.execute(text("SELECT current_setting('transaction_isolation')"))
                    lines.append(f"round {r}: autocommit {level.scalar_one()}")
        except Exception as e:  # noqa: BLE001 - the outcome is what is compared
            lines.append(f"error {type(e).__name__} {state_of(getattr(e, 'orig', e))}")
            step.abort()

    with deadline("SQLAlchemy on psycopg", 120):
        ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        try:
            with pg3() as plain:
                for r in range(rounds):
                    step.wait()
                    level = plain.execute("SELECT current_setting('transaction_isolation')").fetchone()[0]
                    out(f"plain client, round {r}: {level}")
        except threading.BrokenBarrierError:
            out("plain client: a SQLAlchemy thread failed")
        for t in ts:
            t.join()
    engine.dispose()
    for i in range(threads):
        for line in said[i]:
            out(f"psycopg thread {i}: {line}")

    async def on_asyncpg():
        aurl = url.set(drivername="postgresql+asyncpg")
        aengine = create_async_engine(aurl, pool_size=threads, max_overflow=0, pool_pre_ping=True,
                                      pool_timeout=CALL, connect_args={"timeout": 10})

        async def task(i):
            lines = []
            try:
                for r in range(rounds):
                    async with aengine.begin() as c:
                        await c.execute(text("INSERT INTO sa_item (who) VALUES (:w)"), {"w": 100 + i})
                        lines.append(f"round {r}: transaction {(await c.execute(show)).scalar_one()}")
                    async with aengine.connect() as c:
                        c = await c.execution_options(isolation_level="SERIALIZABLE",
                                                      postgresql_readonly=True)
                        lines.append(f"round {r}: read-only serializable "
                                     f"{(await c.execute(show)).scalar_one()}")
                        await c.rollback()
            except Exception as e:  # noqa: BLE001
                lines.append(f"error {type(e).__name__} {state_of(getattr(e, 'orig', e))}")
            return lines

        try:
            return await asyncio.wait_for(
                asyncio.gather(*(task(i) for i in range(threads))), 90)
        finally:
            await aengine.dispose()

    with deadline("SQLAlchemy on asyncpg", 120):
        for i, lines in enumerate(asyncio.run(on_asyncpg())):
            for line in lines:
                out(f"asyncpg task {i}: {line}")
    with pg3(direct=True) as d:
        rows = d.execute("SELECT who, count(*) FROM sa_item GROUP BY who ORDER BY who").fetchall()
        out("committed: " + " ".join(f"{w}:{n}" for w, n in rows))


# ---------------------------------------------------------------------------------------------
# m. cancel, as the drivers send it
#
# Defect targeted: a driver's cancel (psycopg's cancel_safe(), libpq's new cancel API that
# opens its connection with an encryption request first, and the legacy PQcancel; asyncpg's
# cancel on a timeout; pgjdbc in Scenarios.java) must stop the statement its own connection
# runs, leave that connection usable (a transaction aborted as the server aborts it), and
# never stop another client's statement, also when it comes late, after the statement ended.


def after(secs, fn):
    """Runs fn on a thread of its own after secs; returns the thread."""
    t = threading.Timer(secs, fn)
    t.daemon = True
    t.start()
    return t


def pg3_cancelled(c, label, sql, how="cancel_safe"):
    """Runs sql on c with a cancel 0.3 s later; prints how it ended."""
    with deadline(f"psycopg: {label}", 20):
        t = after(0.3, getattr(c, how))
        start = time.monotonic()
        try:
            c.execute(sql)
            out(f"psycopg {label}: not stopped")
        except psycopg.Error as e:
            out(f"psycopg {label}: {state_of(e)} within 5s={time.monotonic() - start < 5}")
        t.join()


def pg3_cancels(cycles, seed):
    c = pg3()
    for how in ("cancel_safe", "cancel"):
        pg3_cancelled(c, f"read ({how})", "SELECT pg_sleep(30)", how)
        out(f"psycopg read ({how}), then: {c.execute('SELECT 1').fetchone()[0]}")
    c.autocommit = False
    c.execute("INSERT INTO cancelled VALUES (1)")
    pg3_cancelled(c, "in a transaction", "SELECT pg_sleep(30)")
    try:
        c.execute("SELECT 1")
        out("psycopg in a transaction, then: ran")
    except psycopg.Error as e:
        out(f"psycopg in a transaction, then: {state_of(e)}")
    c.rollback()
    c.autocommit = True
    pg3_cancelled(c, "write", "INSERT INTO cancelled SELECT 2 FROM pg_sleep(30)")
    with deadline("psycopg: a cancel while idle", 20):
        c.cancel_safe()
        out(f"psycopg idle cancel, then: {c.execute('SELECT 1').fetchone()[0]}")

    # Neighbours read and write on connections of their own while one client's statements
    # are cancelled at random moments (some after they ended). Only the cancelled client may
    # see 57014, on the statement that was running or the one right after.
    rnd = random.Random(seed)
    stop = threading.Event()
    neighbour_errors = []
    neighbour_done = collections.Counter()

    def neighbour(i):
        with pg3() as n:
            while not stop.is_set():
                try:
                    if i % 2:
                        n.execute("INSERT INTO neighbours VALUES (%s)", (i,))
                    else:
                        n.execute("SELECT pg_sleep(0.02)")
                    neighbour_done[i % 2] += 1
                except psycopg.Error as e:
                    neighbour_errors.append(f"{i}: {state_of(e)} {e}")

    threads = [threading.Thread(target=neighbour, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    other = collections.Counter()
    with deadline("psycopg: cancels at random moments", 120):
        for _ in range(cycles):
            t = after(rnd.uniform(0, 0.15), c.cancel_safe)
            for sql in (f"SELECT pg_sleep({rnd.uniform(0, 0.15):.3f})", "SELECT 1"):
                try:
                    c.execute(sql)
                except psycopg.Error as e:
                    other[state_of(e)] += 1
            t.join()
        stop.set()
        for t in threads:
            t.join()
    stopped = other.pop("57014", 0)
    out(f"psycopg random cancels: some stopped {stopped > 0}, other errors {dict(other)}")
    out(f"psycopg neighbours: errors {neighbour_errors[:5]}, both kinds ran "
        f"{neighbour_done[0] > 0 and neighbour_done[1] > 0}")
    out(f"psycopg after all, then: {c.execute('SELECT 1').fetchone()[0]}")
    c.close()


async def apg_timed_out(label, coro):
    start = time.monotonic()
    try:
        await coro
        out(f"asyncpg {label}: not stopped")
    except (asyncio.TimeoutError, TimeoutError):
        out(f"asyncpg {label}: timeout within 5s={time.monotonic() - start < 5}")
    except asyncpg.PostgresError as e:
        out(f"asyncpg {label}: {state_of(e)}")


async def apg_cancels(cycles, seed):
    c = await apg()
    await apg_timed_out("read", c.fetchval("SELECT pg_sleep(30)", timeout=0.3))
    out(f"asyncpg read, then: {await c.fetchval('SELECT 1')}")
    stmt = await c.prepare("SELECT pg_sleep($1::float8)::text")
    await apg_timed_out("prepared read", stmt.fetchval(30, timeout=0.3))
    out(f"asyncpg prepared read, then: {await stmt.fetchval(0)!r}")
    try:
        async with c.transaction():
            await c.execute("INSERT INTO cancelled VALUES (3)")
            await c.fetchval("SELECT pg_sleep(30)", timeout=0.3)
        out("asyncpg in a transaction: not stopped")
    except (asyncio.TimeoutError, TimeoutError):
        out("asyncpg in a transaction: timeout")
    out(f"asyncpg after the transaction: {await c.fetchval('SELECT 1')}")
    await apg_timed_out("write", c.execute(
        "INSERT INTO cancelled SELECT 4 FROM pg_sleep(30)", timeout=0.3))
    await c.close()

    # A pool of 4 shared by 8 tasks whose statements time out at random moments (the pool
    # resets each connection on release): only timeouts, every connection usable after.
    rnd = random.Random(seed)
    pool = await asyncio.wait_for(asyncpg.create_pool(
        host=HOST, port=PORT, user=USER, password=PASSWORD, database=DB, min_size=4,
        max_size=4, timeout=10, command_timeout=CALL), 60)
    other = collections.Counter()
    ran = collections.Counter()

    async def task(i):
        for _ in range(cycles // 8):
            try:
                async with pool.acquire(timeout=CALL) as pc:
                    await pc.fetchval(f"SELECT pg_sleep({rnd.uniform(0, 0.1):.3f})",
                                      timeout=rnd.uniform(0.01, 0.1))
                    ran["ok"] += 1
            except (asyncio.TimeoutError, TimeoutError):
                ran["timeout"] += 1
            except Exception as e:  # noqa: BLE001 - every other failure is counted
                other[f"{state_of(e)}: {str(e)[:80]}"] += 1

    await asyncio.wait_for(asyncio.gather(*(task(i) for i in range(8))), 120)
    out(f"asyncpg pool: other errors {dict(other)}, both outcomes seen "
        f"{ran['ok'] > 0 and ran['timeout'] > 0}")
    values = [await pool.fetchval("SELECT 1") for _ in range(8)]
    out(f"asyncpg pool, then: {values}")
    await asyncio.wait_for(pool.close(), 30)


def scenario_cancel(cycles="40", seed="5"):
    pg3_cancels(int(cycles), int(seed))
    with deadline("asyncpg cancels", 180):
        asyncio.run(apg_cancels(int(cycles), int(seed)))
    with pg3(direct=True) as d:
        rows = d.execute("SELECT coalesce(string_agg(i::text, ',' ORDER BY i), '')"
                         " FROM cancelled").fetchone()[0]
        out(f"committed rows: [{rows}]")


# ---------------------------------------------------------------------------------------------
# n. LISTEN/NOTIFY, as applications wait for notifications
#
# Defect targeted: a listening client that sends nothing (psycopg's notifies() generator,
# asyncpg's add_listener callback: a job queue waiting for work) must get each notification
# when it is sent, not with its next statement.


def scenario_listen():
    with deadline("psycopg: an idle listener", 60):
        listener = pg3()
        listener.execute("LISTEN sy_jobs")
        with pg3() as s:
            s.execute("NOTIFY sy_jobs, 'one'")
            s.execute("SELECT pg_notify('sy_jobs', 'two')")
            s.autocommit = False
            s.execute("NOTIFY sy_jobs, 'in a transaction'")
            s.commit()
            s.execute("NOTIFY sy_jobs, 'rolled back'")
            s.rollback()
        got = [n.payload for n in listener.notifies(timeout=5, stop_after=3)]
        out(f"psycopg idle listener got {got}")
        # Later ones, sent while it waits.
        with pg3() as s:
            t = after(0.3, lambda: s.execute("NOTIFY sy_jobs, 'while waiting'"))
            start = time.monotonic()
            got = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
            out(f"psycopg waiting listener got {got} within 2s={time.monotonic() - start < 2}")
            t.join()
        listener.execute("UNLISTEN sy_jobs")
        with pg3() as s:
            s.execute("NOTIFY sy_jobs, 'after UNLISTEN'")
        got = [n.payload for n in listener.notifies(timeout=1)]
        out(f"psycopg after UNLISTEN got {got}")
        listener.close()

    async def on_asyncpg():
        listener = await apg()
        got = asyncio.Queue()
        await listener.add_listener("sy_events", lambda c, pid, ch, payload: got.put_nowait(payload))
        sender = await apg()
        await sender.execute("NOTIFY sy_events, 'a'")
        await sender.execute("SELECT pg_notify('sy_events', 'b')")
        seen = [await asyncio.wait_for(got.get(), 5) for _ in range(2)]
        out(f"asyncpg listener got {seen}")
        await listener.remove_listener("sy_events", lambda *a: None)
        out(f"asyncpg listener, then: {await listener.fetchval('SELECT 1')}")
        await sender.close()
        await listener.close()

    with deadline("asyncpg: a listener", 60):
        asyncio.run(on_asyncpg())


# ---------------------------------------------------------------------------------------------
# o. psycopg's server-side (named) cursors
#
# Defect targeted: DECLARE, FETCH FORWARD n and CLOSE of a named cursor (inside a
# transaction, and WITH HOLD in autocommit, which outlives its transaction) must all run on
# the connection that declared it, with other statements of the client's between them.


def scenario_named_cursors():
    with deadline("psycopg named cursors", 60):
        c = pg3()
        c.execute("DROP TABLE IF EXISTS nc")
        c.execute("CREATE TABLE nc (id int PRIMARY KEY)")
        c.execute("INSERT INTO nc SELECT generate_series(1, 500)")
        for hold in (False, True):
            c.autocommit = hold
            cur = c.cursor(name=f"nc_{hold}", withhold=hold)
            cur.itersize = 7
            cur.execute("SELECT id FROM nc ORDER BY id")
            n = total = 0
            for (i,) in cur:
                n += 1
                total += i
                if n % 50 == 0:
                    c.execute("SELECT count(*) FROM nc").fetchone()
            cur.close()
            if not hold:
                c.commit()
            out(f"named cursor withhold={hold}: rows {n} sum {total}")
            # scroll and fetchmany on another
            cur = c.cursor(name=f"nc2_{hold}", withhold=hold, scrollable=True)
            cur.execute("SELECT id FROM nc ORDER BY id")
            first = [r[0] for r in cur.fetchmany(3)]
            cur.scroll(100, mode="absolute")
            at = cur.fetchone()[0]
            cur.close()
            if not hold:
                c.commit()
            out(f"scrollable withhold={hold}: {first} then {at}")
        c.autocommit = True
        c.close()


def main():
    name, args = sys.argv[1], sys.argv[2:]
    log(f"psycopg {psycopg.__version__} (libpq {pq.version()}), asyncpg {asyncpg.__version__}")
    globals()[f"scenario_{name}"](*args)
    out("END")


if __name__ == "__main__":
    main()
