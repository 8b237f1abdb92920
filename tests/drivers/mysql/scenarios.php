<?php
// PHP's mysqlnd (PDO and mysqli: WordPress, Laravel, Symfony), run by tests/mysql_drivers.rs
// through the proxy and directly against the MariaDB primary; the outputs must be equal.
//
// Usage: php scenarios.php SCENARIO   (server under test: SY_HOST, SY_PORT, SY_USER,
// SY_PASSWORD, SY_DB)
//
// `app`: PDO as Laravel configures it (native prepares, ERRMODE_EXCEPTION): typed values and
// column metadata, transactions, errors; PDO with emulated prepares and multi-statements,
// an unbuffered query given up early, a prepared CALL with an OUT parameter bound to a user
// variable read afterwards; mysqli: a read-only cursor fetched a row at a time
// (COM_STMT_FETCH), thread_id against CONNECTION_ID(), change_user (accepted and refused),
// use_result, multi_query, the UPDATE info string.
// `settings`: connect-time settings (Laravel's among them) kept per connection.
// `kill`: mysqli::kill (COM_PROCESS_KILL).
// `big`: a value over the server's max_allowed_packet gets the server's own error.
//
// Prints one fact a line, then END. Connections have timeouts; the harness kills the process
// after its deadline.

mysqli_report(MYSQLI_REPORT_OFF);
$PORT = getenv("SY_PORT");
$PW = getenv("SY_PASSWORD");
$DB = getenv("SY_DB");
$USER = getenv("SY_USER");
$HOST = getenv("SY_HOST") ?: "127.0.0.1";

function show($label, $v)
{
    echo $label, " ", json_encode($v), "\n";
}

