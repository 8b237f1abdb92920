// node-postgres scenarios run by tests/pg_drivers.rs.
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

const scenarios = { named_tx: namedTx, dirty };

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
