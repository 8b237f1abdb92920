<?php
// PHP's pdo_pgsql (on libpq), used as Laravel and Symfony/Doctrine use it, run by
// tests/pg_drivers.rs through the proxy and directly against the primary; the outputs must be
// equal.
//
// Usage: php scenarios.php SCENARIO [ARGS]   (server under test: SY_HOST, SY_PORT, SY_USER,
// SY_PASSWORD, SY_DB)
//
// `laravel WORKERS ROUNDS`: WORKERS connections opened as Laravel's PostgresConnector opens
// them (native prepares: every statement is a named `pdo_stmt_N` prepared with PQprepare,
// run with PQexecPrepared and dropped with a SQL `DEALLOCATE` when PHP frees it; then
// `set names`, `set time zone` and a double-quoted `set search_path` each prepared and
// executed; every third connection sets its encoding as Doctrine DBAL does, `SET NAMES
// 'UTF8'` as a plain statement), used in turn as php-fpm workers use theirs (one process,
// so a connection held by the proxy for a client that does not give it back stalls the
// others): reads with parameters, transactions with `insert ... returning`, `lastInsertId`
// with the sequence named, one rolled back, one failing on a duplicate key; a plain
// connection opened after each round must see the server's defaults.
//
// Prints one fact a line, then END. Connections have timeouts; the harness kills the process
// after its deadline.

$PORT = getenv("SY_PORT");
$PW = getenv("SY_PASSWORD");
$DB = getenv("SY_DB");
$USER = getenv("SY_USER");
$HOST = getenv("SY_HOST") ?: "127.0.0.1";

function show($label, $v)
{
    echo $label, " ", json_encode($v), "\n";
}

function connect($HOST, $PORT, $USER, $PW, $DB, $app)
{
    // Laravel's default PDO options, and its DSN with the application name.
    $opts = [
        PDO::ATTR_CASE => PDO::CASE_NATURAL,
        PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
        PDO::ATTR_ORACLE_NULLS => PDO::NULL_NATURAL,
        PDO::ATTR_STRINGIFY_FETCHES => false,
        PDO::ATTR_EMULATE_PREPARES => false,
        PDO::ATTR_TIMEOUT => 5,
    ];
    $dsn = "pgsql:host=$HOST;port=$PORT;dbname=$DB;application_name='$app'";
    return new PDO($dsn, $USER, $PW === "" ? null : $PW, $opts);
}

// What one connection sees of its own session.
function session_of($pdo)
{
    return $pdo->query("select current_setting('TimeZone'), current_setting('search_path'), "
        . "current_setting('client_encoding'), current_setting('application_name'), "
        . "current_setting('statement_timeout')")->fetch(PDO::FETCH_NUM);
}

function scenario_laravel($HOST, $PORT, $USER, $PW, $DB, $args)
{
    $workers = (int)($args[0] ?? 6);
    $rounds = (int)($args[1] ?? 4);
    $zones = ["Europe/Paris", "Asia/Tokyo", "America/New_York", "UTC", "Asia/Kolkata", "Africa/Cairo"];
    $conns = [];
    for ($w = 0; $w < $workers; $w++) {
        $pdo = connect($HOST, $PORT, $USER, $PW, $DB, "worker$w");
        if ($w % 3 == 2) {
            // Doctrine DBAL's pdo_pgsql driver with a `charset`: a plain statement.
            $pdo->exec("SET NAMES 'UTF8'");
        } else {
            // Laravel's PostgresConnector: configureEncoding.
            $pdo->prepare("set names 'utf8'")->execute();
        }
        // configureTimezone, configureSearchPath.
        $pdo->prepare("set time zone '" . $zones[$w % count($zones)] . "'")->execute();
        $pdo->prepare('set search_path to "lv_app"')->execute();
        if ($w % 2 == 1) {
            // An application's own connect-time setting, as a plain statement.
            $pdo->exec("set statement_timeout to " . (10000 + $w));
        }
        $conns[] = $pdo;
    }
    for ($r = 0; $r < $rounds; $r++) {
        foreach ($conns as $w => $pdo) {
            show("r$r w$w session", session_of($pdo));
            // A model query: a parameterised select, its statement freed at once.
            $q = $pdo->prepare('select "id", "who", "note", "created_at" at time zone \'UTC\' as "at" '
                . 'from "lv_item" where "who" = ? order by "id"');
            $q->execute([$w]);
            show("r$r w$w items", $q->fetchAll(PDO::FETCH_NUM));
            $q = null;
            // DB::transaction(fn () => Item::create(...)->update(...)).
            $pdo->beginTransaction();
            $ins = $pdo->prepare('insert into "lv_item" ("who", "note", "created_at") values (?, ?, ?) returning "id"');
            $ins->execute([$w, "round $r", "2026-01-0" . ($r % 9 + 1) . " 12:00:00"]);
            $id = $ins->fetchColumn();
            $seq = $pdo->lastInsertId("lv_item_id_seq");
            show("r$r w$w inserted", $id == $seq);
            $up = $pdo->prepare('update "lv_item" set "note" = ? where "id" = ?');
            $up->execute(["round $r of $w", $id]);
            show("r$r w$w updated", $up->rowCount());
            $tz = $pdo->query("select to_char(timestamptz '2026-06-01 00:00:00+00', 'YYYY-MM-DD HH24:MI TZ')")->fetchColumn();
            show("r$r w$w in transaction", $tz);
            if (($r + $w) % 5 == 4) {
                $pdo->rollBack();
                show("r$r w$w", "rolled back");
            } else {
                $pdo->commit();
            }
            if (($r + $w) % 7 == 3) {
                // A transaction that fails: the statement that failed is freed inside the
                // failed block, its DEALLOCATE refused as the server refuses it.
                $pdo->beginTransaction();
                try {
                    $dup = $pdo->prepare('insert into "lv_item" ("id", "who", "note") values (?, ?, ?)');
                    $dup->execute([1, $w, "duplicate"]);
                    show("r$r w$w duplicate", "inserted?");
                } catch (PDOException $e) {
                    show("r$r w$w duplicate", [$e->getCode(), $pdo->inTransaction()]);
                }
                $dup = null;
                $pdo->rollBack();
            }
            $n = $pdo->prepare('select count(*) from "lv_item" where "who" = ?');
            $n->execute([$w]);
            show("r$r w$w count", $n->fetchColumn());
        }
        // A connection with no settings of its own sees the server's defaults.
        $plain = connect($HOST, $PORT, $USER, $PW, $DB, "plain");
        $s = session_of($plain);
        show("r$r plain", $s);
        $plain = null;
    }
    foreach ($conns as $w => $pdo) {
        show("w$w last session", session_of($pdo));
    }
    $check = connect($HOST, $PORT, $USER, $PW, $DB, "check");
    $rows = $check->query('select "who", "note" from "lv_app"."lv_item" order by "id"')->fetchAll(PDO::FETCH_NUM);
    show("rows", $rows);
}

$scenario = $argv[1] ?? "";
$fn = "scenario_$scenario";
if (!function_exists($fn)) {
    fwrite(STDERR, "unknown scenario $scenario\n");
    exit(2);
}
$fn($HOST, $PORT, $USER, $PW, $DB, array_slice($argv, 2));
echo "END\n";
