// MariaDB Connector/J scenarios run by tests/mysql_drivers.rs (compiled there with javac
// against /usr/share/java/mariadb-java-client.jar, Debian's libmariadb-java), through the proxy
// and directly against the MariaDB primary.
//
// Usage: java -cp DIR:mariadb-java-client.jar MyScenarios SCENARIO [ARGS...]; the server under
// test: SY_HOST, SY_PORT, SY_USER, SY_PASSWORD, SY_DB; the primary itself (to read back what was
// committed): SY_DIRECT_PORT, same user and database.
//
// JDBC as applications use it: autocommit off with commit/rollback, PreparedStatement objects
// reused across executions and transactions, executeBatch, setReadOnly, the driver's own
// MariaDbPoolDataSource with sessionVariables set at connect; prepared statements both the
// driver's default way (client-side, text protocol) and with useServerPrepStmts=true (binary).
//
// Prints observable results on stdout, one fact a line, then END, and exits 0. Every
// connection has connect and socket timeouts (a call that hangs fails), and a watchdog ends
// the whole run.

import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.SQLWarning;
import java.sql.Statement;
import java.sql.Timestamp;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.BrokenBarrierException;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeoutException;

import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;
import org.mariadb.jdbc.MariaDbPoolDataSource;
import org.springframework.jdbc.core.JdbcTemplate;
import org.springframework.jdbc.datasource.DataSourceTransactionManager;
import org.springframework.transaction.support.TransactionTemplate;

public class MyScenarios {
    static final String HOST = System.getenv().getOrDefault("SY_HOST", "127.0.0.1");
    static final String PORT = System.getenv("SY_PORT");
    static final String DIRECT_PORT = System.getenv("SY_DIRECT_PORT");
    static final String USER = System.getenv("SY_USER");
    static final String PASSWORD = System.getenv("SY_PASSWORD");
    static final String DB = System.getenv("SY_DB");
    static String[] args = new String[0];

    static String url(String port, String extra) {
        return "jdbc:mariadb://" + HOST + ":" + port + "/" + DB + "?user=" + USER + "&password="
                + PASSWORD + "&connectTimeout=10000&socketTimeout=20000"
                + (extra.isEmpty() ? "" : "&" + extra);
    }

    static Connection connect(String extra) throws SQLException {
        return DriverManager.getConnection(url(PORT, extra));
    }

    static Connection direct() throws SQLException {
        return DriverManager.getConnection(url(DIRECT_PORT, ""));
    }

    static void out(String s) {
        System.out.println(s);
        System.out.flush();
    }

    static void log(String s) {
        System.err.println(s);
        System.err.flush();
    }

    static String hex(byte[] b) {
        StringBuilder s = new StringBuilder();
        for (byte x : b) {
            s.append(String.format("%02x", x & 0xff));
        }
        return s.toString();
    }

    static String sha(byte[] b) throws Exception {
        return hex(MessageDigest.getInstance("SHA-256").digest(b));
    }

    static String show(Object v) throws Exception {
        if (v == null) {
            return "NULL";
        }
        if (v instanceof byte[]) {
            return "bytes:" + hex((byte[]) v);
        }
        String s = String.valueOf(v);
        if (s.length() > 80) {
            s = s.substring(0, 20) + "...[" + s.length() + " chars, sha256 "
                    + sha(s.getBytes(StandardCharsets.UTF_8)).substring(0, 16) + "]";
        }
        return v.getClass().getSimpleName() + ":" + s;
    }

    static String code(SQLException e) {
        return e.getErrorCode() + "/" + e.getSQLState();
    }

    static void printResult(String prefix, ResultSet rs) throws Exception {
        ResultSetMetaData md = rs.getMetaData();
        StringBuilder cols = new StringBuilder();
        for (int i = 1; i <= md.getColumnCount(); i++) {
            cols.append(String.format("[%s %d %s p%d s%d n%d %s] ", md.getColumnLabel(i),
                    md.getColumnType(i), md.getColumnTypeName(i), md.getPrecision(i),
                    md.getScale(i), md.isNullable(i), md.isSigned(i) ? "signed" : "unsigned"));
        }
        out(prefix + " columns " + cols.toString().trim());
        while (rs.next()) {
            List<String> vals = new ArrayList<>();
            for (int i = 1; i <= md.getColumnCount(); i++) {
                vals.add(show(rs.getObject(i)));
            }
            out(prefix + " row (" + String.join(", ", vals) + ")");
        }
    }

    /** Every result of a Statement.execute: result sets and update counts. */
    static void printAll(String prefix, Statement s, boolean isRs) throws Exception {
        int n = 0;
        while (true) {
            if (isRs) {
                try (ResultSet rs = s.getResultSet()) {
                    printResult(prefix + " #" + n, rs);
                }
            } else {
                int count = s.getUpdateCount();
                if (count == -1) {
                    break;
                }
                out(prefix + " #" + n + " affected " + count);
            }
            n++;
            isRs = s.getMoreResults();
        }
    }