function scenario_app($HOST, $PORT, $USER, $PW, $DB)
{
    // PDO as Laravel uses it: emulated prepares off? Laravel: ATTR_EMULATE_PREPARES false
    $pdo = new PDO("mysql:host=$HOST;port=$PORT;dbname=$DB;charset=utf8mb4", $USER, $PW, [
      PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION, PDO::ATTR_EMULATE_PREPARES => false, PDO::ATTR_TIMEOUT => 5]);
    $pdo->exec("DROP TABLE IF EXISTS php_t");
    $pdo->exec("CREATE TABLE php_t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(50), n DECIMAL(10,2), d DATETIME(3), b BLOB, j JSON)");
    $st = $pdo->prepare("INSERT INTO php_t (v, n, d, b, j) VALUES (?, ?, ?, ?, ?)");
    for ($i = 0; $i < 3; $i++) { $st->execute(["v$i", "$i.25", "2026-01-0" . ($i+1) . " 10:00:00.123", "\x00\x01bin$i", json_encode(["k" => $i])]); }
    show("lastInsertId", $pdo->lastInsertId());
    $q = $pdo->prepare("/* switchyard:primary */ SELECT id, v, n, d, b, j FROM php_t WHERE id >= ? ORDER BY id");
    $q->execute([1]);
    $rows = $q->fetchAll(PDO::FETCH_NUM);
    show("rows", array_map(fn($r) => array_map(fn($x) => is_string($x) ? bin2hex($x) : $x, $r), $rows));
    for ($c = 0; $c < $q->columnCount(); $c++) { $m = $q->getColumnMeta($c); show("meta$c", [$m['native_type'] ?? null, $m['name'], $m['len'], $m['precision']]); }
    // transactions
    $pdo->beginTransaction();
    $pdo->exec("UPDATE php_t SET v = 'tx' WHERE id = 1");
    show("inTx", $pdo->inTransaction());
    $pdo->rollBack();
    show("after rollback", $pdo->query("/* switchyard:primary */ SELECT v FROM php_t WHERE id = 1")->fetchColumn());
    $pdo->beginTransaction();
    $pdo->exec("UPDATE php_t SET v = 'committed' WHERE id = 2");
    $pdo->commit();
    show("after commit", $pdo->query("/* switchyard:primary */ SELECT v FROM php_t WHERE id = 2")->fetchColumn());
    // errors
    try { $pdo->query("SELECT nope FROM php_t"); } catch (PDOException $e) { show("err", [$e->getCode(), $e->errorInfo[1]]); }
    // emulated prepares + multi statement
    $pdo2 = new PDO("mysql:host=$HOST;port=$PORT;dbname=$DB", $USER, $PW, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION, PDO::ATTR_EMULATE_PREPARES => true, PDO::MYSQL_ATTR_MULTI_STATEMENTS => true]);
    $s = $pdo2->query("SELECT 1 AS a; SELECT 2 AS b, 3 AS c");
    do { show("multi", $s->fetchAll(PDO::FETCH_ASSOC)); } while ($s->nextRowset());
    // unbuffered query
    $pdo2->setAttribute(PDO::MYSQL_ATTR_USE_BUFFERED_QUERY, false);
    $u = $pdo2->query("/* switchyard:primary */ SELECT id FROM php_t ORDER BY id");
    show("unbuffered first", $u->fetch(PDO::FETCH_NUM));
    $u->closeCursor();
    show("after unbuffered", $pdo2->query("/* switchyard:primary */ SELECT COUNT(*) FROM php_t")->fetchColumn());
    // stored procedure with OUT param via user var
    $pdo->exec("DROP PROCEDURE IF EXISTS php_p");
    $pdo->exec("CREATE PROCEDURE php_p(IN a INT, OUT b INT) BEGIN SET b = a + 1; SELECT a * 10 AS ten; END");
    $c = $pdo->prepare("CALL php_p(?, @out)");
    $c->execute([4]);
    do { show("call rows", $c->fetchAll(PDO::FETCH_NUM)); } while ($c->nextRowset());
    show("out", $pdo->query("SELECT @out")->fetchColumn());
    // mysqli: prepared with bind_result, store_result, cursor
    $m = new mysqli($HOST, $USER, $PW, $DB, (int)$PORT);
    $m->options(MYSQLI_OPT_READ_TIMEOUT, 10);
    $st = $m->prepare("/* switchyard:primary */ SELECT id, v FROM php_t WHERE id > ? ORDER BY id");
    $st->attr_set(MYSQLI_STMT_ATTR_CURSOR_TYPE, MYSQLI_CURSOR_TYPE_READ_ONLY);
    $st->attr_set(MYSQLI_STMT_ATTR_PREFETCH_ROWS, 1);
    $min = 0; $st->bind_param("i", $min);
    $ok = $st->execute(); show("cursor exec", [$ok, $st->errno]);
    $st->bind_result($id, $v); $got = [];
    while ($st->fetch()) { $got[] = [$id, $v]; }
    show("cursor rows", $got);
    $st->close();
    show("mysqli thread", $m->thread_id > 0);
    show("mysqli ping", $m->ping());
    $r = $m->query("SELECT CONNECTION_ID() = " . $m->thread_id); show("thread_id agrees", $r->fetch_row());
    $m->change_user($USER, $PW, $DB); 
    $r = $m->query("SELECT DATABASE()"); show("after change_user", $r->fetch_row());
    show("change_user bad", [$m->change_user($USER, "nope", $DB), $m->errno]);
    $r = $m->query("SELECT 1"); show("after bad change_user", $r ? $r->fetch_row() : $m->errno);
    $m->real_query("SELECT SLEEP(0)"); $res = $m->use_result(); show("use_result", $res->fetch_row()); $res->free();
    show("multi_query", $m->multi_query("SELECT 1; SELECT 2"));
    do { if ($res = $m->store_result()) { show("mq", $res->fetch_all()); $res->free(); } } while ($m->more_results() && $m->next_result());
    show("info", [$m->query("UPDATE php_t SET v = v"), $m->affected_rows, $m->info]);
    $m->close();
}

