// node mysql2 scenarios run by tests/mysql_drivers.rs, through the proxy and directly
// against the MariaDB primary.
//
// Usage: node scenarios.js SCENARIO [ARGS...] (NODE_PATH names tests/drivers/node/node_modules).
// The server under test: SY_HOST, SY_PORT, SY_USER, SY_PASSWORD, SY_DB; the primary itself
// (to read back what was committed): SY_DIRECT_PORT, same user and database.
//
// mysql2 as applications use it: mysql2/promise, its default connection flags (FOUND_ROWS,
// IGNORE_SPACE, MULTI_RESULTS, ...), createPool with a 'connection' handler that sets
// sql_mode / time_zone, getConnection + beginTransaction/commit/rollback + release, `execute`
// (server-side prepared statements, cached per connection) next to `query` (text protocol).
//
// Prints its observable results on stdout, one fact a line, then END, and exits 0. Every call
// has a timeout (mysql2's per-query `timeout`, connectTimeout, and a race against a timer);
// the whole run has a deadline, so a hang is a failure.
'use strict';

const crypto = require('crypto');
const { spawn } = require('child_process');
const mysql = require('mysql2/promise');

const env = process.env;
const CALL_MS = 20000;
const [, , SCENARIO, ...ARGS] = process.argv;

const out = (...a) => console.log(a.join(' '));
const log = (...a) => console.error(a.join(' '));

function options(port, extra = {}) {
  return {
    host: env.SY_HOST || '127.0.0.1',
    port: port || +env.SY_PORT,
    user: env.SY_USER,
    password: env.SY_PASSWORD,
    database: env.SY_DB,
    charset: 'UTF8MB4_GENERAL_CI',
    connectTimeout: 10000,
    supportBigNumbers: true,
    bigNumberStrings: true,
    // JSON columns as the server's text: Switchyard does not offer MariaDB's extended
    // column metadata (its servers' connections are shared by clients with and without it),
    // so mysql2 cannot tell a JSON column from text through it (README, known differences).
    jsonStrings: true,
    ...extra,
  };
}

