// The MariaDB Connector/Node.js (npm `mariadb`) scenarios, run by tests/mysql_drivers.rs
// through the proxy and directly against the MariaDB primary; the outputs must be equal.
//
// Usage: node mariadb_scenarios.js SCENARIO   (server under test: SY_HOST, SY_PORT, SY_USER,
// SY_PASSWORD, SY_DB)
//
// This connector pipelines: with `pipelining` (its default) it writes the next commands
// before the answers to the previous ones arrive, and `execute` sends COM_STMT_PREPARE and
// COM_STMT_EXECUTE back to back, the execute naming statement id 0xFFFFFFFF ("the one just
// prepared", a MariaDB extension). Its pool resets connections given back
// (`resetAfterUse`: COM_RESET_CONNECTION).
//
// Prints one fact a line, then END; exits 0. Every connection has connect and query timeouts.

const mariadb = require('mariadb');

const opts = {
  host: process.env.SY_HOST || '127.0.0.1',
  port: Number(process.env.SY_PORT),
  user: process.env.SY_USER,
  password: process.env.SY_PASSWORD,
  database: process.env.SY_DB,
  connectTimeout: 10000,
  queryTimeout: 20000,
  pipelining: true,
};

const show = (k, v) =>
  console.log(k, JSON.stringify(v, (key, x) => (typeof x === 'bigint' ? x.toString() : x)));

async function pipeline() {
  const c = await mariadb.createConnection(opts);
  await c.query('DROP TABLE IF EXISTS nd');
  await c.query('CREATE TABLE nd (id INT PRIMARY KEY, v VARCHAR(20))');
  // Twenty inserts and a read written at once.
  const ps = [];
  for (let i = 0; i < 20; i++) ps.push(c.query('INSERT INTO nd VALUES (?, ?)', [i, 'v' + i]));
  ps.push(c.query('/* switchyard:primary */ SELECT COUNT(*) AS n FROM nd'));
  const rs = await Promise.all(ps);
  show('pipelined count', rs[20][0].n);
  // A read, a write and a read pipelined inside a transaction, then rolled back.
  await c.beginTransaction();
  const t = await Promise.all([
    c.query('SELECT v FROM nd WHERE id = 1'),
    c.query("UPDATE nd SET v = 'tx' WHERE id = 1"),
    c.query('SELECT v FROM nd WHERE id = 1'),
  ]);
  show('tx pipeline', [t[0][0].v, t[1].affectedRows, t[2][0].v]);
  await c.rollback();
  show('after rollback', (await c.query('/* switchyard:primary */ SELECT v FROM nd WHERE id = 1'))[0].v);
  // execute: prepare and execute (id 0xFFFFFFFF) back to back, then from its cache.
  for (let i = 0; i < 3; i++) {
    show('execute', (await c.execute('/* switchyard:primary */ SELECT v FROM nd WHERE id = ?', [i]))[0].v);
  }
  const ex = await Promise.all([1, 2, 3, 4, 5].map((i) =>
    c.execute('/* switchyard:primary */ SELECT v FROM nd WHERE id = ? + 0', [i])));
  show('pipelined execute', ex.map((r) => r[0].v));
  try {
    await c.execute('SELECT nope FROM nd WHERE id = ?', [1]);
    show('bad execute', 'accepted');
  } catch (e) {
    show('bad execute', e.errno);
  }
  const p = await c.prepare('/* switchyard:primary */ SELECT id FROM nd WHERE id > ? ORDER BY id LIMIT 3');
  show('prepared', (await p.execute([5])).map((r) => r.id));
  show('prepared again', (await p.execute([15])).map((r) => r.id));
  p.close();
  const b = await c.batch('INSERT INTO nd VALUES (?, ?)', [[100, 'b0'], [101, 'b1'], [102, 'b2']]);
  // Array binding (COM_STMT_BULK_EXECUTE) is not offered through the proxy: the connector
  // then answers one result per row instead of one in all; the rows are the same.
  const affected = (r) => (Array.isArray(r) ? r.reduce((n, x) => n + affected(x), 0) : r.affectedRows);
  show('batch', affected(b));
  show('batch rows', (await c.query('/* switchyard:primary */ SELECT v FROM nd WHERE id >= 100 ORDER BY id')).map((r) => r.v));
  const rows = [];
  await new Promise((res, rej) => {
    c.queryStream('/* switchyard:primary */ SELECT id FROM nd ORDER BY id')
      .on('data', (r) => rows.push(r.id))
      .on('end', res)
      .on('error', rej);
  });
  show('stream', [rows.length, rows[rows.length - 1]]);
  // An error in the middle of a pipeline answers only its own command.
  const mixed = await Promise.allSettled([
    c.query('SELECT 1 AS a'),
    c.query('SELECT nope'),
    c.query('SELECT 2 AS b'),
  ]);
  show('mixed', mixed.map((x) => (x.status === 'fulfilled' ? x.value[0] : x.reason.errno)));
  const id1 = (await c.query('SELECT CONNECTION_ID() AS i'))[0].i;
  show('threadId agrees', BigInt(c.threadId) === BigInt(id1));
  await c.reset();
  const id2 = (await c.query('SELECT CONNECTION_ID() AS i'))[0].i;
  show('same id after reset', id1 === id2);
  await c.end();
}

async function pool() {
  const pool = mariadb.createPool({ ...opts, connectionLimit: 2, resetAfterUse: true });
  for (let i = 0; i < 6; i++) {
    const pc = await pool.getConnection();
    show('pool round', (await pc.query('SELECT @leak AS l, @@session.time_zone AS tz'))[0]);
    const r = await pc.execute('SELECT ? + 1 AS n', [i]);
    show('pool execute', r[0].n);
    await pc.query("SET @leak = 'x', time_zone = '+02:00'");
    await pc.release();
  }
  await pool.end();
}

const scenarios = { pipeline, pool };
const fn = scenarios[process.argv[2]];
if (!fn) {
  console.error('unknown scenario', process.argv[2]);
  process.exit(2);
}
fn()
  .then(() => console.log('END'))
  .catch((e) => {
    console.log('error', e.errno || '', e.message);
    process.exit(1);
  });
