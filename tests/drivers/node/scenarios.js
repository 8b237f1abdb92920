// node-postgres, postgres.js, Sequelize and knex scenarios run by tests/pg_drivers.rs.
//
// Usage: node scenarios.js SCENARIO [ARGS...]; the server under test comes from SY_HOST,
// SY_PORT, SY_USER, SY_PASSWORD, SY_DB, and the PostgreSQL primary (to read back what was
// really committed) from SY_DIRECT_PORT, SY_DIRECT_USER, SY_DIRECT_DB. Prints its observable
// results on stdout, one fact a line, then END, and exits 0. Every query has a client-side
// timeout (query_timeout) and the whole run a deadline, so a hang is a failure.
'use strict';

const crypto = require('crypto');
const { Client } = require('pg');

const env = process.env;
const CALL_MS = 20000;

function config(direct) {
  const base = {
    host: env.SY_HOST || '127.0.0.1',
    connectionTimeoutMillis: 10000,
    query_timeout: CALL_MS,
  };
  if (direct) {
    return { ...base, port: +env.SY_DIRECT_PORT, user: env.SY_DIRECT_USER, database: env.SY_DIRECT_DB };
  }
  return {
    ...base,
    port: +env.SY_PORT,
    user: env.SY_USER,
    password: env.SY_PASSWORD || undefined,
    database: env.SY_DB,
  };
}

async function connect(direct) {
  const c = new Client(config(direct));
  c.on('error', (e) => console.error('client error event:', e.message));
  await c.connect();
  return c;
}

async function closeBounded(c) {
  await Promise.race([
    c.end(),
    new Promise((_, rej) => setTimeout(() => rej(new Error('end() timed out')), 10000)),
  ]);
}

const out = (s) => console.log(s);
const fresh = (prefix) => `${prefix}_${crypto.randomBytes(6).toString('hex')}`;

// a. Named statements inside explicit transactions.
//
// Defect targeted: the proxy answers a bare BEGIN itself and sends it in front of the
// transaction's first statement; a NAMED Parse of a statement text never seen before took a
// backend connection without the deferred BEGIN, so the UPDATE autocommitted and a later
// ROLLBACK undid nothing.
async function namedTx() {
  const direct = await connect(true);
  const v = async (id) => (await direct.query('SELECT v FROM t WHERE id = $1', [id])).rows[0].v;
  const c = await connect(false);
  const upd = 'UPDATE t SET v = v + 1 WHERE id = $1';

  out(`start id1: ${await v(1)}`);
  await c.query('BEGIN');
  let r = await c.query({ name: fresh('upd'), text: upd, values: [1] });
  out(`named update in tx: rowCount=${r.rowCount}`);
  out(`direct during tx: ${await v(1)}`);
  await c.query('ROLLBACK');
  out(`direct after ROLLBACK: ${await v(1)}`);

  await c.query('BEGIN');
  r = await c.query({ name: fresh('upd'), text: upd, values: [1] });
  out(`direct during second tx: ${await v(1)}`);
  await c.query('COMMIT');
  out(`direct after COMMIT: ${await v(1)}`);

  // A named SELECT inside a transaction sees the transaction's own uncommitted write.
  await c.query('BEGIN');
  await c.query({ name: fresh('upd'), text: upd, values: [2] });
  r = await c.query({ name: fresh('sel'), text: 'SELECT v FROM t WHERE id = $1', values: [2] });
  out(`named select sees own write: ${r.rows[0].v}`);
  await c.query('ROLLBACK');
  out(`direct id2 after ROLLBACK: ${await v(2)}`);

  // The unnamed write first, then a named read of new text.
  await c.query('BEGIN');
  await c.query('UPDATE t SET v = v + 5 WHERE id = 3');
  r = await c.query({ name: fresh('sel'), text: 'SELECT v, $1::int AS k FROM t WHERE id = 3', values: [7] });
  out(`named select after unnamed write: ${r.rows[0].v}`);
  await c.query('ROLLBACK');
  out(`direct id3 after ROLLBACK: ${await v(3)}`);

  // Named statements reused across transactions (already prepared somewhere).
  const name = fresh('upd');
  for (const end of ['ROLLBACK', 'COMMIT', 'ROLLBACK']) {
    await c.query('BEGIN');
    await c.query({ name, text: upd, values: [4] });
    await c.query(end);
    out(`reused named update then ${end}: direct id4 ${await v(4)}`);
  }

  // Several named statements of new text queued at once (pipelined by the driver) in a tx.
  await c.query('BEGIN');
  await Promise.all([
    c.query({ name: fresh('upd'), text: upd, values: [5] }),
    c.query({ name: fresh('upd'), text: 'UPDATE t SET v = v + 2 WHERE id = $1', values: [5] }),
    c.query({ name: fresh('sel'), text: 'SELECT v FROM t WHERE id = $1 AND $2::int > 0', values: [5, 1] }),
  ]);
  r = await c.query('SELECT v FROM t WHERE id = 5');
  out(`queued named statements in tx see: ${r.rows[0].v}`);
  await c.query('ROLLBACK');
  out(`direct id5 after ROLLBACK: ${await v(5)}`);

  // A failing named statement inside a transaction aborts it; ROLLBACK works.
  await c.query('BEGIN');
  await c.query({ name: fresh('upd'), text: upd, values: [6] });
  try {
    await c.query({ name: fresh('bad'), text: 'SELECT 1 / ($1::int - 1)', values: [1] });
    out('failing named statement: no error');
  } catch (e) {
    out(`failing named statement: ${e.code}`);
  }
  await c.query('ROLLBACK');
  out(`direct id6 after failed tx: ${await v(6)}`);

  await closeBounded(c);
  await closeBounded(direct);
}