// A value larger than the server's max_allowed_packet (16 MiB here): the server's 1153, as a
// prepared statement's parameter and in a query's text; a new connection goes on.
function scenario_big($HOST, $PORT, $USER, $PW, $DB)
{
    $opts = [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION, PDO::ATTR_TIMEOUT => 10];
    $pdo = new PDO("mysql:host=$HOST;port=$PORT;dbname=$DB", $USER, $PW, $opts);
    $pdo->exec("DROP TABLE IF EXISTS bigp");
    $pdo->exec("CREATE TABLE bigp (id INT PRIMARY KEY, b LONGBLOB)");
    $big = str_repeat("abcdefgh", 3 * 1024 * 1024);
    foreach ([false, true] as $emulate) {
        $opts[PDO::ATTR_EMULATE_PREPARES] = $emulate;
        $pdo = new PDO("mysql:host=$HOST;port=$PORT;dbname=$DB", $USER, $PW, $opts);
        try {
            $st = $pdo->prepare("INSERT INTO bigp VALUES (1, ?)");
            $st->execute([$big]);
            show("24 MiB, emulated " . json_encode($emulate), $st->rowCount());
        } catch (PDOException $e) {
            show("24 MiB, emulated " . json_encode($emulate), $e->errorInfo[1]);
        }
    }
    $pdo = new PDO("mysql:host=$HOST;port=$PORT;dbname=$DB", $USER, $PW, $opts);
    $st = $pdo->prepare("INSERT INTO bigp VALUES (2, ?)");
    $st->execute([str_repeat("x", 8 << 20)]);
    $len = $pdo->query("/* switchyard:primary */ SELECT LENGTH(b) FROM bigp WHERE id = 2");
    show("8 MiB", $len->fetchColumn());
}

// Two connections with Laravel's connect-time statements (SET NAMES with COLLATE, sql_mode,
// time_zone) and another set, used in turns: each sees its own collation (which decides
// whether 'a' = 'A'), character set, mode and zone every time; the same text prepared under
// two sql_modes keeps its two meanings. Then Laravel's nested transactions (savepoints).
function scenario_settings($HOST, $PORT, $USER, $PW, $DB)
{
    $opts = [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION, PDO::ATTR_EMULATE_PREPARES => false];
    $a = new PDO("mysql:host=$HOST;port=$PORT;dbname=$DB", $USER, $PW, $opts);
    $b = new PDO("mysql:host=$HOST;port=$PORT;dbname=$DB", $USER, $PW, $opts);
    $c = new PDO("mysql:host=$HOST;port=$PORT;dbname=$DB", $USER, $PW, $opts);
    $a->exec("set names 'utf8mb4' collate 'utf8mb4_unicode_ci'");
    $a->exec("set session sql_mode='ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,"
        . "NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'");
    $a->exec('set time_zone="+00:00"');
    $b->exec("SET NAMES latin1 COLLATE latin1_bin");
    $b->exec("set session sql_mode='ANSI'");
    $b->exec("set time_zone='+05:30'");
    $c->exec("SET NAMES latin1");
    // MySQL Connector/J's connect statement: results in the column's own character set.
    $d = new PDO("mysql:host=$HOST;port=$PORT;dbname=$DB;charset=utf8mb4", $USER, $PW, $opts);
    $d->exec("SET character_set_results = NULL");
    // A character set from the handshake only (mysqlnd names the DSN's, or mysqli's option,
    // in it): cp1251 for a Cyrillic application, latin2 for a Central European one.
    $e = new PDO("mysql:host=$HOST;port=$PORT;dbname=$DB;charset=cp1251", $USER, $PW, $opts);
    // Several SET NAMES in one multi-statement text: the last one stands.
    $g = new PDO("mysql:host=$HOST;port=$PORT;dbname=$DB", $USER, $PW, [
        PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
        PDO::ATTR_EMULATE_PREPARES => true,
        PDO::MYSQL_ATTR_MULTI_STATEMENTS => true,
    ]);
    $st = $g->query("SET NAMES latin1; SELECT 'names; collate x'; "
        . "SET NAMES utf8mb4 COLLATE utf8mb4_bin");
    while ($st->nextRowset()) {
    }
    $st->closeCursor();
    $f = new mysqli();
    $f->options(MYSQLI_SET_CHARSET_NAME, "latin2");
    $f->real_connect($HOST, $USER, $PW, $DB, (int)$PORT);
    for ($i = 0; $i < 4; $i++) {
        foreach (['a' => $a, 'b' => $b, 'c' => $c, 'd' => $d, 'e' => $e, 'g' => $g] as $n => $conn) {
            $r = $conn->query("SELECT @@collation_connection, @@character_set_client, "
                . "@@character_set_results, @@sql_mode, @@time_zone, 'a' = 'A', "
                . "CONVERT(_utf8mb4 0xC3A9 USING latin1)")->fetch(PDO::FETCH_NUM);
            $r[6] = bin2hex($r[6]);
            show("$n $i", $r);
            $s = $conn->prepare("SELECT ? = 'A'");
            $s->execute(['a']);
            show("$n $i prepared", $s->fetch(PDO::FETCH_NUM));
        }
        $r = $f->query("SELECT @@collation_connection, @@character_set_client, HEX('\xe9')");
        show("f $i", $r->fetch_row());
        // A statement the proxy rewrites (CONNECTION_ID() becomes its id) keeps its bytes.
        $r = $f->query("SELECT CONNECTION_ID() > 0, HEX('\xe9')");
        show("f $i rewritten", $r->fetch_row());
    }
    // Prepared statements whose text is not UTF-8 (cp1251 'Я' and 'Ю'): each keeps its own
    // bytes on whichever server connection prepares it again.
    foreach (["\xdf", "\xde", "\xdf", "\xde"] as $k => $ch) {
        $s = $e->prepare("SELECT HEX('$ch'), ? AS n");
        for ($i = 0; $i < 4; $i++) {
            $s->execute([$i]);
            show("cp1251 $k $i", $s->fetch(PDO::FETCH_NUM));
        }
    }
    // The same text prepared under two sql_modes means two things ('a' || 'b' concatenates
    // with PIPES_AS_CONCAT, is a logical OR without): each connection's statement keeps its
    // own meaning, whichever server connection runs it.
    $p = new PDO("mysql:host=$HOST;port=$PORT;dbname=$DB", $USER, $PW, $opts);
    $p->exec("SET SESSION sql_mode = 'PIPES_AS_CONCAT'");
    foreach ([$p, $c, $p, $c] as $k => $conn) {
        $s = $conn->prepare("SELECT 'a' || ? AS v");
        for ($i = 0; $i < 6; $i++) {
            $s->execute(['b']);
            show("pipes $k $i", $s->fetch(PDO::FETCH_NUM));
        }
    }
    $a->exec("DROP TABLE IF EXISTS sp");
    $a->exec("CREATE TABLE sp (x int)");
    $a->beginTransaction();
    $a->exec("INSERT INTO sp VALUES (1)");
    $a->exec("SAVEPOINT trans2");
    $a->exec("INSERT INTO sp VALUES (2)");
    $a->exec("ROLLBACK TO SAVEPOINT trans2");
    $a->commit();
    show("savepoints", $a->query("/* switchyard:primary */ SELECT x FROM sp")->fetchAll(PDO::FETCH_COLUMN));
}

