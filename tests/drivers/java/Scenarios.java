// pgjdbc scenarios run by tests/pg_drivers.rs (compiled there with javac against
// /usr/share/java/postgresql.jar).
//
// Usage: java -cp DIR:postgresql.jar Scenarios SCENARIO [ARGS...]; the server under test comes
// from SY_HOST, SY_PORT, SY_USER, SY_PASSWORD, SY_DB, the PostgreSQL primary (to read back what
// was really committed) from SY_DIRECT_PORT, SY_DIRECT_USER, SY_DIRECT_DB. Prints observable
// results on stdout, one fact a line, then END, and exits 0. Every connection has connect and
// socket timeouts (a call that hangs fails), and a watchdog ends the whole run.

import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.BrokenBarrierException;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;

import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;
import org.springframework.jdbc.core.JdbcTemplate;
import org.springframework.jdbc.datasource.DataSourceTransactionManager;
import org.springframework.transaction.support.TransactionTemplate;

public class Scenarios {
    static Connection connect(boolean direct) throws SQLException {
        return connect(direct, new Properties());
    }

    static Connection connect(boolean direct, Properties extra) throws SQLException {
        String host = System.getenv().getOrDefault("SY_HOST", "127.0.0.1");
        String port = System.getenv(direct ? "SY_DIRECT_PORT" : "SY_PORT");
        String db = System.getenv(direct ? "SY_DIRECT_DB" : "SY_DB");
        Properties p = new Properties();
        p.setProperty("user", System.getenv(direct ? "SY_DIRECT_USER" : "SY_USER"));
        String pw = System.getenv("SY_PASSWORD");
        if (!direct && pw != null && !pw.isEmpty()) {
            p.setProperty("password", pw);
        }
        p.setProperty("connectTimeout", "10");
        p.setProperty("socketTimeout", "30");
        p.setProperty("loginTimeout", "15");
        p.putAll(extra);
        return DriverManager.getConnection("jdbc:postgresql://" + host + ":" + port + "/" + db, p);
    }

    static void out(String s) {
        System.out.println(s);
        System.out.flush();
    }