// c. A node-postgres session that leaves state behind (the harness runs the detector next).
async function dirty(kind) {
  const c = await connect(false);
  if (kind === 'named_and_set') {
    await c.query({ name: 'dirty_named', text: 'SELECT $1::int + 1 AS x', values: [1] });
    await c.query("SET work_mem = '6MB'");
    await c.query('LISTEN node_chan');
  } else if (kind === 'named_in_tx') {
    await c.query('BEGIN');
    await c.query({ name: 'dirty_named_tx', text: 'SELECT $1::int + 2 AS x', values: [1] });
    await c.query('COMMIT');
  } else {
    throw new Error(`unknown kind ${kind}`);
  }
  out(`dirty ${kind}: ok`);
  await closeBounded(c);
}

// d. postgres.js (the `postgres` package), used as its documentation shows: prepared
// statements on (its default), queries pipelined on one connection, sql.begin with
// savepoints, cursors, forEach, COPY streams, simple multi-statement strings, describe,
// LISTEN/NOTIFY on its own listener connection, a reserved connection. Its habits differ
// from node-postgres: a query with parameters is first sent as Parse + Describe + Flush (no
// Sync), and the Bind + Execute + Sync follow once the parameter types are back; a query
// without parameters goes out as Parse + Describe + Bind + Execute + Sync in one write, and
// several of them share a write when issued together.
function pgjs(direct, extra) {
  const postgres = require('postgres');
  const c = config(direct);
  return postgres({
    host: c.host,
    port: c.port,
    user: c.user,
    password: c.password,
    database: c.database,
    connect_timeout: 10,
    idle_timeout: 0,
    max_lifetime: 0,
    onnotice: () => {},
    ...extra,
  });
}