    static long scalarDirect(String sql, Object... params) throws Exception {
        try (Connection d = direct(); PreparedStatement ps = d.prepareStatement(sql)) {
            for (int i = 0; i < params.length; i++) {
                ps.setObject(i + 1, params[i]);
            }
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getLong(1);
            }
        }
    }

    static final String TYPES_DDL = "CREATE TABLE vals (id INT PRIMARY KEY, ti TINYINT, "
            + "si SMALLINT UNSIGNED, mi MEDIUMINT, i INT, bi BIGINT, ubi BIGINT UNSIGNED, fl FLOAT, "
            + "db DOUBLE, de DECIMAL(20,6), de0 DECIMAL(5,0), d DATE, dt DATETIME(6), "
            + "ts TIMESTAMP(3) NULL DEFAULT NULL, tm TIME(6), yr YEAR, ch CHAR(10), vc VARCHAR(100), "
            + "tx MEDIUMTEXT, bl LONGBLOB, vb VARBINARY(40), en ENUM('a','b','c'), st SET('x','y','z'), "
            + "bt BIT(8), js JSON) DEFAULT CHARSET = utf8mb4";

    static final String LITERAL_ROWS = "INSERT INTO vals VALUES "
            + "(1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
            + "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), "
            + "(2, -128, 65535, -8388608, -2147483648, -9223372036854775808, 18446744073709551615, "
            + "3.25, -1.7976931348623157e308, -12345678901234.123456, 99999, '1000-01-01', "
            + "'9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999', '-838:59:59.000000', 1901, "
            + "'fix', 'héllo wörld 世界 🚀', REPEAT('long text ', 300), X'00FF7F80', X'', 'c', 'x,z', "
            + "b'10100101', '{\"k\": [1, 2.5, \"ü\", null]}'), "
            + "(3, 0, 0, 0, 0, 0, 0, 0, 0, 0.000001, 0, '2024-02-29', '2024-02-29 12:34:56.000001', "
            + "'1970-01-01 00:00:01.000', '00:00:00', 2024, '', '', '', '', '', 'a', '', b'0', '[]')";

    static void bind(PreparedStatement ps, int id) throws SQLException {
        ps.setInt(1, id);
        ps.setInt(2, 7);
        ps.setLong(3, Long.MIN_VALUE);
        ps.setDouble(4, 2.5);
        ps.setBigDecimal(5, new BigDecimal("-123.456789"));
        ps.setString(6, "ünïcödé ✓ 𝄞");
        ps.setBytes(7, new byte[] {0, 1, (byte) 0xfe, (byte) 0xff});
        ps.setDate(8, java.sql.Date.valueOf("2001-02-03"));
        ps.setTimestamp(9, Timestamp.valueOf("2001-02-03 04:05:06.789"));
        ps.setTime(10, java.sql.Time.valueOf("04:05:06"));
        ps.setNull(11, java.sql.Types.INTEGER);
        ps.setBoolean(12, true);
        ps.setString(13, "");
        ps.setString(14, "it's \"quoted\" \\ back");
    }

    static final String PARAM_INSERT = "INSERT INTO vals (id, i, bi, db, de, vc, vb, d, dt, tm, mi, "
            + "ti, ch, tx) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

    // a. values, metadata, affected rows, errors, multi-results, parameters of every type
    static void types() throws Exception {
        try (Connection c = connect("");
                Connection sp = connect("useServerPrepStmts=true")) {
            c.setAutoCommit(false);
            sp.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.execute("DROP TABLE IF EXISTS vals");
                s.execute(TYPES_DDL);
                s.execute("DROP PROCEDURE IF EXISTS two_results");
                s.execute("CREATE PROCEDURE two_results(IN n INT) BEGIN SELECT n AS n, n * 2 AS twice; "
                        + "SELECT 'b' AS b, NULL AS c, n + 0.5 AS h; END");
                out("literal insert affected " + s.executeUpdate(LITERAL_ROWS));
                c.commit();
            }
            try (PreparedStatement ps = c.prepareStatement(PARAM_INSERT)) {
                bind(ps, 10);
                out("client-side prepared insert " + ps.executeUpdate());
            }
            c.commit();
            try (PreparedStatement ps = sp.prepareStatement(PARAM_INSERT)) {
                bind(ps, 11);
                out("server prepared insert " + ps.executeUpdate());
                for (int k = 1; k <= 14; k++) {
                    ps.setNull(k, java.sql.Types.VARCHAR);
                }
                ps.setInt(1, 12);
                out("server prepared insert of NULLs " + ps.executeUpdate());
            }
            byte[] big = new byte[256 * 12000];
            for (int k = 0; k < big.length; k++) {
                big[k] = (byte) k;
            }
            StringBuilder u = new StringBuilder();
            for (int k = 0; k < 100000; k++) {
                u.append('ü');
            }
            try (PreparedStatement ps = sp.prepareStatement("INSERT INTO vals (id, bl, tx) VALUES (?, ?, ?)")) {
                ps.setInt(1, 20);
                ps.setBytes(2, big);
                ps.setString(3, u.toString());
                out("big insert " + ps.executeUpdate());
            }
            sp.commit();
            try (Statement s = c.createStatement()) {
                // JDBC's default: found (matched) rows, not changed rows (CLIENT_FOUND_ROWS).
                out("update to the same value affected " + s.executeUpdate("UPDATE vals SET vc = vc WHERE id = 2"));
                c.rollback();
                try (ResultSet rs = s.executeQuery("SELECT * FROM vals WHERE id < 20 ORDER BY id")) {
                    printResult("text", rs);
                }
                try (ResultSet rs = s.executeQuery("SELECT id, length(bl), sha2(bl, 256), char_length(tx) FROM vals WHERE id = 20")) {
                    printResult("big", rs);
                }
                try (ResultSet rs = s.executeQuery("SELECT bl, tx FROM vals WHERE id = 20")) {
                    rs.next();
                    out("big read back " + sha(rs.getBytes(1)) + " " + rs.getString(2).length());
                }
                try (ResultSet rs = s.executeQuery("SELECT NULL, 1/3, 10/4, CAST(1 AS DECIMAL(10,3)), 2e0/3, "
                        + "CAST('2020-01-01' AS DATE) + INTERVAL 1 DAY, TIMEDIFF('10:00', '12:30:15'), "
                        + "_utf8mb4'ß' = 'ss', X'E282AC', 18446744073709551615 + 0, -0.0, b'1' + 0")) {
                    printResult("expr", rs);
                }
                c.commit();
            }
            try (PreparedStatement ps = sp.prepareStatement("SELECT * FROM vals WHERE id < ? ORDER BY id")) {
                ps.setInt(1, 20);
                try (ResultSet rs = ps.executeQuery()) {
                    printResult("binary", rs);
                }
                sp.commit();
            }
            String echo = "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?";
            for (Connection conn : new Connection[] {c, sp}) {
                try (PreparedStatement ps = conn.prepareStatement(echo)) {
                    bind(ps, 0);
                    try (ResultSet rs = ps.executeQuery()) {
                        printResult(conn == c ? "echo text" : "echo binary", rs);
                    }
                }
                conn.commit();
            }
            // Errors, and the connection goes on.
            for (String sql : new String[] {"INSERT INTO vals (id) VALUES (2)", "SELECT * FROM no_such_table", "SELEC 1"}) {
                try (Statement s = c.createStatement()) {
                    s.execute(sql);
                    out("no error: " + sql);
                } catch (SQLException e) {
                    out("error " + code(e) + " " + sql);
                }
                try (PreparedStatement ps = sp.prepareStatement(sql)) {
                    ps.execute();
                    out("server prepared: no error: " + sql);
                } catch (SQLException e) {
                    out("server prepared: error " + code(e) + " " + sql);
                }
            }
            c.rollback();
            sp.rollback();
            // Multi-statements (Connector/J asks for them with allowMultiQueries) and CALL.
            try (Connection m = connect("allowMultiQueries=true"); Statement s = m.createStatement()) {
                printAll("multi", s, s.execute("SELECT 1 AS one; SELECT 'two' AS t, NULL AS n; UPDATE vals SET i = i WHERE id = 1; SELECT 3"));
                try {
                    printAll("multi-err", s, s.execute("SELECT 1; SELECT * FROM no_such_table; SELECT 3"));
                } catch (SQLException e) {
                    out("multi-err error " + code(e));
                }
                try (ResultSet rs = s.executeQuery("SELECT 'still usable'")) {
                    rs.next();
                    out("multi after error " + rs.getString(1));
                }
            }
            // Query timeouts (Connector/J: SET STATEMENT max_statement_time=N FOR ..) hold for
            // their statement only; autocommit reads, so a replica may run them.
            try (Connection t = connect(""); Statement s = t.createStatement()) {
                s.setQueryTimeout(5);
                try (ResultSet rs = s.executeQuery("SELECT 7")) {
                    rs.next();
                    out("timed read " + rs.getInt(1));
                }
                s.setQueryTimeout(1);
                try (ResultSet rs = s.executeQuery("SELECT SLEEP(3)")) {
                    rs.next();
                    out("timed sleep " + rs.getInt(1));
                } catch (SQLException e) {
                    out("timed sleep error " + code(e));
                }
                s.setQueryTimeout(0);
                try (ResultSet rs = s.executeQuery("SELECT @@max_statement_time")) {
                    rs.next();
                    out("max_statement_time after timed statements " + rs.getString(1));
                }
            }
            try (Statement s = c.createStatement()) {
                printAll("single-statement client", s, s.execute("SELECT 1; SELECT 2"));
            } catch (SQLException e) {
                out("single-statement client: error " + code(e));
            }
            c.rollback();
            for (Connection conn : new Connection[] {c, sp}) {
                try (java.sql.CallableStatement cs = conn.prepareCall("{call two_results(?)}")) {
                    cs.setInt(1, 21);
                    printAll(conn == c ? "call" : "server prepared call", cs, cs.execute());
                }
                conn.commit();
            }
            // Warnings of the statement just run (getWarnings sends SHOW WARNINGS).
            try (Statement s = c.createStatement()) {
                s.executeQuery("SELECT 1 / 0, CAST('12abc' AS INTEGER)").close();
                List<String> ws = new ArrayList<>();
                for (SQLWarning w = s.getWarnings(); w != null; w = w.getNextWarning()) {
                    ws.add(w.getErrorCode() + " " + w.getMessage());
                }
                out("warnings inside a transaction " + ws);
                c.commit();
            }
            // Autocommit reads: a replica through the proxy.
            c.setAutoCommit(true);
            sp.setAutoCommit(true);
            long end = System.currentTimeMillis() + 10000;
            long n = 0;
            // Ten matches in a row: one proves only the replica that answered it.
            int streak = 0;
            while (System.currentTimeMillis() < end) {
                try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM vals")) {
                    rs.next();
                    n = rs.getLong(1);
                }
                streak = n == 7 ? streak + 1 : 0;
                if (streak >= 10) {
                    break;
                }
                if (streak == 0) {
                    Thread.sleep(50);
                }
            }
            out("rows visible in autocommit " + n);
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT * FROM vals WHERE id < 20 ORDER BY id")) {
                printResult("autocommit text", rs);
            }
            try (PreparedStatement ps = sp.prepareStatement("SELECT * FROM vals WHERE id < ? ORDER BY id")) {
                ps.setInt(1, 20);
                try (ResultSet rs = ps.executeQuery()) {
                    printResult("autocommit binary", rs);
                }
            }
        }
    }

    // b. transactions, and a client that vanishes inside one
    static long directV(int id) throws Exception {
        return scalarDirect("SELECT v FROM acct WHERE id = ?", id);
    }

    static String updateWithin(int id, int v) throws Exception {
        try (Connection c = connect("")) {
            long t0 = System.nanoTime();
            String err = "null";
            try (PreparedStatement ps = c.prepareStatement("UPDATE acct SET v = ? WHERE id = ?")) {
                ps.setInt(1, v);
                ps.setInt(2, id);
                ps.executeUpdate();
            } catch (SQLException e) {
                err = code(e);
            }
            long ms = (System.nanoTime() - t0) / 1_000_000;
            if (ms >= 1000) {
                log("update of row " + id + " took " + ms + " ms");
            }
            return (ms < 1000) + " error: " + err;
        }
    }

    static void tx() throws Exception {
        try (Connection c = connect("useServerPrepStmts=true")) {
            try (Statement s = c.createStatement()) {
                s.execute("DROP TABLE IF EXISTS acct");
                s.execute("CREATE TABLE acct (id INT PRIMARY KEY, v INT NOT NULL)");
                s.execute("INSERT INTO acct VALUES (1, 0), (2, 0), (3, 0), (4, 0)");
            }
            c.setAutoCommit(false);
            PreparedStatement upd = c.prepareStatement("UPDATE acct SET v = ? WHERE id = ?");
            PreparedStatement sel = c.prepareStatement("SELECT v FROM acct WHERE id = ?");
            upd.setInt(1, 1);
            upd.setInt(2, 1);
            upd.executeUpdate();
            sel.setInt(1, 1);
            try (ResultSet rs = sel.executeQuery()) {
                rs.next();
                out("inside the tx, the client sees " + rs.getLong(1));
            }
            out("inside the tx, the primary shows " + directV(1));
            c.commit();
            out("after COMMIT, the primary shows " + directV(1));
            upd.setInt(1, 5);
            upd.setInt(2, 2);
            upd.executeUpdate();
            try (Statement s = c.createStatement()) {
                s.executeUpdate("INSERT INTO acct VALUES (10, 10)");
            }
            c.rollback();
            out("after ROLLBACK, the primary shows " + directV(2) + " " + scalarDirect("SELECT count(*) FROM acct"));
            upd.setInt(1, 7);
            upd.executeUpdate();
            java.sql.Savepoint sp = c.setSavepoint("s1");
            upd.setInt(1, 8);
            upd.executeUpdate();
            c.rollback(sp);
            c.commit();
            out("after ROLLBACK TO SAVEPOINT and COMMIT, the primary shows " + directV(2));
            upd.setInt(1, 9);
            upd.setInt(2, 3);
            upd.executeUpdate();
            try (Statement s = c.createStatement()) {
                s.executeUpdate("INSERT INTO acct VALUES (1, 1)");
            } catch (SQLException e) {
                out("duplicate key inside the tx: " + code(e));
            }
            out("still inside the tx, the primary shows " + directV(3));
            c.commit();
            out("after COMMIT, the primary shows " + directV(3));
            // A batch inside a transaction, then rolled back; then committed.
            for (boolean commit : new boolean[] {false, true}) {
                for (int id = 1; id <= 4; id++) {
                    upd.setInt(1, 100 + id);
                    upd.setInt(2, id);
                    upd.addBatch();
                }
                out("batch " + Arrays.toString(upd.executeBatch()));
                if (commit) {
                    c.commit();
                } else {
                    c.rollback();
                }
                out("after batch and " + (commit ? "COMMIT" : "ROLLBACK") + ", the primary shows " + directV(1) + " " + directV(4));
            }
            // A read-only transaction (Spring's @Transactional(readOnly = true)).
            c.setReadOnly(true);
            try (ResultSet rs = sel.executeQuery()) {
                rs.next();
                out("read-only transaction read " + rs.getLong(1));
            }
            c.commit();
            c.setReadOnly(false);
            upd.close();
            sel.close();
        }
        Connection k = connect("");
        k.setAutoCommit(false);
        try (Statement s = k.createStatement()) {
            s.executeUpdate("UPDATE acct SET v = 99 WHERE id = 3");
        }
        k.abort(Executors.newSingleThreadExecutor()); // the socket closes, no COM_QUIT
        Thread.sleep(200);
        out("row locked by the dropped client updated within 1s: " + updateWithin(3, 33));
        out("the dropped client's update committed? " + (directV(3) == 99));
        ProcessBuilder pb = new ProcessBuilder(System.getProperty("java.home") + "/bin/java", "-cp",
                System.getProperty("java.class.path"), "-Duser.timezone=UTC", "MyScenarios", "hold_lock", "4");
        pb.redirectError(ProcessBuilder.Redirect.INHERIT);
        Process child = pb.start();
        java.io.BufferedReader r = new java.io.BufferedReader(new java.io.InputStreamReader(child.getInputStream()));
        out("child says " + r.readLine());
        child.destroyForcibly();
        child.waitFor(10, TimeUnit.SECONDS);
        Thread.sleep(200);
        out("row locked by the killed process updated within 1s: " + updateWithin(4, 44));
        out("the killed process's update committed? " + (directV(4) == 999));
        try (Connection d = direct(); Statement s = d.createStatement();
                ResultSet rs = s.executeQuery("SELECT id, v FROM acct ORDER BY id")) {
            StringBuilder sb = new StringBuilder();
            while (rs.next()) {
                sb.append(rs.getInt(1)).append('=').append(rs.getInt(2)).append(' ');
            }
            out("final " + sb.toString().trim());
        }
    }

    static void holdLock() throws Exception {
        Connection c = connect("");
        c.setAutoCommit(false);
        try (Statement s = c.createStatement()) {
            s.executeUpdate("UPDATE acct SET v = 999 WHERE id = " + Integer.parseInt(args[1]));
        }
        out("locked " + args[1]);
        Thread.sleep(60000);
    }

    // c. the driver's pool over a much smaller proxy pool
    static final String[][] SETTINGS = {{"ANSI_QUOTES,STRICT_TRANS_TABLES", "+03:00"}, {"NO_ZERO_DATE", "-07:30"}};

    static MariaDbPoolDataSource pool(int k, int size, String name) throws SQLException {
        String vars = "sql_mode='" + SETTINGS[k][0] + "',time_zone='" + SETTINGS[k][1] + "'";
        String extra = "pool=true&poolName=" + name + "&maxPoolSize=" + size + "&minPoolSize=0"
                + "&useServerPrepStmts=true&sessionVariables="
                + vars;
        return new MariaDbPoolDataSource(url(PORT, extra));
    }

    static void poolScenario() throws Exception {
        int threads = Integer.parseInt(args[1]);
        int perThread = Integer.parseInt(args[2]);
        int size = Integer.parseInt(args[3]);
        try (Connection c = connect(""); Statement s = c.createStatement()) {
            s.execute("DROP TABLE IF EXISTS counter");
            s.execute("DROP TABLE IF EXISTS ledger");
            s.execute("CREATE TABLE counter (id INT PRIMARY KEY, n INT NOT NULL)");
            s.execute("CREATE TABLE ledger (id INT AUTO_INCREMENT PRIMARY KEY, who INT, "
                    + "at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))");
            s.execute("INSERT INTO counter VALUES (1, 0)");
        }
        MariaDbPoolDataSource[] pools = {pool(0, size, "p0"), pool(1, size, "p1")};
        AtomicInteger committed = new AtomicInteger();
        AtomicInteger rolledBack = new AtomicInteger();
        AtomicInteger wrong = new AtomicInteger();
        AtomicInteger errors = new AtomicInteger();
        List<String> msgs = java.util.Collections.synchronizedList(new ArrayList<>());
        ExecutorService ex = Executors.newFixedThreadPool(threads);
        for (int t = 0; t < threads; t++) {
            final int tt = t;
            ex.submit(() -> {
                Random rnd = new Random(tt);
                String mode = SETTINGS[tt % 2][0];
                String zone = SETTINGS[tt % 2][1];
                for (int k = 0; k < perThread; k++) {
                    try (Connection c = pools[tt % 2].getConnection()) {
                        c.setAutoCommit(false);
                        String got;
                        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT @@sql_mode, @@time_zone")) {
                            rs.next();
                            got = rs.getString(1) + "|" + rs.getString(2);
                        }
                        try (PreparedStatement ps = c.prepareStatement("UPDATE counter SET n = n + 1 WHERE id = ?")) {
                            ps.setInt(1, 1);
                            ps.executeUpdate();
                        }
                        try (PreparedStatement ps = c.prepareStatement("INSERT INTO ledger (who) VALUES (?)")) {
                            ps.setInt(1, tt);
                            ps.executeUpdate();
                        }
                        String inside;
                        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT @@sql_mode, @@time_zone, @@in_transaction")) {
                            rs.next();
                            inside = rs.getString(1) + "|" + rs.getString(2) + "|" + rs.getString(3);
                        }
                        if (rnd.nextDouble() < 0.2) {
                            c.rollback();
                            rolledBack.incrementAndGet();
                        } else {
                            c.commit();
                            committed.incrementAndGet();
                        }
                        if (!got.equals(mode + "|" + zone) || !inside.equals(mode + "|" + zone + "|1")) {
                            wrong.incrementAndGet();
                            msgs.add("thread " + tt + ": " + got + " then " + inside);
                        }
                    } catch (Exception e) {
                        errors.incrementAndGet();
                        msgs.add("thread " + tt + " round " + k + ": " + e);
                    }
                }
            });
        }
        ex.shutdown();
        if (!ex.awaitTermination(150, TimeUnit.SECONDS)) {
            out("pool workers did not finish");
        }
        for (int i = 0; i < Math.min(10, msgs.size()); i++) {
            log(msgs.get(i));
        }
        out("committed: " + committed.get());
        out("rolled back: " + rolledBack.get());
        out("wrong settings: " + wrong.get());
        out("errors: " + errors.get());
        out("primary counter: " + scalarDirect("SELECT n FROM counter"));
        out("primary ledger rows: " + scalarDirect("SELECT count(*) FROM ledger"));
        for (MariaDbPoolDataSource p : pools) {
            p.close();
        }
    }

    // g. what a client asks about its own last statement, with other clients around
    static void ownResults() throws Exception {
        int threads = Integer.parseInt(args[1]);
        int rounds = Integer.parseInt(args[2]);
        try (Connection c = connect(""); Statement s = c.createStatement()) {
            s.execute("DROP TABLE IF EXISTS own");
            s.execute("CREATE TABLE own (id INT AUTO_INCREMENT PRIMARY KEY, who INT)");
            s.execute("INSERT INTO own (who) VALUES (0), (0), (0)");
        }
        Map<String, Integer> counts = new TreeMap<>();
        List<String> msgs = java.util.Collections.synchronizedList(new ArrayList<>());
        ExecutorService ex = Executors.newFixedThreadPool(threads);
        for (int t = 0; t < threads; t++) {
            final int tt = t;
            ex.submit(() -> {
                java.util.function.BiConsumer<String, Object[]> note = (what, gd) -> {
                    boolean good = (Boolean) gd[0];
                    synchronized (counts) {
                        counts.merge(what + ": " + (good ? "as directly" : "NOT the own statement"), 1, Integer::sum);
                        if (!good && msgs.size() < 12) {
                            msgs.add(what + ": " + gd[1]);
                        }
                    }
                };
                try (Connection c = connect(""); Statement s = c.createStatement()) {
                    for (int r = 0; r < rounds; r++) {
                        s.executeUpdate("INSERT INTO own (who) VALUES (" + tt + ")", Statement.RETURN_GENERATED_KEYS);
                        long mine;
                        try (ResultSet rs = s.getGeneratedKeys()) {
                            rs.next();
                            mine = rs.getLong(1);
                        }
                        long last;
                        try (ResultSet rs = s.executeQuery("SELECT LAST_INSERT_ID()")) {
                            rs.next();
                            last = rs.getLong(1);
                        }
                        note.accept("LAST_INSERT_ID() after an INSERT", new Object[] {last == mine, last + " vs " + mine});
                        s.executeUpdate("UPDATE own SET who = who WHERE id <= 3");
                        try (ResultSet rs = s.executeQuery("SELECT ROW_COUNT()")) {
                            rs.next();
                            long rc = rs.getLong(1);
                            note.accept("ROW_COUNT() after an UPDATE of 3 rows", new Object[] {rc == 3, rc});
                        }
                        s.executeQuery("SELECT SQL_CALC_FOUND_ROWS id FROM own WHERE id <= 3 LIMIT 1").close();
                        try (ResultSet rs = s.executeQuery("SELECT FOUND_ROWS()")) {
                            rs.next();
                            long fr = rs.getLong(1);
                            note.accept("FOUND_ROWS() after SQL_CALC_FOUND_ROWS", new Object[] {fr == 3, fr});
                        }
                        s.executeQuery("SELECT 1 / 0, CAST('12abc' AS INTEGER)").close();
                        List<Integer> ws = new ArrayList<>();
                        for (SQLWarning w = s.getWarnings(); w != null; w = w.getNextWarning()) {
                            ws.add(w.getErrorCode());
                        }
                        note.accept("getWarnings() after a statement with 2 warnings", new Object[] {ws.equals(Arrays.asList(1365, 1292)), ws});
                        s.executeQuery("SELECT 1 / 0").close();
                        try (ResultSet rs = s.executeQuery("SELECT @@warning_count")) {
                            rs.next();
                            long wc = rs.getLong(1);
                            note.accept("@@warning_count after a statement with 1 warning", new Object[] {wc == 1, wc});
                        }
                    }
                } catch (Exception e) {
                    synchronized (counts) {
                        counts.merge("errors", 1, Integer::sum);
                    }
                    msgs.add("thread " + tt + ": " + e);
                }
            });
        }
        ex.shutdown();
        if (!ex.awaitTermination(100, TimeUnit.SECONDS)) {
            out("workers did not finish");
        }
        for (String m : msgs) {
            log(m);
        }
        for (Map.Entry<String, Integer> e : counts.entrySet()) {
            out(e.getKey() + ": " + e.getValue());
        }
    }

    // d. prepared statements across pooled connections
    static void prepared() throws Exception {
        int threads = Integer.parseInt(args[1]);
        int rounds = Integer.parseInt(args[2]);
        try (Connection c = connect(""); Statement s = c.createStatement()) {
            s.execute("DROP TABLE IF EXISTS ps");
            s.execute("CREATE TABLE ps (id INT PRIMARY KEY, s VARCHAR(40), d DECIMAL(10,2))");
        }
        MariaDbPoolDataSource pool = pool(0, 3, "prep");
        AtomicInteger ok = new AtomicInteger();
        AtomicInteger mismatch = new AtomicInteger();
        AtomicInteger errors = new AtomicInteger();
        List<String> msgs = java.util.Collections.synchronizedList(new ArrayList<>());
        ExecutorService ex = Executors.newFixedThreadPool(threads);
        for (int t = 0; t < threads; t++) {
            final int tt = t;
            ex.submit(() -> {
                for (int r = 0; r < rounds; r++) {
                    int i = tt * 1000 + r;
                    try (Connection c = pool.getConnection()) {
                        c.setAutoCommit(false);
                        String a;
                        String b;
                        try (PreparedStatement ps = c.prepareStatement("SELECT ? + 0, CONCAT(?, '-x'), ? IS NULL")) {
                            ps.setInt(1, i);
                            ps.setString(2, "s" + i);
                            ps.setNull(3, java.sql.Types.INTEGER);
                            try (ResultSet rs = ps.executeQuery()) {
                                rs.next();
                                a = rs.getString(1) + "|" + rs.getString(2) + "|" + rs.getInt(3);
                            }
                            // Same statement, other parameter types.
                            ps.setBigDecimal(1, new BigDecimal("1.5"));
                            ps.setInt(2, i);
                            ps.setString(3, "n");
                            try (ResultSet rs = ps.executeQuery()) {
                                rs.next();
                                b = rs.getString(1) + "|" + rs.getString(2) + "|" + rs.getInt(3);
                            }
                        }
                        try (PreparedStatement ps = c.prepareStatement("INSERT INTO ps VALUES (?, ?, ?)")) {
                            ps.setInt(1, i);
                            ps.setString(2, "v" + i);
                            ps.setBigDecimal(3, new BigDecimal(i).divide(new BigDecimal(4)));
                            ps.executeUpdate();
                        }
                        c.commit();
                        String cc;
                        try (PreparedStatement ps = c.prepareStatement("SELECT s, d FROM ps WHERE id = ?")) {
                            ps.setInt(1, i);
                            try (ResultSet rs = ps.executeQuery()) {
                                rs.next();
                                cc = rs.getString(1) + "|" + rs.getBigDecimal(2);
                            }
                        }
                        c.commit();
                        BigDecimal want = new BigDecimal(i).divide(new BigDecimal(4)).setScale(2);
                        if (a.equals(i + "|s" + i + "-x|1") && b.equals("1.5|" + i + "-x|0") && cc.equals("v" + i + "|" + want)) {
                            ok.incrementAndGet();
                        } else {
                            mismatch.incrementAndGet();
                            msgs.add(tt + "/" + r + ": " + a + " " + b + " " + cc);
                        }
                    } catch (Exception e) {
                        errors.incrementAndGet();
                        msgs.add(tt + "/" + r + ": " + e);
                    }
                }
            });
        }
        ex.shutdown();
        if (!ex.awaitTermination(150, TimeUnit.SECONDS)) {
            out("workers did not finish");
        }
        for (int i = 0; i < Math.min(10, msgs.size()); i++) {
            log(msgs.get(i));
        }
        out("ok: " + ok.get());
        out("mismatch: " + mismatch.get());
        out("errors: " + errors.get());
        out("primary rows: " + scalarDirect("SELECT count(*) FROM ps"));
        pool.close();
        // One PreparedStatement object reused across transactions, then executeBatch.
        try (Connection c = connect("useServerPrepStmts=true")) {
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement("UPDATE ps SET s = ? WHERE id = ?")) {
                ps.setString(1, "first");
                ps.setInt(2, 0);
                ps.executeUpdate();
                c.commit();
                for (int k = 0; k < 5; k++) {
                    ps.setString(1, "later" + k);
                    ps.setInt(2, k);
                    ps.executeUpdate();
                    c.commit();
                }
                for (int k = 0; k < 5; k++) {
                    ps.setString(1, "batch" + k);
                    ps.setInt(2, k);
                    ps.addBatch();
                }
                out("batch " + Arrays.toString(ps.executeBatch()));
                c.commit();
            }
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO ps VALUES (?, ?, ?)")) {
                for (int k = 0; k < 3; k++) {
                    ps.setInt(1, 900000 + k);
                    ps.setString(2, "dup");
                    ps.setBigDecimal(3, BigDecimal.ONE);
                    ps.addBatch();
                }
                ps.setInt(1, 0);
                ps.setString(2, "dup");
                ps.setBigDecimal(3, BigDecimal.ONE);
                ps.addBatch();
                try {
                    ps.executeBatch();
                    out("batch with a duplicate: no error");
                } catch (BatchUpdateException e) {
                    out("batch with a duplicate: " + code(e) + " " + Arrays.toString(e.getUpdateCounts()));
                }
                c.rollback();
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT s FROM ps WHERE id <= ? ORDER BY id")) {
                ps.setInt(1, 4);
                List<String> got = new ArrayList<>();
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        got.add(rs.getString(1));
                    }
                }
                out("later transactions " + got);
                c.commit();
            }
        }
        out("primary rows after the batches: " + scalarDirect("SELECT count(*) FROM ps"));
    }

    // e. a session that leaves state behind
    static void dirty() throws Exception {
        String how = args[1];
        String txArg = args[2];
        String vars = "sql_mode='ANSI',time_zone='+05:45',max_statement_time=7";
        Connection c = connect("useServerPrepStmts=true&sessionVariables=" + vars);
        try (Statement s = c.createStatement()) {
            c.setTransactionIsolation(Connection.TRANSACTION_SERIALIZABLE);
            s.execute("SET @secret = 'left behind', @leak_n = 42");
            s.execute("CREATE TEMPORARY TABLE tmp_leak (a INT)");
            s.executeQuery("SELECT GET_LOCK('sy_leak_lock', 0)").close();
            s.execute("PREPARE leak_stmt FROM 'SELECT 1'");
            s.execute("SET NAMES latin1");
            s.execute("SET wait_timeout = 77, sql_select_limit = 3, lc_time_names = 'de_DE'");
            PreparedStatement ps = c.prepareStatement("SELECT ? + 1");
            ps.setInt(1, 1);
            ps.executeQuery().close(); // a server statement, never closed
            if (txArg.equals("tx")) {
                c.setAutoCommit(false);
                s.executeUpdate("UPDATE leak_t SET v = v + 1 WHERE id = 1");
            }
            try (ResultSet rs = s.executeQuery("SELECT @@in_transaction")) {
                rs.next();
                out("dirty: " + txArg + " " + rs.getInt(1));
            }
        }
        if (how.equals("drop")) {
            c.abort(Executors.newSingleThreadExecutor());
        } else {
            c.close();
        }
    }

    // f. routing
    static void routing() throws Exception {
        int n = Integer.parseInt(args[1]);
        try (Connection c = connect("useServerPrepStmts=true")) {
            try (Statement s = c.createStatement()) {
                for (int k = 0; k < n; k++) {
                    try (ResultSet rs = s.executeQuery("SELECT @@server_id")) {
                        rs.next();
                        out("autocommit text read on " + rs.getInt(1));
                    }
                }
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT @@server_id, ? + 0")) {
                for (int k = 0; k < n; k++) {
                    ps.setInt(1, k);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        out("autocommit prepared read on " + rs.getInt(1));
                    }
                }
            }
            // A query timeout: Connector/J puts SET STATEMENT max_statement_time=5 FOR before
            // the text.
            try (Statement s = c.createStatement()) {
                s.setQueryTimeout(5);
                for (int k = 0; k < n; k++) {
                    try (ResultSet rs = s.executeQuery("SELECT @@server_id")) {
                        rs.next();
                        out("autocommit text read with a query timeout on " + rs.getInt(1));
                    }
                }
            }
            try (Statement s = c.createStatement()) {
                s.execute("DROP TABLE IF EXISTS r");
                s.execute("CREATE TABLE r (id INT AUTO_INCREMENT PRIMARY KEY, s INT)");
            }
            c.setAutoCommit(false);
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO r (s) SELECT @@server_id");
                    PreparedStatement sel = c.prepareStatement("SELECT @@server_id")) {
                for (int k = 0; k < 3; k++) {
                    try (ResultSet rs = sel.executeQuery()) {
                        rs.next();
                        out("read inside a transaction on " + rs.getInt(1));
                    }
                    ins.executeUpdate();
                    c.commit();
                    // Spring's read-only transaction: setReadOnly(true) around it.
                    c.setReadOnly(true);
                    try (ResultSet rs = sel.executeQuery()) {
                        rs.next();
                        out("read-only transaction read on " + rs.getInt(1));
                    }
                    c.commit();
                    c.setReadOnly(false);
                }
            }
            c.setAutoCommit(true);
            try (Statement s = c.createStatement()) {
                s.setQueryTimeout(5);
                s.executeUpdate("INSERT INTO r (s) SELECT @@server_id");
                s.setQueryTimeout(0);
                try (ResultSet rs = s.executeQuery("SELECT @@server_id FROM r LIMIT 1 FOR UPDATE")) {
                    rs.next();
                    out("locking read on " + rs.getInt(1));
                }
            }
            try (Connection d = direct(); Statement s = d.createStatement();
                    ResultSet rs = s.executeQuery("SELECT DISTINCT s FROM r ORDER BY s")) {
                List<Integer> ids = new ArrayList<>();
                while (rs.next()) {
                    ids.add(rs.getInt(1));
                }
                out("writes executed on " + ids.toString().replace(" ", ""));
            }
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                for (int k = 0; k < 3; k++) {
                    try (ResultSet rs = s.executeQuery("SELECT @@server_id")) {
                        rs.next();
                        out("autocommit-off read on " + rs.getInt(1));
                    }
                    c.commit();
                }
            }
        }
    }

    static HikariDataSource hikari(int size, String isolation) {
        HikariConfig hc = new HikariConfig();
        hc.setJdbcUrl(url(PORT, ""));
        hc.setMaximumPoolSize(size);
        hc.setMinimumIdle(size);
        hc.setConnectionTimeout(20_000);
        if (isolation != null) {
            hc.setTransactionIsolation(isolation);
        }
        return new HikariDataSource(hc);
    }

    // k. Spring's transactions over HikariCP on Connector/J, as a Spring application runs them:
    // a TransactionTemplate with an isolation level makes DataSourceTransactionManager call
    // setTransactionIsolation before the transaction and again after it (SET SESSION
    // TRANSACTION ISOLATION LEVEL ...), a read-only one setReadOnly (SET SESSION TRANSACTION
    // READ ONLY) and back; setAutoCommit(false) and back around each; a Hikari pool with
    // transactionIsolation sets it once per connection and puts it back when a borrower
    // changed it. Every connection of both pools open at once, over a small proxy pool: each
    // thread must see its own isolation level and access mode in and out of its transactions,
    // a plain connection the server's between rounds, and the rows committed must be all.
    static void spring() throws Exception {
        int threads = Integer.parseInt(args[1]);
        int rounds = Integer.parseInt(args[2]);
        int half = (threads + 1) / 2;
        String[] levels = {"SERIALIZABLE", "REPEATABLE_READ", "READ_COMMITTED"};
        try (Connection plain = connect("");
                Statement s = plain.createStatement()) {
            s.execute("DROP TABLE IF EXISTS sp_t");
            s.execute("CREATE TABLE sp_t (id INT AUTO_INCREMENT PRIMARY KEY, who INT)");
        }
        try (Connection plain = connect("");
                HikariDataSource perTx = hikari(half, null);
                HikariDataSource serializable = hikari(threads - half, "TRANSACTION_SERIALIZABLE")) {
            CyclicBarrier step = new CyclicBarrier(threads + 1);
            List<List<String>> said = new ArrayList<>();
            List<Thread> ts = new ArrayList<>();
            String show = "SELECT CONCAT(@@tx_isolation, ' ', @@tx_read_only)";
            for (int t = 0; t < threads; t++) {
                List<String> lines = new ArrayList<>();
                said.add(lines);
                int i = t;
                HikariDataSource ds = i < half ? perTx : serializable;
                Thread th = new Thread(() -> {
                    JdbcTemplate jt = new JdbcTemplate(ds);
                    DataSourceTransactionManager tm = new DataSourceTransactionManager(ds);
                    TransactionTemplate tt = new TransactionTemplate(tm);
                    TransactionTemplate ro = new TransactionTemplate(tm);
                    ro.setReadOnly(true);
                    try {
                        for (int r = 0; r < rounds; r++) {
                            step.await(60, TimeUnit.SECONDS);
                            String level = levels[(i + r) % levels.length];
                            if (i < half) {
                                tt.setIsolationLevelName("ISOLATION_" + level);
                                ro.setIsolationLevelName("ISOLATION_" + level);
                            }
                            lines.add("round " + r + ": read-only " + ro.execute(st -> jt.queryForObject(show, String.class)));
                            lines.add("round " + r + ": outside " + jt.queryForObject(show, String.class));
                            String in = tt.execute(st -> {
                                jt.update("INSERT INTO sp_t (who) VALUES (?)", i);
                                return jt.queryForObject(show, String.class);
                            });
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
            try (Statement s = plain.createStatement()) {
                for (int r = 0; r < rounds; r++) {
                    step.await(60, TimeUnit.SECONDS);
                    try (ResultSet rs = s.executeQuery(show)) {
                        rs.next();
                        out("plain connection, round " + r + ": " + rs.getString(1));
                    }
                }
            } catch (BrokenBarrierException | TimeoutException e) {
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
        try (Connection d = direct(); Statement s = d.createStatement();
                ResultSet rs = s.executeQuery("SELECT GROUP_CONCAT(CONCAT(who, ':', n) ORDER BY who"
                        + " SEPARATOR ' ') FROM (SELECT who, count(*) n FROM sp_t GROUP BY who) c")) {
            rs.next();
            out("committed: " + rs.getString(1));
        }
    }

    // l. Statement.cancel(), as Connector/J sends it: KILL QUERY <the connection id of the
    // handshake> on a connection of its own to the same address. It stops its own statement
    // (a SLEEP, a long read on a replica, a statement inside a transaction, which stays open
    // as the server leaves it), the connection goes on, and three neighbours running
    // statements meanwhile are never stopped.
    static void cancelAfter(Statement s, long ms) {
        Thread t = new Thread(() -> {
            try {
                Thread.sleep(ms);
                s.cancel();
            } catch (Exception e) {
                log("cancel: " + e);
            }
        });
        t.setDaemon(true);
        t.start();
    }

    static void cancelled(String label, Statement s, String sql) {
        cancelled(label, s, () -> s.execute(sql));
    }

    static void cancelled(String label, Statement s, java.util.concurrent.Callable<Boolean> run) {
        cancelAfter(s, 300);
        long start = System.nanoTime();
        try {
            boolean rows = run.call();
            String first = "";
            if (rows) {
                try (ResultSet rs = s.getResultSet()) {
                    rs.next();
                    first = rs.getString(1);
                }
            }
            out(label + ": ran, " + first + ", within 5s=" + (System.nanoTime() - start < 5_000_000_000L));
        } catch (SQLException e) {
            out(label + ": error " + code(e) + " within 5s=" + (System.nanoTime() - start < 5_000_000_000L));
        } catch (Exception e) {
            out(label + ": " + e);
        }
    }

    static void cancel() throws Exception {
        try (Connection s0 = connect(""); Statement s = s0.createStatement()) {
            s.execute("DROP TABLE IF EXISTS cn");
            s.execute("CREATE TABLE cn (id INT PRIMARY KEY, who INT)");
        }
        java.util.concurrent.atomic.AtomicBoolean stop = new java.util.concurrent.atomic.AtomicBoolean();
        List<String> neighbourErrors = java.util.Collections.synchronizedList(new ArrayList<>());
        List<Thread> neighbours = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            final int who = i;
            Thread t = new Thread(() -> {
                try (Connection n = connect(""); Statement s = n.createStatement()) {
                    for (int k = 0; !stop.get(); k++) {
                        try {
                            if (who == 0) {
                                s.executeUpdate("INSERT INTO cn VALUES (" + (1000 + k) + ", 0)");
                            } else {
                                s.executeQuery("SELECT SLEEP(0.02)").close();
                            }
                        } catch (SQLException e) {
                            neighbourErrors.add(who + ": " + code(e));
                        }
                    }
                } catch (SQLException e) {
                    neighbourErrors.add(who + ": connect " + code(e));
                }
            });
            t.start();
            neighbours.add(t);
        }
        try (Connection c = connect(""); Statement s = c.createStatement()) {
            cancelled("sleep", s, "SELECT SLEEP(30)");
            cancelled("long read", s, "SELECT BENCHMARK(2000000000, MD5('x'))");
            try (ResultSet rs = s.executeQuery("SELECT 1")) {
                rs.next();
                out("then: " + rs.getInt(1));
            }
            try (Connection sp = connect("useServerPrepStmts=true");
                    PreparedStatement ps = sp.prepareStatement("SELECT SLEEP(?)")) {
                ps.setInt(1, 30);
                cancelled("server prepared sleep", ps, ps::execute);
                ps.setInt(1, 0);
                ps.executeQuery().close();
                out("server prepared, then: ran");
            }
            c.setAutoCommit(false);
            s.executeUpdate("INSERT INTO cn VALUES (1, 1)");
            cancelled("in a transaction", s, "SELECT BENCHMARK(2000000000, MD5('x'))");
            s.executeUpdate("INSERT INTO cn VALUES (2, 1)");
            c.commit();
            c.setAutoCommit(true);
            // A cancel with nothing running: nothing to stop.
            s.cancel();
            try (ResultSet rs = s.executeQuery("SELECT 2")) {
                rs.next();
                out("after an idle cancel: " + rs.getInt(1));
            }
        }
        stop.set(true);
        for (Thread t : neighbours) {
            t.join(30_000);
        }
        out("neighbour errors: " + neighbourErrors);
        try (Connection d = direct(); Statement s = d.createStatement();
                ResultSet rs = s.executeQuery("SELECT GROUP_CONCAT(id ORDER BY id) FROM cn WHERE who = 1")) {
            rs.next();
            out("committed: " + rs.getString(1));
        }
    }

    public static void main(String[] a) throws Exception {
        args = a;
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(170_000);
                log("MyScenarios " + a[0] + ": deadline passed");
                Runtime.getRuntime().halt(3);
            } catch (InterruptedException e) {
                // finished in time
            }
        });
        watchdog.setDaemon(true);
        watchdog.start();
        switch (a[0]) {
            case "cancel":
                cancel();
                break;
            case "types":
                types();
                break;
            case "tx":
                tx();
                break;
            case "hold_lock":
                holdLock();
                break;
            case "pool":
                poolScenario();
                break;
            case "own_results":
                ownResults();
                break;
            case "prepared":
                prepared();
                break;
            case "dirty":
                dirty();
                break;
            case "routing":
                routing();
                break;
            case "spring":
                spring();
                break;
            default:
                throw new IllegalArgumentException("unknown scenario " + a[0]);
        }
        out("END");
        System.exit(0);
    }
}