    static long scalar(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet r = s.executeQuery(sql)) {
            r.next();
            return r.getLong(1);
        }
    }

    // h. Defects targeted: named server-side statements (pgjdbc switches to them after
    // prepareThreshold=5 executions) inside a transaction must run after its BEGIN, on the
    // backend that began it, so rollback undoes them; batches (many Bind/Execute before one
    // Sync) with writes must reach the primary as a whole; a read-only connection still works.
    static void jdbc() throws Exception {
        try (Connection direct = connect(true); Connection c = connect(false)) {
            String v1 = "SELECT v FROM t WHERE id = 1";
            out("start id1: " + scalar(direct, v1));

            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement("UPDATE t SET v = v + 1 WHERE id = ?")) {
                for (int i = 0; i < 8; i++) {
                    ps.setInt(1, 1);
                    ps.executeUpdate();
                }
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT v FROM t WHERE id = ?")) {
                long seen = -1;
                for (int i = 0; i < 7; i++) {
                    ps.setInt(1, 1);
                    try (ResultSet r = ps.executeQuery()) {
                        r.next();
                        seen = r.getLong(1);
                    }
                }
                out("own uncommitted value seen by prepared select: " + seen);
            }
            out("direct during transaction: " + scalar(direct, v1));
            c.rollback();
            out("direct after rollback: " + scalar(direct, v1));

            try (PreparedStatement ps = c.prepareStatement("UPDATE t SET v = v + 1 WHERE id = ?")) {
                for (int i = 0; i < 8; i++) {
                    ps.setInt(1, 1);
                    ps.executeUpdate();
                }
            }
            c.commit();
            out("direct after commit of 8 updates: " + scalar(direct, v1));

            // Batches: inserts in one round trip, inside a transaction and in autocommit.
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO b (id, s) VALUES (?, ?)")) {
                for (int i = 0; i < 200; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "x" + i);
                    ps.addBatch();
                }
                int[] counts = ps.executeBatch();
                out("batch in transaction: " + counts.length + " statements");
            }
            c.commit();
            out("direct count after committed batch: " + scalar(direct, "SELECT count(*) FROM b"));
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO b (id, s) VALUES (?, ?)")) {
                for (int i = 1000; i < 1050; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "y" + i);
                    ps.addBatch();
                }
                ps.executeBatch();
            }
            c.rollback();
            out("direct count after rolled back batch: " + scalar(direct, "SELECT count(*) FROM b"));

            c.setAutoCommit(true);
            try (Statement s = c.createStatement()) {
                s.addBatch("SELECT 1");
                s.addBatch("INSERT INTO b (id, s) VALUES (5000, 'plain')");
                s.addBatch("UPDATE t SET v = v + 100 WHERE id = 2");
                try {
                    s.executeBatch();
                    out("autocommit statement batch (read first): ok");
                } catch (BatchUpdateException e) {
                    out("autocommit statement batch (read first): " + e.getSQLState());
                }
            }
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO b (id, s) VALUES (?, ?)")) {
                for (int i = 2000; i < 2100; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "z");
                    ps.addBatch();
                }
                ps.executeBatch();
            }
            out("direct count after autocommit batches: " + scalar(direct, "SELECT count(*) FROM b"));
            out("direct id2: " + scalar(direct, "SELECT v FROM t WHERE id = 2"));

            // Read-only connections.
            c.setReadOnly(true);
            out("read-only autocommit query: " + scalar(c, "SELECT count(*) FROM t"));
            c.setAutoCommit(false);
            out("read-only transaction query: " + scalar(c, "SELECT count(*) FROM t"));
            try (Statement s = c.createStatement()) {
                s.executeUpdate("UPDATE t SET v = v + 1 WHERE id = 3");
                out("write in read-only transaction: no error");
            } catch (SQLException e) {
                out("write in read-only transaction: " + e.getSQLState());
            }
            c.rollback();
            c.setReadOnly(false);
            try (PreparedStatement ps = c.prepareStatement("UPDATE t SET v = v + 1 WHERE id = ?")) {
                for (int i = 0; i < 6; i++) {
                    ps.setInt(1, 3);
                    ps.executeUpdate();
                }
            }
            c.commit();
            out("direct id3 after read-write transaction: " + scalar(direct, "SELECT v FROM t WHERE id = 3"));
        }
    }

    // c. A pgjdbc session that leaves named server-side statements (S_1...) behind.
    static void dirty(String kind) throws Exception {
        try (Connection c = connect(false)) {
            if (kind.equals("prepared_threshold")) {
                try (PreparedStatement ps = c.prepareStatement("SELECT ?::int + 3")) {
                    for (int i = 0; i < 7; i++) {
                        ps.setInt(1, i);
                        try (ResultSet r = ps.executeQuery()) {
                            r.next();
                        }
                    }
                }
            } else if (kind.equals("read_only")) {
                c.setReadOnly(true);
                c.setAutoCommit(false);
                scalar(c, "SELECT 1");
                c.commit();
            } else {
                throw new IllegalArgumentException("unknown kind " + kind);
            }
            out("dirty " + kind + ": ok");
        }
    }

    // i. Defect targeted: a statement prepared before ALTER TABLE, bound on a server connection
    // the proxy prepares it on anew (the one it was prepared on ended), returned rows of the new
    // columns where pgjdbc was told the old ones; a server refuses its own stale statement
    // (0A000) and pgjdbc prepares it again, or reports it inside a transaction.
    static String rows(PreparedStatement ps) {
        try (ResultSet r = ps.executeQuery()) {
            java.sql.ResultSetMetaData m = r.getMetaData();
            StringBuilder b = new StringBuilder();
            while (r.next()) {
                for (int i = 1; i <= m.getColumnCount(); i++) {
                    b.append(m.getColumnName(i)).append('=').append(r.getString(i)).append(' ');
                }
            }
            return b.toString().trim();
        } catch (SQLException e) {
            return "error " + e.getSQLState();
        }
    }

    static void stale(int n) throws Exception {
        Connection[] cs = new Connection[n];
        PreparedStatement[] all = new PreparedStatement[n];
        PreparedStatement[] two = new PreparedStatement[n];
        try (Connection direct = connect(true)) {
            for (int i = 0; i < n; i++) {
                cs[i] = connect(false);
                all[i] = cs[i].prepareStatement("SELECT * FROM stale_t WHERE id = ?");
                two[i] = cs[i].prepareStatement("SELECT id, v FROM stale_t WHERE id = ?");
                all[i].setInt(1, 1);
                two[i].setInt(1, 1);
                // Past prepareThreshold (5): named server statements from here on.
                for (int k = 0; k < 6; k++) {
                    rows(all[i]);
                    rows(two[i]);
                }
                out("conn " + i + " before: " + rows(all[i]) + " | " + rows(two[i]));
            }
            String[] alters = {
                "ALTER TABLE stale_t ADD COLUMN w int DEFAULT 7",
                "ALTER TABLE stale_t ALTER COLUMN v TYPE bigint",
                "ALTER TABLE stale_t ADD COLUMN x text DEFAULT 'x'",
            };
            for (int step = 0; step < alters.length; step++) {
                boolean inTx = step == 2;
                try (Statement s = cs[0].createStatement()) {
                    s.execute(alters[step]);
                }
                // The proxy's own server connections end (a direct run has none).
                scalar(direct, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        + " WHERE datname = current_database() AND application_name = 'switchyard'");
                Thread.sleep(300);
                for (int i = 0; i < n; i++) {
                    cs[i].setAutoCommit(!inTx);
                    String a = rows(all[i]);
                    String b = rows(two[i]);
                    if (inTx) {
                        cs[i].rollback();
                        cs[i].setAutoCommit(true);
                    }
                    out("step " + step + " conn " + i + ": " + a + " | " + b);
                }
                for (int i = 0; i < n; i++) {
                    out("step " + step + " conn " + i + " again: " + rows(all[i]) + " | " + rows(two[i]));
                }
            }
        } finally {
            for (Connection c : cs) {
                if (c != null) {
                    c.close();
                }
            }
        }
    }

    static HikariDataSource hikari(int size, String isolation) {
        HikariConfig hc = new HikariConfig();
        hc.setJdbcUrl("jdbc:postgresql://" + System.getenv().getOrDefault("SY_HOST", "127.0.0.1") + ":"
                + System.getenv("SY_PORT") + "/" + System.getenv("SY_DB"));
        hc.setUsername(System.getenv("SY_USER"));
        String pw = System.getenv("SY_PASSWORD");
        if (pw != null && !pw.isEmpty()) {
            hc.setPassword(pw);
        }
        hc.setMaximumPoolSize(size);
        hc.setMinimumIdle(size);
        hc.setConnectionTimeout(20_000);
        hc.addDataSourceProperty("socketTimeout", "30");
        if (isolation != null) {
            hc.setTransactionIsolation(isolation);
        }
        return new HikariDataSource(hc);
    }

    // i. Spring's transactions over HikariCP, as a Spring application runs them: a
    // TransactionTemplate with an isolation level makes DataSourceTransactionManager call
    // setTransactionIsolation before the transaction and again after it, which pgjdbc sends as
    // SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL ...; a Hikari pool with
    // transactionIsolation set sends it once per connection. A read-only TransactionTemplate
    // (@Transactional(readOnly = true)) begins with BEGIN READ ONLY. Threads of both kinds, with
    // every connection of both pools open at once, over a small proxy pool: each must see its
    // own isolation levels in and out of its transactions, and a plain connection beside them
    // the server's default between rounds.
    static void spring(int threads, int rounds) throws Exception {
        int half = (threads + 1) / 2;
        String[] levels = {"SERIALIZABLE", "REPEATABLE_READ", "READ_COMMITTED"};
        try (Connection plain = connect(false);
                HikariDataSource perTx = hikari(half, null);
                HikariDataSource serializable = hikari(threads - half, "TRANSACTION_SERIALIZABLE")) {
            CyclicBarrier step = new CyclicBarrier(threads + 1);
            List<List<String>> said = new ArrayList<>();
            List<Thread> ts = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                List<String> lines = new ArrayList<>();
                said.add(lines);
                int i = t;
                HikariDataSource ds = i < half ? perTx : serializable;
                Thread th = new Thread(() -> {
                    JdbcTemplate jt = new JdbcTemplate(ds);
                    DataSourceTransactionManager tm = new DataSourceTransactionManager(ds);
                    TransactionTemplate tt = new TransactionTemplate(tm);
                    // @Transactional(readOnly = true): pgjdbc begins it with BEGIN READ ONLY.
                    TransactionTemplate ro = new TransactionTemplate(tm);
                    ro.setReadOnly(true);
                    String show = "SELECT current_setting('transaction_isolation') || ' / '"
                            + " || current_setting('default_transaction_isolation')";
                    try {
                        for (int r = 0; r < rounds; r++) {
                            step.await(60, TimeUnit.SECONDS);
                            String level = levels[(i + r) % levels.length];
                            if (i < half) {
                                tt.setIsolationLevelName("ISOLATION_" + level);
                                ro.setIsolationLevelName("ISOLATION_" + level);
                            }
                            // What the reads see is the same on any server (so a replica may
                            // serve them); the rows are counted on the primary at the end.
                            lines.add("round " + r + ": read-only " + ro.execute(status -> jt.queryForObject(
                                    "SELECT current_setting('transaction_isolation') || ' '"
                                    + " || current_setting('transaction_read_only')", String.class)));
                            lines.add("round " + r + ": outside " + jt.queryForObject(show, String.class));
                            String in = tt.execute(status -> jt.queryForObject(
                                    "INSERT INTO sp_t (who) VALUES (?) RETURNING who", Long.class, i)
                                    + " " + jt.queryForObject(show, String.class));
                            lines.add("round " + r + (i < half ? " " + level : "") + ": in transaction " + in);
                        }
                    } catch (Exception e) {
                        lines.add("error " + e.getClass().getSimpleName() + " " + e.getMessage());
                        step.reset();
                    }
                });
                ts.add(th);
                th.start();
            }
            try {
                for (int r = 0; r < rounds; r++) {
                    step.await(60, TimeUnit.SECONDS);
                    out("plain connection, round " + r + ": " + scalarText(plain,
                            "SELECT current_setting('default_transaction_isolation')"));
                }
            } catch (BrokenBarrierException | java.util.concurrent.TimeoutException e) {
                out("plain connection: a Spring thread failed");
            }
            for (Thread th : ts) {
                th.join(90_000);
            }
            for (int t = 0; t < threads; t++) {
                for (String line : said.get(t)) {
                    out("thread " + t + ": " + line);
                }
            }
        }
        try (Connection direct = connect(true)) {
            out("committed: " + scalarText(direct,
                    "SELECT string_agg(who || ':' || n, ' ' ORDER BY who)"
                    + " FROM (SELECT who, count(*) n FROM sp_t GROUP BY who) c"));
        }
    }

    // ii. A HikariCP pool with autoCommit off and a schema (as a Hibernate application
    // configures one): Hikari calls setSchema on each new connection, which pgjdbc sends as SET
    // SESSION search_path TO '...' after a BEGIN of its own (autocommit is off), so the SET
    // lasts only if the application's first transaction on that connection commits. Each
    // checkout's first transaction commits (so every connection's first one does, whichever
    // thread Hikari gives it to); a second one commits or rolls back.
    // Every connection open at once, over a small proxy pool: each thread must see the schema
    // in every transaction, and a plain connection beside them the server's search_path.
    static void hikariSchema(int threads, int rounds) throws Exception {
        HikariConfig hc = new HikariConfig();
        hc.setJdbcUrl("jdbc:postgresql://" + System.getenv().getOrDefault("SY_HOST", "127.0.0.1") + ":"
                + System.getenv("SY_PORT") + "/" + System.getenv("SY_DB"));
        hc.setUsername(System.getenv("SY_USER"));
        String pw = System.getenv("SY_PASSWORD");
        if (pw != null && !pw.isEmpty()) {
            hc.setPassword(pw);
        }
        hc.setMaximumPoolSize(threads);
        hc.setMinimumIdle(threads);
        hc.setConnectionTimeout(20_000);
        hc.setAutoCommit(false);
        hc.setSchema("hk_app");
        hc.addDataSourceProperty("socketTimeout", "30");
        try (Connection plain = connect(false); HikariDataSource ds = new HikariDataSource(hc)) {
            CyclicBarrier step = new CyclicBarrier(threads + 1);
            List<List<String>> said = new ArrayList<>();
            List<Thread> ts = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                List<String> lines = new ArrayList<>();
                said.add(lines);
                int i = t;
                Thread th = new Thread(() -> {
                    try {
                        for (int r = 0; r < rounds; r++) {
                            step.await(60, TimeUnit.SECONDS);
                            try (Connection c = ds.getConnection()) {
                                // The connection's first transaction commits (its schema
                                // with it); a second one commits or rolls back.
                                for (int k = 0; k < 2; k++) {
                                    long n;
                                    try (java.sql.PreparedStatement ps = c.prepareStatement(
                                            "INSERT INTO hk_item (who, round) VALUES (?, ?) RETURNING who")) {
                                        ps.setInt(1, i);
                                        ps.setInt(2, r);
                                        try (ResultSet rs = ps.executeQuery()) {
                                            rs.next();
                                            n = rs.getLong(1);
                                        }
                                    }
                                    String schema = scalarText(c, "SELECT current_schema() || ' / '"
                                            + " || current_setting('search_path')");
                                    boolean keep = k == 0 || (i + r) % 3 != 0;
                                    if (keep) {
                                        c.commit();
                                    } else {
                                        c.rollback();
                                    }
                                    lines.add("round " + r + "." + k + ": " + n + " in " + schema
                                            + (keep ? " committed" : " rolled back"));
                                }
                            }
                        }
                    } catch (Exception e) {
                        lines.add("error " + e.getClass().getSimpleName() + " " + e.getMessage());
                        step.reset();
                    }
                });
                ts.add(th);
                th.start();
            }
            try {
                for (int r = 0; r < rounds; r++) {
                    step.await(60, TimeUnit.SECONDS);
                    out("plain connection, round " + r + ": "
                            + scalarText(plain, "SELECT current_setting('search_path')"));
                }
            } catch (BrokenBarrierException | java.util.concurrent.TimeoutException e) {
                out("plain connection: a Hikari thread failed");
            }
            for (Thread th : ts) {
                th.join(90_000);
            }
            for (int t = 0; t < threads; t++) {
                for (String line : said.get(t)) {
                    out("thread " + t + ": " + line);
                }
            }
        }
        try (Connection direct = connect(true)) {
            out("committed: " + scalarText(direct,
                    "SELECT string_agg(who || ':' || n, ' ' ORDER BY who)"
                    + " FROM (SELECT who, count(*) n FROM hk_app.hk_item GROUP BY who) c"));
        }
    }

    static String scalarText(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet r = s.executeQuery(sql)) {
            r.next();
            return r.getString(1);
        }
    }

    // m. Cancels as pgjdbc sends them (a connection of their own to the same address, with
    // the key the login gave): setQueryTimeout's timer and Statement.cancel from another
    // thread, on a plain statement and on a prepared one after pgjdbc switched it to a named
    // server statement; in a transaction and out of one. Each stops its own statement, and the
    // connection goes on (a transaction aborted as the server aborts it).
    static void cancelled(String label, Statement s, java.util.concurrent.Callable<?> run,
            boolean byTimer) throws Exception {
        Thread t = null;
        if (byTimer) {
            s.setQueryTimeout(1);
        } else {
            t = new Thread(() -> {
                try {
                    Thread.sleep(300);
                    s.cancel();
                } catch (Exception e) {
                    System.err.println("cancel: " + e);
                }
            });
            t.start();
        }
        long start = System.nanoTime();
        try {
            run.call();
            out(label + ": not stopped");
        } catch (SQLException e) {
            out(label + ": " + e.getSQLState() + " within 5s=" + (System.nanoTime() - start < 5_000_000_000L));
        }
        if (t != null) {
            t.join();
        }
        s.setQueryTimeout(0);
    }

    static void cancel() throws Exception {
        try (Connection c = connect(false)) {
            for (boolean byTimer : new boolean[] {true, false}) {
                String how = byTimer ? "timeout" : "cancel";
                try (Statement s = c.createStatement()) {
                    cancelled("read (" + how + ")", s, () -> s.executeQuery("SELECT pg_sleep(30)"), byTimer);
                }
                out("read (" + how + "), then: " + scalar(c, "SELECT 1"));
                try (PreparedStatement ps = c.prepareStatement("SELECT pg_sleep(?)")) {
                    // pgjdbc names the statement on the server from its fifth run.
                    for (int i = 0; i < 6; i++) {
                        ps.setDouble(1, 0);
                        ps.executeQuery().close();
                    }
                    ps.setDouble(1, 30);
                    cancelled("prepared read (" + how + ")", ps, ps::executeQuery, byTimer);
                    ps.setDouble(1, 0);
                    ps.executeQuery().close();
                    out("prepared read (" + how + "), then: ran");
                }
            }
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.executeUpdate("INSERT INTO cancelled VALUES (5)");
                cancelled("in a transaction", s, () -> s.executeQuery("SELECT pg_sleep(30)"), false);
                try {
                    s.executeQuery("SELECT 1").close();
                    out("in a transaction, then: ran");
                } catch (SQLException e) {
                    out("in a transaction, then: " + e.getSQLState());
                }
            }
            c.rollback();
            c.setAutoCommit(true);
            try (Statement s = c.createStatement()) {
                cancelled("write", s,
                        () -> s.executeUpdate("INSERT INTO cancelled SELECT 6 FROM pg_sleep(30)"), true);
                s.executeUpdate("INSERT INTO cancelled VALUES (7)");
            }
            out("after all, then: " + scalar(c, "SELECT 1"));
        }
        try (Connection d = connect(true)) {
            out("committed rows: [" + scalarText(d,
                    "SELECT coalesce(string_agg(i::text, ',' ORDER BY i), '') FROM cancelled") + "]");
        }
    }

    // n. Fetching in parts and autosave, as pgjdbc does them: with autocommit off and a fetch
    // size, a query's portal is read 10 rows at a time (Execute with a row limit,
    // PortalSuspended) while other statements run between the fetches; with autosave, each
    // statement of a transaction follows a SAVEPOINT, and (`always`) a failed one is rolled
    // back to it by the driver, so the transaction goes on and commits the rest.
    static void fetch() throws Exception {
        try (Connection c = connect(false)) {
            try (Statement s = c.createStatement()) {
                s.execute("DROP TABLE IF EXISTS f");
                s.execute("CREATE TABLE f (id int PRIMARY KEY, v text)");
                s.execute("INSERT INTO f SELECT g, md5(g::text) FROM generate_series(1, 1000) g");
            }
            c.setAutoCommit(false);
            for (boolean prepared : new boolean[] {false, true}) {
                String q = "SELECT id, v FROM f WHERE id > ? ORDER BY id";
                try (PreparedStatement ps = c.prepareStatement(q);
                        PreparedStatement other = c.prepareStatement("SELECT count(*) FROM f WHERE id <= ?")) {
                    if (prepared) {
                        // Named on the server from the fifth run.
                        for (int i = 0; i < 5; i++) {
                            ps.setInt(1, 2000);
                            ps.executeQuery().close();
                        }
                    }
                    ps.setFetchSize(10);
                    ps.setInt(1, 0);
                    long n = 0, sum = 0, between = 0;
                    try (ResultSet rs = ps.executeQuery()) {
                        while (rs.next()) {
                            n++;
                            sum += rs.getInt(1);
                            if (n % 100 == 0) {
                                other.setInt(1, (int) n);
                                try (ResultSet o = other.executeQuery()) {
                                    o.next();
                                    between += o.getLong(1);
                                }
                            }
                        }
                    }
                    out("fetched in parts (prepared=" + prepared + "): rows " + n + " sum " + sum
                            + " counts between " + between);
                }
                c.commit();
            }
            // A fetch size with autocommit on: pgjdbc reads all at once.
            c.setAutoCommit(true);
            try (Statement s = c.createStatement()) {
                s.setFetchSize(10);
                long n = 0;
                try (ResultSet rs = s.executeQuery("SELECT id FROM f")) {
                    while (rs.next()) {
                        n++;
                    }
                }
                out("autocommit with a fetch size: rows " + n);
            }
        }
        for (String mode : new String[] {"conservative", "always"}) {
            Properties extra = new Properties();
            extra.setProperty("autosave", mode);
            try (Connection c = connect(false, extra)) {
                c.setAutoCommit(false);
                try (PreparedStatement ins = c.prepareStatement("INSERT INTO f VALUES (?, ?)")) {
                    for (int id : new int[] {2001, 1, 2002, 2, 2003}) {
                        ins.setInt(1, id);
                        ins.setString(2, mode);
                        try {
                            ins.executeUpdate();
                            out("autosave " + mode + ": inserted " + id);
                        } catch (SQLException e) {
                            out("autosave " + mode + ": " + id + " " + e.getSQLState());
                        }
                    }
                }
                try {
                    out("autosave " + mode + ": in the transaction " + scalar(c,
                            "SELECT count(*) FROM f WHERE v = '" + mode + "'"));
                    c.commit();
                } catch (SQLException e) {
                    // (conservative rolls back to its savepoint only for a changed plan.)
                    out("autosave " + mode + ": in the transaction " + e.getSQLState());
                    c.rollback();
                }
            }
            try (Connection d = connect(true)) {
                out("autosave " + mode + ": committed " + scalarText(d,
                        "SELECT string_agg(id::text, ',' ORDER BY id) FROM f WHERE v = '" + mode + "'"));
            }
            try (Connection d = connect(true); Statement s = d.createStatement()) {
                s.execute("DELETE FROM f WHERE id > 2000");
            }
        }
    }

    public static void main(String[] args) throws Exception {
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(90_000);
                System.err.println("scenario passed its 90 s deadline");
                Runtime.getRuntime().halt(3);
            } catch (InterruptedException e) {
                // finished in time
            }
        });
        watchdog.setDaemon(true);
        watchdog.start();
        switch (args[0]) {
            case "jdbc":
                jdbc();
                break;
            case "cancel":
                cancel();
                break;
            case "fetch":
                fetch();
                break;
            case "dirty":
                dirty(args[1]);
                break;
            case "stale":
                stale(Integer.parseInt(args[1]));
                break;
            case "spring":
                spring(Integer.parseInt(args[1]), Integer.parseInt(args[2]));
                break;
            case "hikari_schema":
                hikariSchema(Integer.parseInt(args[1]), Integer.parseInt(args[2]));
                break;
            default:
                throw new IllegalArgumentException("unknown scenario " + args[0]);
        }
        out("END");
        watchdog.interrupt();
    }
}