// Every await of a postgres.js query is bounded, so a hang is a failure with a name.
function bounded(what, p, ms = CALL_MS) {
  let timer;
  return Promise.race([
    p,
    new Promise((_, rej) => {
      timer = setTimeout(() => rej(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

const show = (r) => JSON.stringify({ command: r.command, count: r.count, rows: Array.from(r) });
const errCode = (e) => (e && e.code ? e.code : `no code: ${e && e.message}`);

async function pgjsHabits() {
  const sql = pgjs(false, { max: 1 });
  const direct = pgjs(true, { max: 1 });
  const committed = async (label) =>
    out(`${label}: ${show(await bounded(label, direct`SELECT id, v FROM t ORDER BY id`))}`);

  // Typed parameters, the same statement three times (prepared once, then reused).
  for (let i = 0; i < 3; i++) {
    const r = await bounded('typed', sql`SELECT ${i}::int + 1 AS n, ${'a' + i}::text AS s,
      ${'{1,2,' + i + '}'}::int[] AS arr, ${sql.json({ k: i })}::jsonb AS j`);
    out(`typed ${i}: ${show(r)}`);
  }

  // A statement prepared before its table changed shape: the server refuses the cached plan
  // (0A000, routine RevalidateCachedQuery) and postgres.js prepares it again under a new name.
  await bounded('alter setup', sql.unsafe('DROP TABLE IF EXISTS pgjs_alter; CREATE TABLE pgjs_alter (a int); INSERT INTO pgjs_alter VALUES (1)').simple());
  out(`before alter: ${show(await bounded('before alter', sql`SELECT * FROM pgjs_alter`))}`);
  out(`before alter, bound: ${show(await bounded('before alter', sql`SELECT * FROM pgjs_alter WHERE a = ${1}`))}`);
  await bounded('alter', sql`ALTER TABLE pgjs_alter ADD COLUMN b int DEFAULT 5`);
  for (let i = 0; i < 2; i++) {
    out(`after alter ${i}: ${await bounded('after alter', sql`SELECT * FROM pgjs_alter`.then(show, errCode))}`);
    out(`after alter, bound ${i}: ${await bounded('after alter', sql`SELECT * FROM pgjs_alter WHERE a = ${1}`.then(show, errCode))}`);
  }

  // Queries issued together share the connection's pipeline: reads, a write, reads after it.
  const piped = await bounded('pipeline', Promise.all([
    sql`SELECT v FROM t WHERE id = 1`,
    sql`UPDATE t SET v = v + 1 WHERE id = 1 RETURNING v`,
    sql`SELECT v FROM t WHERE id = 1`,
    sql`INSERT INTO t VALUES (100, 7) RETURNING id, v`,
    sql`SELECT count(*)::int AS n FROM t`,
    sql`SELECT v FROM t WHERE id = ${1}`,
  ]));
  piped.forEach((r, i) => out(`pipeline ${i}: ${show(r)}`));
  await committed('after pipeline');

  // A failing query among pipelined ones fails alone.
  const settled = await bounded('pipeline errors', Promise.allSettled([
    sql`SELECT 1 AS one`,
    sql`SELECT 10 / ${0}::int AS boom`,
    sql`INSERT INTO t VALUES (1, 0)`,
    sql`SELECT 2 AS two`,
  ]));
  settled.forEach((s, i) =>
    out(`pipeline errors ${i}: ${s.status === 'fulfilled' ? show(s.value) : errCode(s.reason)}`));

  // sql.begin: statements, a savepoint rolled back by a thrown error, a local setting.
  const inTx = await bounded('begin', sql.begin(async (tx) => {
    const a = await tx`UPDATE t SET v = v + 10 WHERE id = 2 RETURNING v`;
    await tx`SELECT set_config('application_name', 'pgjs_local', true)`;
    const undone = await tx.savepoint(async (sp) => {
      await sp`UPDATE t SET v = 99 WHERE id = 2`;
      throw new Error('undo the savepoint');
    }).catch((e) => e.message);
    const b = await tx`SELECT v, current_setting('application_name') AS app FROM t WHERE id = 2`;
    return [show(a), undone, show(b)];
  }));
  out(`begin: ${JSON.stringify(inTx)}`);
  const app = await bounded('app after tx', sql`SELECT current_setting('application_name') AS app`);
  out(`app after tx: ${show(app)}`);
  await committed('after begin');

  // A transaction whose statements are pipelined, ended by a unique violation: all undone.
  const failed = await bounded('begin failing', sql.begin((tx) => [
    tx`UPDATE t SET v = v + 1000 WHERE id = 3`,
    tx`INSERT INTO t VALUES (101, 1)`,
    tx`INSERT INTO t VALUES (2, 2)`,
  ]).then(() => 'committed', (e) => errCode(e)));
  out(`begin failing: ${failed}`);
  await committed('after failed begin');

  // Repeatable read, and a savepoint that commits.
  const rr = await bounded('begin rr', sql.begin('isolation level repeatable read', async (tx) => {
    const lvl = await tx`SELECT current_setting('transaction_isolation') AS lvl`;
    await tx.savepoint((sp) => sp`UPDATE t SET v = v + 5 WHERE id = 4`);
    return show(lvl);
  }));
  out(`begin rr: ${rr}`);

  // A cursor outside a transaction (Execute with a row limit, then more Executes) and one inside.
  const batches = [];
  await bounded('cursor', sql`SELECT g FROM generate_series(1, 25) g`.cursor(10, (rows) => {
    batches.push(rows.map((r) => r.g));
  }));
  out(`cursor: ${JSON.stringify(batches)}`);
  const inner = await bounded('cursor in tx', sql.begin(async (tx) => {
    const seen = [];
    for await (const rows of tx`SELECT id FROM t WHERE id <= ${5} ORDER BY id`.cursor(2)) {
      seen.push(rows.map((r) => r.id));
    }
    await tx`UPDATE t SET v = v + 1 WHERE id = 5`;
    return seen;
  }));
  out(`cursor in tx: ${JSON.stringify(inner)}`);

  // forEach streams rows one by one.
  let sum = 0;
  let n = 0;
  await bounded('forEach', sql`SELECT g FROM generate_series(1, 5000) g`.forEach((r) => {
    sum += r.g;
    n += 1;
  }));
  out(`forEach: ${n} rows, sum ${sum}`);

  // COPY in through a writable stream, out through a readable one.
  const { pipeline } = require('stream/promises');
  const { Readable } = require('stream');
  const lines = [];
  for (let i = 200; i < 1200; i++) lines.push(`${i}\t${i % 7}\n`);
  const w = await bounded('copy in', sql`COPY t (id, v) FROM STDIN`.writable());
  await bounded('copy in data', pipeline(Readable.from(lines), w));
  const rd = await bounded('copy out', sql`COPY (SELECT id, v FROM t WHERE id >= 200 ORDER BY id) TO STDOUT`.readable());
  let copied = '';
  for await (const chunk of rd) copied += chunk.toString();
  out(`copy out: ${copied.length} bytes, ${copied.split('\n').length - 1} lines, ` +
    `hash ${crypto.createHash('sha256').update(copied).digest('hex').slice(0, 16)}`);

  // A simple multi-statement string, describe, values, a large result.
  const multi = await bounded('simple', sql.unsafe('SELECT 1 AS a; UPDATE t SET v = v WHERE id = 1; SELECT 2 AS b').simple());
  out(`simple: ${JSON.stringify(multi.map((r) => show(r)))}`);
  const d = await bounded('describe', sql`SELECT id, v FROM t WHERE id = ${1} AND v > ${0}`.describe());
  out(`describe: ${JSON.stringify({ types: d.types, columns: d.columns.map((c) => [c.name, c.type]) })}`);
  const vals = await bounded('values', sql`SELECT id, v FROM t WHERE id < ${4} ORDER BY id`.values());
  out(`values: ${JSON.stringify(Array.from(vals))}`);

  // Session state on the one connection: a setting, a search_path, a temp table.
  await bounded('set', sql`SELECT set_config('application_name', 'pgjs_session', false)`);
  await bounded('set path', sql.unsafe('CREATE SCHEMA IF NOT EXISTS pgjs_s; SET search_path TO pgjs_s, public').simple());
  await bounded('temp', sql`CREATE TEMP TABLE pgjs_tmp AS SELECT 42 AS x`);
  const state = await bounded('state', sql`SELECT current_setting('application_name') AS app,
    current_setting('search_path') AS path, (SELECT x FROM pgjs_tmp) AS x`);
  out(`session state: ${show(state)}`);

  // LISTEN on the listener connection, NOTIFY from the pool.
  const got = [];
  const listening = await bounded('listen', sql.listen('pgjs_chan', (p) => got.push(p)));
  await bounded('notify', sql.notify('pgjs_chan', 'hello'));
  await bounded('notify 2', sql`SELECT pg_notify('pgjs_chan', ${'again'})`);
  for (let i = 0; i < 100 && got.length < 2; i++) await new Promise((r) => setTimeout(r, 50));
  out(`notifications: ${JSON.stringify(got)}`);
  await bounded('unlisten', listening.unlisten());

  // A reserved connection of a second pool, with a session setting of its own.
  const pool = pgjs(false, { max: 3 });
  const r = await bounded('reserve', pool.reserve());
  await bounded('reserved set', r`SELECT set_config('work_mem', '3MB', false)`);
  const rw = await bounded('reserved get', r`SELECT current_setting('work_mem') AS wm`);
  out(`reserved: ${show(rw)}`);
  r.release();
  const concurrent = await bounded('pool', Promise.all(
    Array.from({ length: 30 }, (_, i) => pool`SELECT ${i}::int * 2 AS x, v FROM t WHERE id = ${1 + (i % 5)}`),
  ));
  out(`pool: ${JSON.stringify(concurrent.map((c) => Array.from(c)))}`);

  await committed('final');
  await bounded('end', Promise.all([sql.end({ timeout: 5 }), direct.end({ timeout: 5 }), pool.end({ timeout: 5 })]));
}

// e. A pool of postgres.js connections shared by many concurrent workers doing random
// transfers (committed or rolled back), inserts (some refused as duplicates), savepoints and
// reads; every worker keeps a ledger of what it was told, and the database must end as
// exactly that. The operations are drawn from a seed, so what is committed does not depend
// on timing: the output is the same through the proxy and directly.
async function pgjsLedger(workersArg, opsArg, maxArg, seedArg) {
  const workers = +(workersArg || 24);
  const ops = +(opsArg || 25);
  const sql = pgjs(false, { max: +(maxArg || 6) });
  const direct = pgjs(true, { max: 1 });
  const ACCOUNTS = 10;
  const balances = Array(ACCOUNTS + 1).fill(1000);
  const rows = new Set();
  const tally = { transfer: 0, rolled_back: 0, insert: 0, duplicate: 0, savepoint: 0, read: 0, piped: 0 };
  let sumViolations = 0;
  const unexpected = [];

  const rng = (seed) => () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };

  async function worker(w) {
    const rand = rng(+(seedArg || 7) * 1000 + w);
    for (let seq = 0; seq < ops; seq++) {
      const r = rand();
      const amount = 1 + Math.floor(rand() * 50);
      let a = 1 + Math.floor(rand() * ACCOUNTS);
      let b = 1 + Math.floor(rand() * ACCOUNTS);
      if (a === b) b = (b % ACCOUNTS) + 1;
      const undo = rand() < 0.25;
      try {
        if (r < 0.35) {
          // Lock in id order, so that transfers never deadlock.
          const [lo, hi] = a < b ? [a, b] : [b, a];
          const delta = a < b ? -amount : amount;
          const res = await bounded('transfer', sql.begin(async (tx) => {
            await tx`UPDATE acct SET bal = bal + ${delta} WHERE id = ${lo}`;
            await tx`UPDATE acct SET bal = bal - ${delta} WHERE id = ${hi}`;
            await tx`INSERT INTO ledger VALUES (${w}, ${seq}, ${amount})`;
            if (undo) throw new Error('rollback');
            return 'ok';
          }).catch((e) => (e.message === 'rollback' ? 'rolled back' : Promise.reject(e))));
          if (res === 'ok') {
            balances[lo] += delta;
            balances[hi] -= delta;
            rows.add(`${w}/${seq}/${amount}`);
            tally.transfer++;
          } else {
            tally.rolled_back++;
          }
        } else if (r < 0.55) {
          if (undo && seq > 0) {
            // A duplicate key: refused, nothing changes.
            const code = await bounded('duplicate', sql`INSERT INTO ledger VALUES (${w}, ${-1}, 0), (${w}, ${-1}, 0)`.then(() => 'inserted', errCode));
            if (code !== '23505') unexpected.push(`duplicate gave ${code}`);
            tally.duplicate++;
          } else {
            await bounded('insert', sql`INSERT INTO ledger VALUES (${w}, ${seq}, ${amount})`);
            rows.add(`${w}/${seq}/${amount}`);
            tally.insert++;
          }
        } else if (r < 0.7) {
          await bounded('savepoint', sql.begin(async (tx) => {
            await tx`INSERT INTO ledger VALUES (${w}, ${seq}, ${amount})`;
            await tx.savepoint(async (sp) => {
              await sp`INSERT INTO ledger VALUES (${w}, ${seq + 100000}, ${amount})`;
              await sp`UPDATE acct SET bal = bal + 1 WHERE id = ${a}`;
              throw new Error('undo');
            }).catch((e) => (e.message === 'undo' ? null : Promise.reject(e)));
          }));
          rows.add(`${w}/${seq}/${amount}`);
          tally.savepoint++;
        } else if (r < 0.9) {
          const [s] = await bounded('read', sql`SELECT sum(bal)::int AS s FROM acct`);
          if (s.s !== ACCOUNTS * 1000) sumViolations++;
          tally.read++;
        } else {
          // Issued together: a write and reads, sharing a connection's pipeline.
          const [ins, s, mine] = await bounded('piped', Promise.all([
            sql`INSERT INTO ledger VALUES (${w}, ${seq}, ${amount}) RETURNING amount`,
            sql`SELECT sum(bal)::int AS s FROM acct`,
            sql`SELECT count(*)::int AS n FROM ledger WHERE worker = ${w}`,
          ]));
          if (ins[0].amount !== amount) unexpected.push(`RETURNING gave ${ins[0].amount}`);
          if (s[0].s !== ACCOUNTS * 1000) sumViolations++;
          if (!(mine[0].n >= 0)) unexpected.push('count');
          rows.add(`${w}/${seq}/${amount}`);
          tally.piped++;
        }
      } catch (e) {
        unexpected.push(`worker ${w} op ${seq}: ${errCode(e)} ${e.message}`);
      }
    }
  }

  await Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
  const dbBal = await bounded('balances', direct`SELECT id, bal FROM acct ORDER BY id`);
  const dbRows = await bounded('rows', direct`SELECT worker, seq, amount FROM ledger`);
  const wrongBal = dbBal.filter((r) => balances[r.id] !== r.bal).map((r) => `${r.id}: ${r.bal} != ${balances[r.id]}`);
  const dbSet = new Set(dbRows.map((r) => `${r.worker}/${r.seq}/${r.amount}`));
  const extra = [...dbSet].filter((x) => !rows.has(x));
  const missing = [...rows].filter((x) => !dbSet.has(x));
  out(`tally: ${JSON.stringify(tally)}`);
  out(`unexpected: ${JSON.stringify(unexpected.slice(0, 10))}`);
  out(`sum violations: ${sumViolations}`);
  out(`balances wrong: ${JSON.stringify(wrongBal)}`);
  out(`rows extra: ${JSON.stringify(extra.slice(0, 10))} missing: ${JSON.stringify(missing.slice(0, 10))}`);
  out(`rows: ${dbSet.size}`);
  await bounded('end', Promise.all([sql.end({ timeout: 5 }), direct.end({ timeout: 5 })]));
}

// Runs `body(w, r, said)` for `workers` workers and `rounds` rounds, every worker's round
// starting together (so a pool opens all its connections), and `between(r)` for a plain client
// at the start of each round; a worker that throws stops there (`describe(e)` is its last
// line). Prints each worker's lines after the plain client's.
async function inRounds(workers, rounds, body, between, describe) {
  const said = Array.from({ length: workers }, () => []);
  let waiting = [];
  let failed = 0;
  const release = () => {
    if (waiting.length >= workers + 1 - failed) {
      waiting.forEach((r) => r());
      waiting = [];
    }
  };
  const barrier = () => new Promise((resolve) => {
    waiting.push(resolve);
    release();
  });
  const worker = async (w) => {
    try {
      for (let r = 0; r < rounds; r++) {
        await barrier();
        await body(w, r, said[w]);
      }
    } catch (e) {
      said[w].push(describe(e));
      failed += 1;
      release();
    }
  };
  const all = Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
  for (let r = 0; r < rounds; r++) {
    await barrier();
    await between(r);
  }
  await all;
  said.forEach((lines, w) => lines.forEach((l) => out(`worker ${w}: ${l}`)));
}

// e. Sequelize's pool in transaction mode.
//
// Defect targeted: every Sequelize (v6) connection runs `SET client_min_messages TO
// warning;SET TIME ZONE INTERVAL '+00:00' HOUR TO MINUTE;` (one Query) when it connects; a
// string of SETs, and a time zone given as an interval, pinned the client: a pool of N
// Sequelize connections needed N server connections, and past the proxy's pool the next
// could not connect.
async function sequelizeScenario(workersArg = '6', roundsArg = '4') {
  const { Sequelize, DataTypes, QueryTypes } = require('sequelize');
  const workers = +workersArg;
  const rounds = +roundsArg;
  const c = config(false);
  const sq = new Sequelize(c.database, c.user, c.password || null, {
    host: c.host,
    port: c.port,
    dialect: 'postgres',
    logging: false,
    pool: { max: workers, min: 0, acquire: CALL_MS, idle: 60000 },
    dialectOptions: { connectionTimeoutMillis: 10000, query_timeout: CALL_MS },
  });
  const Item = sq.define('sq_item', { who: DataTypes.INTEGER, at: DataTypes.DATE }, {
    tableName: 'sq_item',
    timestamps: false,
  });
  const plain = await connect(false);
  const at = new Date(Date.UTC(2024, 0, 2, 3, 4, 5));
  await inRounds(workers, rounds, async (w, r, said) => {
    await sq.transaction(async (t) => {
      const item = await Item.create({ who: w, at }, { transaction: t });
      said.push(`round ${r}: created ${item.id > 0}`);
      const [tz] = await sq.query("SELECT current_setting('TimeZone') AS tz, now()::text ~ '[+]00$' AS utc",
        { type: QueryTypes.SELECT, transaction: t });
      said.push(`round ${r}: in transaction ${JSON.stringify(tz)}`);
    });
    const rows = await Item.findAll({ where: { who: w }, order: [['id', 'ASC']] });
    said.push(`round ${r}: ${rows.length} rows, at ${rows.map((x) => x.at.toISOString()).join(' ')}`);
    const [text] = await sq.query('SELECT at::text AS at FROM sq_item WHERE who = :w LIMIT 1',
      { type: QueryTypes.SELECT, replacements: { w } });
    said.push(`round ${r}: as text ${text.at}`);
  }, async (r) => {
    // Between rounds a client that is not Sequelize keeps the server's own time zone.
    const tz = (await plain.query("SELECT current_setting('TimeZone') AS tz")).rows[0].tz;
    out(`plain client, round ${r}: TimeZone ${tz}`);
  }, (e) => `error ${e.name} ${e.parent ? errCode(e.parent) : e.message}`);
  await sq.close();
  await closeBounded(plain);
}

// f. knex's pool with a searchPath, in transaction mode.
//
// Defect targeted: knex sends `set search_path to "knex_app","public"` on every connection it
// opens when `searchPath` is configured; a quoted name pinned the client, so a pool of N knex
// connections needed N server connections.
async function knexScenario(workersArg = '6', roundsArg = '4') {
  const knex = require('knex')({
    client: 'pg',
    connection: { ...config(false), connectionTimeoutMillis: 10000, query_timeout: CALL_MS },
    searchPath: ['knex_app', 'public'],
    pool: { min: 0, max: +workersArg },
    acquireConnectionTimeout: CALL_MS,
  });
  const workers = +workersArg;
  const rounds = +roundsArg;
  const plain = await connect(false);
  await inRounds(workers, rounds, async (w, r, said) => {
    await knex.transaction(async (trx) => {
      const [row] = await trx('kx_item').insert({ who: w }).returning('who');
      said.push(`round ${r}: inserted ${row.who}`);
      const { rows } = await trx.raw("SELECT current_setting('search_path') AS p");
      said.push(`round ${r}: in transaction ${rows[0].p}`);
    });
    const [n] = await knex('kx_item').where({ who: w }).count({ n: '*' });
    said.push(`round ${r}: ${n.n} rows`);
    const { rows } = await knex.raw('SHOW search_path');
    said.push(`round ${r}: outside ${rows[0].search_path}`);
  }, async (r) => {
    // Between rounds a client that is not knex keeps the server's own search_path.
    const p = (await plain.query("SELECT current_setting('search_path') AS p")).rows[0].p;
    out(`plain client, round ${r}: search_path ${p}`);
  }, (e) => `error ${e.name} ${errCode(e) || e.message}`);
  await knex.destroy();
  await closeBounded(plain);
}

const scenarios = {
  named_tx: namedTx,
  dirty,
  pgjs_habits: pgjsHabits,
  pgjs_ledger: pgjsLedger,
  sequelize: sequelizeScenario,
  knex: knexScenario,
};

async function main() {
  const [name, ...args] = process.argv.slice(2);
  const f = scenarios[name];
  if (!f) throw new Error(`unknown scenario ${name}`);
  const deadline = setTimeout(() => {
    console.error(`scenario ${name} passed its 90 s deadline`);
    process.exit(3);
  }, 90000);
  await f(...args);
  clearTimeout(deadline);
  out('END');
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