function bounded(p, what) {
  let timer;
  const t = new Promise((_, rej) => {
    timer = setTimeout(() => rej(new Error(`${what}: no answer within ${CALL_MS} ms`)), CALL_MS);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

const connect = (extra, port) => bounded(mysql.createConnection(options(port, extra)), 'connect');
const q = (c, sql, params) => bounded(c.query({ sql, timeout: CALL_MS }, params), sql);
const x = (c, sql, params) => bounded(c.execute({ sql, timeout: CALL_MS }, params), sql);
// The same with rows as arrays (columns with equal names stay apart), for printing.
const qa = (c, sql, params) => bounded(c.query({ sql, timeout: CALL_MS, rowsAsArray: true }, params), sql);
const xa = (c, sql, params) => bounded(c.execute({ sql, timeout: CALL_MS, rowsAsArray: true }, params), sql);

async function direct() {
  return connect({}, +env.SY_DIRECT_PORT);
}

async function scalarDirect(sql, params) {
  const c = await direct();
  try {
    const [rows] = await q(c, sql, params);
    return Object.values(rows[0])[0];
  } finally {
    await c.end();
  }
}

function errCode(e) {
  return e.errno || e.code || e.message;
}

function show(v) {
  if (v === null || v === undefined) return 'NULL';
  if (Buffer.isBuffer(v)) return `buf:${v.toString('hex')}`;
  if (v instanceof Date) return `date:${isNaN(v) ? 'Invalid' : v.toISOString()}`;
  if (typeof v === 'object') return `json:${JSON.stringify(v)}`;
  let s = String(v);
  if (s.length > 80) {
    const h = crypto.createHash('sha256').update(s).digest('hex').slice(0, 16);
    s = `${s.slice(0, 20)}...[${s.length} chars, sha256 ${h}]`;
  }
  return `${typeof v}:${s}`;
}

function printResult(prefix, rows, fields) {
  if (Array.isArray(rows)) {
    out(prefix, 'columns', JSON.stringify((fields || []).map((f) => [f.name, f.columnType,
      f.flags, f.decimals, f.characterSet, f.columnLength])));
    for (const r of rows) {
      out(prefix, 'row', `(${(Array.isArray(r) ? r : Object.values(r)).map(show).join(', ')})`);
    }
  } else {
    out(prefix, 'affected', rows.affectedRows, 'changed', rows.changedRows, 'insertId',
      rows.insertId, 'warnings', rows.warningStatus);
  }
}

/// Results of a multi-statement text query: an array of results and an array of field lists.
function printAll(prefix, rows, fields) {
  const multi = Array.isArray(rows) && rows.length > 0 && (Array.isArray(rows[0]) ||
    (rows[0] && rows[0].constructor && rows[0].constructor.name === 'ResultSetHeader'));
  if (!multi) {
    printResult(`${prefix} #0`, rows, fields);
    return;
  }
  rows.forEach((r, i) => printResult(`${prefix} #${i}`, r, fields[i]));
}

async function waitVisible(c, sql, want) {
  // Ten matches in a row: one proves only the replica that answered it.
  const end = Date.now() + 10000;
  let got;
  let streak = 0;
  while (Date.now() < end) {
    const [rows] = await q(c, sql);
    got = Object.values(rows[0])[0];
    streak = String(got) === String(want) ? streak + 1 : 0;
    if (streak >= 10) return true;
    if (streak === 0) await new Promise((r) => setTimeout(r, 50));
  }
  log(`${sql}: ${got}, waited for ${want}`);
  return false;
}

// ---------------------------------------------------------------------------------------------
// a. values, metadata, multi-statements, parameters

const TYPES_DDL = `CREATE TABLE vals (
  id INT PRIMARY KEY,
  ti TINYINT, si SMALLINT UNSIGNED, mi MEDIUMINT, i INT, bi BIGINT, ubi BIGINT UNSIGNED,
  fl FLOAT, db DOUBLE, de DECIMAL(20,6), de0 DECIMAL(5,0),
  d DATE, dt DATETIME(6), ts TIMESTAMP(3) NULL DEFAULT NULL, tm TIME(6), yr YEAR,
  ch CHAR(10), vc VARCHAR(100), tx MEDIUMTEXT, bl LONGBLOB, vb VARBINARY(40),
  en ENUM('a','b','c'), st SET('x','y','z'), bt BIT(8), js JSON
) DEFAULT CHARSET = utf8mb4`;

const LITERAL_ROWS = `INSERT INTO vals VALUES
 (1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (2, -128, 65535, -8388608, -2147483648, -9223372036854775808, 18446744073709551615,
  3.25, -1.7976931348623157e308, -12345678901234.123456, 99999,
  '1000-01-01', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999', '-838:59:59.000000',
  1901, 'fix', 'héllo wörld 世界 🚀', REPEAT('long text ', 300), X'00FF7F80', X'',
  'c', 'x,z', b'10100101', '{"k": [1, 2.5, "ü", null]}'),
 (3, 0, 0, 0, 0, 0, 0, 0, 0, 0.000001, 0, '2024-02-29', '2024-02-29 12:34:56.000001',
  '1970-01-01 00:00:01.000', '00:00:00', 2024, '', '', '', '', '', 'a', '', b'0', '[]')`;

function params() {
  return [7, '-9223372036854775808', 2.5, 'ünïcödé ✓ 𝄞', Buffer.from([0, 1, 0xfe, 0xff]),
    new Date(Date.UTC(2001, 1, 3, 4, 5, 6, 789)), null, true, '', 'it\'s "quoted" \\ back',
    -123.456789];
}

async function types() {
  const c = await connect();
  await q(c, 'DROP TABLE IF EXISTS vals');
  await q(c, TYPES_DDL);
  await q(c, 'DROP PROCEDURE IF EXISTS two_results');
  await q(c, "CREATE PROCEDURE two_results(IN n INT) BEGIN SELECT n AS n, n * 2 AS twice; SELECT 'b' AS b, NULL AS c, n + 0.5 AS h; END");
  let [r] = await q(c, LITERAL_ROWS);
  out('literal insert affected', r.affectedRows);
  const sql = 'INSERT INTO vals (id, i, bi, db, vc, vb, dt, tm, ti, ch, tx, de) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';
  const p = params();
  [r] = await x(c, sql, [10, p[0], p[1], p[2], p[3], p[4], p[5], '-30:05:00', p[7], p[8], p[9], p[10]]);
  out('execute insert', r.affectedRows, r.insertId);
  [r] = await q(c, sql, [11, null, null, null, null, null, null, null, null, null, null, null]);
  out('query insert', r.affectedRows);
  const big = Buffer.alloc(256 * 12000);
  for (let k = 0; k < big.length; k++) big[k] = k % 256;
  [r] = await x(c, 'INSERT INTO vals (id, bl, tx) VALUES (?, ?, ?)', [20, big, 'ü'.repeat(100000)]);
  out('big insert', r.affectedRows);

  // CLIENT_FOUND_ROWS (mysql2's default flags): matched, not changed, rows.
  [r] = await q(c, 'UPDATE vals SET vc = vc WHERE id = 2');
  out('update to the same value affected', r.affectedRows, 'changed', r.changedRows);
  [r] = await x(c, 'UPDATE vals SET ti = ti WHERE id IN (?, ?)', [2, 3]);
  out('prepared update to the same values affected', r.affectedRows);

  // The session: mysql2 asks for IGNORE_SPACE, which the server adds to its sql_mode.
  let [rows, fields] = await qa(c, 'SELECT @@session.sql_mode, @@autocommit, @@character_set_client, @@collation_connection, @@time_zone');
  printResult('session', rows, fields);
  try {
    // On the primary: the rows were just written (a replica may not have them yet).
    [rows, fields] = await q(c, '/* switchyard:primary */ SELECT count (*) AS n FROM vals');
    printResult('function name and a space', rows, fields);
  } catch (e) {
    out('function name and a space: error', errCode(e));
  }

  // Read back inside a transaction: autocommit reads may go to a replica that has not
  // replayed the inserts yet.
  await c.beginTransaction();
  [rows, fields] = await qa(c, 'SELECT * FROM vals WHERE id < 20 ORDER BY id');
  printResult('text', rows, fields);
  [rows, fields] = await xa(c, 'SELECT * FROM vals WHERE id < ? ORDER BY id', [20]);
  printResult('binary', rows, fields);
  [rows] = await x(c, 'SELECT bl, tx FROM vals WHERE id = ?', [20]);
  out('big read back', crypto.createHash('sha256').update(rows[0].bl).digest('hex'), rows[0].tx.length);
  await c.commit();

  [rows, fields] = await qa(c, "SELECT NULL, 1/3, 10/4, CAST(1 AS DECIMAL(10,3)), 2e0/3, CAST('2020-01-01' AS DATE) + INTERVAL 1 DAY, TIMEDIFF('10:00', '12:30:15'), _utf8mb4'ß' = 'ss', X'E282AC', 18446744073709551615 + 0, -0.0, b'1' + 0");
  printResult('expr', rows, fields);
  const ep = params();
  const echo = `SELECT ${ep.map(() => '?').join(', ')}`;
  [rows, fields] = await qa(c, echo, ep);
  printResult('echo text', rows, fields);
  [rows, fields] = await xa(c, echo, ep);
  printResult('echo binary', rows, fields);

  for (const s of ['INSERT INTO vals (id) VALUES (2)', 'SELECT * FROM no_such_table', 'SELEC 1']) {
    try {
      await q(c, s);
      out('no error:', s);
    } catch (e) {
      out('error', errCode(e), s);
    }
    try {
      await x(c, s);
      out('execute: no error:', s);
    } catch (e) {
      out('execute: error', errCode(e), s);
    }
  }
  [rows] = await q(c, 'SELECT 42 AS v');
  out('after errors', rows[0].v);

  // Multi-statements: refused for a connection that did not ask for them.
  try {
    [rows, fields] = await qa(c, 'SELECT 1; SELECT 2');
    printAll('single-statement client: no error', rows, fields);
  } catch (e) {
    out('single-statement client: error', errCode(e));
  }
  const m = await connect({ multipleStatements: true });
  [rows, fields] = await qa(m, "SELECT 1 AS one; SELECT 'two' AS t, NULL AS n; UPDATE vals SET i = i WHERE id = 1; SELECT 3");
  printAll('multi', rows, fields);
  [rows, fields] = await qa(m, 'CALL two_results(?)', [21]);
  printAll('call', rows, fields);
  [rows, fields] = await xa(m, 'CALL two_results(?)', [22]);
  printAll('execute call', rows, fields);
  try {
    [rows, fields] = await qa(m, 'SELECT 1; SELECT * FROM no_such_table; SELECT 3');
    printAll('multi-err', rows, fields);
  } catch (e) {
    out('multi-err error', errCode(e));
  }
  [rows] = await q(m, "SELECT 'still usable' AS s");
  out('multi after error', rows[0].s);
  await m.end();

  // Autocommit reads (a replica through the proxy), text and binary.
  if (await waitVisible(c, 'SELECT count(*) FROM vals', 6)) {
    [rows, fields] = await qa(c, 'SELECT * FROM vals WHERE id < 20 ORDER BY id');
    printResult('autocommit text', rows, fields);
    [rows, fields] = await xa(c, 'SELECT * FROM vals WHERE id < ? ORDER BY id', [20]);
    printResult('autocommit binary', rows, fields);
  } else {
    out('rows never became visible');
  }
  await c.end();
}

// ---------------------------------------------------------------------------------------------
// b. transactions, and a client that vanishes inside one

const directV = (i) => scalarDirect('SELECT v FROM acct WHERE id = ?', [i]);

async function updateWithin(i, v) {
  const c = await connect();
  const t0 = Date.now();
  let err = null;
  try {
    await q(c, 'UPDATE acct SET v = ? WHERE id = ?', [v, i]);
  } catch (e) {
    err = errCode(e);
  }
  const took = Date.now() - t0;
  await c.end();
  if (took >= 1000) log(`update of row ${i} took ${took} ms`);
  return [took < 1000, err];
}

async function tx() {
  const c = await connect();
  await q(c, 'DROP TABLE IF EXISTS acct');
  await q(c, 'CREATE TABLE acct (id INT PRIMARY KEY, v INT NOT NULL)');
  await q(c, 'INSERT INTO acct VALUES (1, 0), (2, 0), (3, 0), (4, 0)');

  await c.beginTransaction();
  await x(c, 'UPDATE acct SET v = ? WHERE id = ?', [1, 1]);
  let [rows] = await x(c, 'SELECT v FROM acct WHERE id = ?', [1]);
  out('inside the tx, the client sees', rows[0].v);
  out('inside the tx, the primary shows', await directV(1));
  await c.commit();
  out('after COMMIT, the primary shows', await directV(1));

  await c.beginTransaction();
  await q(c, 'UPDATE acct SET v = 5 WHERE id = 2');
  await x(c, 'INSERT INTO acct VALUES (?, ?)', [10, 10]);
  await c.rollback();
  out('after ROLLBACK, the primary shows', await directV(2), await scalarDirect('SELECT count(*) AS n FROM acct'));

  await c.beginTransaction();
  await q(c, 'UPDATE acct SET v = 7 WHERE id = 2');
  await q(c, 'SAVEPOINT s1');
  await q(c, 'UPDATE acct SET v = 8 WHERE id = 2');
  await q(c, 'ROLLBACK TO SAVEPOINT s1');
  await c.commit();
  out('after ROLLBACK TO SAVEPOINT and COMMIT, the primary shows', await directV(2));

  await c.beginTransaction();
  await x(c, 'UPDATE acct SET v = ? WHERE id = ?', [9, 3]);
  try {
    await x(c, 'INSERT INTO acct VALUES (?, ?)', [1, 1]);
  } catch (e) {
    out('duplicate key inside the tx:', errCode(e));
  }
  out('still inside the tx, the primary shows', await directV(3));
  await c.commit();
  out('after COMMIT, the primary shows', await directV(3));

  await q(c, 'START TRANSACTION');
  await q(c, 'UPDATE acct SET v = v + 100 WHERE id = 4');
  [rows] = await q(c, 'SELECT v FROM acct WHERE id = 4 FOR UPDATE');
  out('START TRANSACTION read', rows[0].v);
  out('inside START TRANSACTION, the primary shows', await directV(4));
  await q(c, 'COMMIT');
  out('after COMMIT, the primary shows', await directV(4));
  await c.end();

  const k = await connect();
  await k.beginTransaction();
  await q(k, 'UPDATE acct SET v = 99 WHERE id = 3');
  k.connection.stream.destroy(); // the socket drops, no COM_QUIT
  await new Promise((res) => setTimeout(res, 200));
  let [ok, err] = await updateWithin(3, 33);
  out('row locked by the dropped client updated within 1s:', ok, 'error:', err);
  out("the dropped client's update committed?", (await directV(3)) === 99);

  const child = spawn(process.execPath, [__filename, 'hold_lock', '4'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await bounded(new Promise((res) => child.stdout.once('data', (d) => res(String(d).trim()))), 'child');
  out('child says', line);
  child.kill('SIGKILL');
  await new Promise((res) => child.once('exit', res));
  await new Promise((res) => setTimeout(res, 200));
  [ok, err] = await updateWithin(4, 44);
  out('row locked by the killed process updated within 1s:', ok, 'error:', err);
  out("the killed process's update committed?", (await directV(4)) === 999);
  const d = await direct();
  [rows] = await q(d, 'SELECT id, v FROM acct ORDER BY id');
  out('final', JSON.stringify(rows.map((r) => [r.id, r.v])));
  await d.end();
}

async function holdLock() {
  const c = await connect();
  await c.beginTransaction();
  await q(c, 'UPDATE acct SET v = 999 WHERE id = ?', [+ARGS[0]]);
  out('locked', ARGS[0]);
  await new Promise((res) => setTimeout(res, 60000));
}

// ---------------------------------------------------------------------------------------------
// c. the driver's pool over a much smaller proxy pool

const SETTINGS = [['ANSI_QUOTES,STRICT_TRANS_TABLES', '+03:00'], ['NO_ZERO_DATE', '-07:30']];

function makePool(k, size) {
  const [mode, zone] = SETTINGS[k];
  const pool = mysql.createPool(options(0, { connectionLimit: size, waitForConnections: true, queueLimit: 0, maxIdle: size }));
  // The usual way to give every pooled connection its session settings.
  pool.pool.on('connection', (conn) => {
    conn.query(`SET SESSION sql_mode = '${mode}', time_zone = '${zone}'`);
  });
  return pool;
}

// With IGNORE_SPACE (mysql2's default flags) the server adds it to whatever sql_mode is set.
const expectMode = (mode, got) => got === mode || got === `${mode},IGNORE_SPACE` || got === `IGNORE_SPACE,${mode}`;

function rng(seed) {
  let s = seed + 1;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
}

async function poolScenario() {
  const [threads, perThread, size] = ARGS.map(Number);
  const c = await connect();
  await q(c, 'DROP TABLE IF EXISTS counter');
  await q(c, 'DROP TABLE IF EXISTS ledger');
  await q(c, 'CREATE TABLE counter (id INT PRIMARY KEY, n INT NOT NULL)');
  await q(c, 'CREATE TABLE ledger (id INT AUTO_INCREMENT PRIMARY KEY, who INT, at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))');
  await q(c, 'INSERT INTO counter VALUES (1, 0)');
  await c.end();
  const pools = [makePool(0, size), makePool(1, size)];
  const stats = { committed: 0, 'rolled back': 0, 'wrong settings': 0, errors: 0 };
  const errors = [];
  const worker = async (t) => {
    const [mode, zone] = SETTINGS[t % 2];
    const rnd = rng(t);
    for (let k = 0; k < perThread; k++) {
      try {
        const conn = await bounded(pools[t % 2].getConnection(), 'getConnection');
        try {
          let [rows] = await q(conn, 'SELECT @@sql_mode AS m, @@time_zone AS z');
          const got = rows[0];
          await conn.beginTransaction();
          await x(conn, 'UPDATE counter SET n = n + 1 WHERE id = ?', [1]);
          await q(conn, 'INSERT INTO ledger (who) VALUES (?)', [t]);
          [rows] = await x(conn, 'SELECT @@sql_mode AS m, @@time_zone AS z, @@in_transaction AS it');
          const inside = rows[0];
          const bad = !expectMode(mode, got.m) || got.z !== zone || !expectMode(mode, inside.m) ||
            inside.z !== zone || Number(inside.it) !== 1;
          if (rnd() < 0.2) {
            await conn.rollback();
            stats['rolled back']++;
          } else {
            await conn.commit();
            stats.committed++;
          }
          if (bad) {
            stats['wrong settings']++;
            errors.push(`worker ${t}: ${JSON.stringify(got)} then ${JSON.stringify(inside)}`);
          }
        } finally {
          conn.release();
        }
      } catch (e) {
        stats.errors++;
        errors.push(`worker ${t} round ${k}: ${e.message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: threads }, (_, t) => worker(t)));
  errors.slice(0, 10).forEach((e) => log(e));
  out('committed:', stats.committed);
  out('rolled back:', stats['rolled back']);
  out('wrong settings:', stats['wrong settings']);
  out('errors:', stats.errors);
  out('primary counter:', await scalarDirect('SELECT n FROM counter'));
  out('primary ledger rows:', await scalarDirect('SELECT count(*) FROM ledger'));
  await Promise.all(pools.map((p) => p.end()));
}

// ---------------------------------------------------------------------------------------------
// g. what a client asks about its own last statement, with other clients around

async function ownResults() {
  const [threads, rounds] = ARGS.map(Number);
  const c = await connect();
  await q(c, 'DROP TABLE IF EXISTS own');
  await q(c, 'CREATE TABLE own (id INT AUTO_INCREMENT PRIMARY KEY, who INT)');
  await q(c, 'INSERT INTO own (who) VALUES (0), (0), (0)');
  await c.end();
  const counts = {};
  const errors = [];
  const note = (what, good, detail) => {
    const key = `${what}: ${good ? 'as directly' : 'NOT the own statement'}`;
    counts[key] = (counts[key] || 0) + 1;
    if (!good && errors.length < 12) errors.push(`${what}: ${detail}`);
  };
  const worker = async (t) => {
    let conn;
    try {
      conn = await connect();
      for (let r = 0; r < rounds; r++) {
        const [ins] = await x(conn, 'INSERT INTO own (who) VALUES (?)', [t]);
        let [rows] = await q(conn, 'SELECT LAST_INSERT_ID() AS v');
        note('LAST_INSERT_ID() after an INSERT', Number(rows[0].v) === ins.insertId, `${rows[0].v} vs ${ins.insertId}`);
        await q(conn, 'UPDATE own SET who = who WHERE id <= 3');
        [rows] = await q(conn, 'SELECT ROW_COUNT() AS v');
        note('ROW_COUNT() after an UPDATE of 3 rows', Number(rows[0].v) === 3, rows[0].v);
        await q(conn, 'SELECT SQL_CALC_FOUND_ROWS id FROM own WHERE id <= 3 LIMIT 1');
        [rows] = await q(conn, 'SELECT FOUND_ROWS() AS v');
        note('FOUND_ROWS() after SQL_CALC_FOUND_ROWS', Number(rows[0].v) === 3, rows[0].v);
        await q(conn, "SELECT 1 / 0, CAST('12abc' AS INTEGER)");
        [rows] = await q(conn, 'SHOW WARNINGS');
        const w = rows.map((r) => r.Code);
        note('SHOW WARNINGS after a statement with 2 warnings', JSON.stringify(w) === '[1365,1292]', JSON.stringify(w));
        await x(conn, 'SELECT 1 / ?', [0]);
        [rows] = await q(conn, 'SELECT @@warning_count AS v');
        note('@@warning_count after a statement with 1 warning', Number(rows[0].v) === 1, rows[0].v);
      }
    } catch (e) {
      counts.errors = (counts.errors || 0) + 1;
      errors.push(`worker ${t}: ${e.message}`);
    } finally {
      if (conn) await conn.end();
    }
  };
  await Promise.all(Array.from({ length: threads }, (_, t) => worker(t)));
  errors.forEach((e) => log(e));
  for (const k of Object.keys(counts).sort()) out(`${k}:`, counts[k]);
}

// ---------------------------------------------------------------------------------------------
// d. prepared statements across pooled connections

async function prepared() {
  const [threads, rounds] = ARGS.map(Number);
  const c = await connect();
  await q(c, 'DROP TABLE IF EXISTS ps');
  await q(c, 'CREATE TABLE ps (id INT PRIMARY KEY, s VARCHAR(40), d DECIMAL(10,2))');
  await c.end();
  const pool = makePool(0, 3);
  const stats = { ok: 0, mismatch: 0, errors: 0 };
  const errors = [];
  const worker = async (t) => {
    for (let r = 0; r < rounds; r++) {
      try {
        const conn = await bounded(pool.getConnection(), 'getConnection');
        try {
          const i = t * 1000 + r;
          const sel = 'SELECT ? + 0 AS a, CONCAT(?, \'-x\') AS b, ? IS NULL AS c';
          const [a] = await x(conn, sel, [i, `s${i}`, null]);
          // The same text with other parameter types.
          const [b] = await x(conn, sel, ['1.5', i, 'n']);
          await conn.beginTransaction();
          await x(conn, 'INSERT INTO ps VALUES (?, ?, ?)', [i, `v${i}`, i / 4]);
          await conn.commit();
          await conn.beginTransaction();
          const [cc] = await x(conn, 'SELECT s, d FROM ps WHERE id = ?', [i]);
          await conn.commit();
          if (r % 5 === 4) conn.unprepare(sel); // COM_STMT_CLOSE; prepared again next time
          const good = Number(a[0].a) === i && a[0].b === `s${i}-x` && Number(a[0].c) === 1 &&
            Number(b[0].a) === 1.5 && b[0].b === `${i}-x` && Number(b[0].c) === 0 &&
            cc.length === 1 && cc[0].s === `v${i}` && Number(cc[0].d) === Math.round(i * 25) / 100;
          if (good) stats.ok++;
          else {
            stats.mismatch++;
            errors.push(`${t}/${r}: ${JSON.stringify([a, b, cc])}`);
          }
        } finally {
          conn.release();
        }
      } catch (e) {
        stats.errors++;
        errors.push(`${t}/${r}: ${e.message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: threads }, (_, t) => worker(t)));
  errors.slice(0, 10).forEach((e) => log(e));
  out('ok:', stats.ok);
  out('mismatch:', stats.mismatch);
  out('errors:', stats.errors);
  out('primary rows:', await scalarDirect('SELECT count(*) FROM ps'));
  await pool.end();

  // A statement prepared in one transaction, executed in later ones, closed, prepared again.
  const conn = await connect();
  await conn.beginTransaction();
  await x(conn, 'UPDATE ps SET s = ? WHERE id = ?', ['first', 0]);
  await conn.commit();
  for (let k = 0; k < 5; k++) {
    await conn.beginTransaction();
    await x(conn, 'UPDATE ps SET s = ? WHERE id = ?', [`later${k}`, k]);
    await conn.commit();
  }
  // An autocommit read: on the primary, as a replica may not have the last commit yet.
  const sel = '/* switchyard:primary */ SELECT s FROM ps WHERE id <= ? ORDER BY id';
  let [rows] = await x(conn, sel, [4]);
  out('later transactions', JSON.stringify(rows.map((r) => r.s)));
  conn.unprepare(sel);
  [rows] = await x(conn, sel, [0]);
  out('prepared again', JSON.stringify(rows.map((r) => r.s)));
  // Statement objects kept by the application: prepare once, execute in several transactions.
  const stmt = await bounded(conn.prepare('SELECT count(*) AS n FROM ps WHERE id >= ?'), 'prepare');
  for (let k = 0; k < 3; k++) {
    await conn.beginTransaction();
    const [rs] = await bounded(stmt.execute([k]), 'stmt.execute');
    out('kept statement, transaction', k, rs[0].n);
    await conn.commit();
  }
  await stmt.close();
  await conn.end();
  const d = await direct();
  [rows] = await q(d, 'SELECT s FROM ps WHERE id <= 4 ORDER BY s');
  out('primary later rows', JSON.stringify(rows.map((r) => r.s)));
  await d.end();
}

// ---------------------------------------------------------------------------------------------
// e. a session that leaves state behind

async function dirty() {
  const [how, txArg] = ARGS;
  const c = await connect();
  await q(c, "SET sql_mode = 'ANSI', time_zone = '+05:45', max_statement_time = 7");
  await q(c, 'SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE');
  await q(c, "SET @secret = 'left behind', @leak_n = 42");
  await q(c, 'CREATE TEMPORARY TABLE tmp_leak (a INT)');
  await q(c, "SELECT GET_LOCK('sy_leak_lock', 0)");
  await q(c, "PREPARE leak_stmt FROM 'SELECT 1'");
  await q(c, 'SET NAMES latin1');
  await q(c, "SET wait_timeout = 77, sql_select_limit = 3, lc_time_names = 'de_DE'");
  await x(c, 'SELECT ? + 1 AS v', [1]); // a protocol statement, never closed
  if (txArg === 'tx') {
    await c.beginTransaction();
    await q(c, 'UPDATE leak_t SET v = v + 1 WHERE id = 1');
  }
  const [rows] = await q(c, 'SELECT @@in_transaction AS v');
  out('dirty:', txArg, rows[0].v);
  if (how === 'drop') c.connection.stream.destroy();
  else await c.end();
}

// ---------------------------------------------------------------------------------------------
// f. routing

async function routing() {
  const n = Number(ARGS[0]);
  const c = await connect();
  for (let k = 0; k < n; k++) {
    const [rows] = await q(c, 'SELECT @@server_id AS s');
    out('autocommit text read on', rows[0].s);
  }
  for (let k = 0; k < n; k++) {
    const [rows] = await x(c, 'SELECT @@server_id AS s, ? + 0 AS one', [1]);
    out('autocommit prepared read on', rows[0].s);
  }
  await q(c, 'DROP TABLE IF EXISTS r');
  await q(c, 'CREATE TABLE r (id INT AUTO_INCREMENT PRIMARY KEY, s INT)');
  for (let k = 0; k < 3; k++) {
    await x(c, 'INSERT INTO r (s) SELECT @@server_id');
    await c.beginTransaction();
    let [rows] = await x(c, 'SELECT @@server_id AS s');
    out('read inside a transaction on', rows[0].s);
    await q(c, 'INSERT INTO r (s) SELECT @@server_id');
    await c.commit();
    [rows] = await q(c, 'SELECT @@server_id AS s FROM r LIMIT 1 FOR UPDATE');
    out('locking read on', rows[0].s);
  }
  const d = await direct();
  const [rows] = await q(d, 'SELECT DISTINCT s FROM r ORDER BY s');
  out('writes executed on', JSON.stringify(rows.map((r) => r.s)));
  await d.end();
  await q(c, 'SET autocommit = 0');
  for (let k = 0; k < 3; k++) {
    const [rs] = await q(c, 'SELECT @@server_id AS s');
    out('autocommit-off read on', rs[0].s);
    await c.commit();
  }
  await c.end();
}

const scenarios = {
  types, tx, hold_lock: holdLock, pool: poolScenario, own_results: ownResults, prepared, dirty, routing,
};

async function main() {
  const fn = scenarios[SCENARIO];
  if (!fn) throw new Error(`unknown scenario ${SCENARIO}`);
  const deadline = setTimeout(() => {
    log(`scenario ${SCENARIO}: deadline passed`);
    process.exit(3);
  }, 170000);
  await fn();
  clearTimeout(deadline);
  out('END');
}

main().then(() => process.exit(0), (e) => {
  log(e.stack || e);
  process.exit(1);
});