// mysqli::kill (COM_PROCESS_KILL) of another connection running a query sent with
// MYSQLI_ASYNC: the victim's query stops at once and its connection is gone; the killer goes on.
function scenario_kill($HOST, $PORT, $USER, $PW, $DB)
{
    $a = new mysqli($HOST, $USER, $PW, $DB, (int)$PORT);
    $b = new mysqli($HOST, $USER, $PW, $DB, (int)$PORT);
    $a->query("SELECT SLEEP(5)", MYSQLI_ASYNC);
    usleep(300000);
    $t = microtime(true);
    show("kill", [$b->kill($a->thread_id), $b->errno]);
    $links = $errors = $rejects = [$a];
    mysqli_poll($links, $errors, $rejects, 10);
    $r = $a->reap_async_query();
    show("victim", [$r ? $r->fetch_row() : $a->errno, microtime(true) - $t < 2.5]);
    $r = $a->query("SELECT 1");
    show("victim next", $r ? $r->fetch_row() : $a->errno);
    $r = $b->query("SELECT 1");
    show("killer next", $r ? $r->fetch_row() : $b->errno);
    show("unknown id", [$b->kill(987654), $b->errno]);
}

$scenario = $argv[1] ?? "";
$fn = "scenario_$scenario";
if (!function_exists($fn)) {
    fwrite(STDERR, "unknown scenario $scenario\n");
    exit(2);
}
$fn($HOST, $PORT, $USER, $PW, $DB);
echo "END\n";
