//! Read/write splitting against a real primary with two streaming replicas.

mod support;

use std::collections::HashMap;
use std::time::Duration;
use support::raw;
use support::*;

fn routed_proxy(db: &str, extra: &str) -> Proxy {
    let c = cluster();
    create_db_on(c, db);
    let p = start_proxy(&routing_config(c, db, extra));
    // Let the first health round finish.
    std::thread::sleep(Duration::from_millis(600));
    p
}

#[tokio::test]
async fn reads_go_to_both_replicas_and_writes_to_the_primary() {
    let p = routed_proxy("t_split", "");
    let c = cluster();
    let (primary, replicas) = (c.primary_port(), c.replica_ports());
    let client = connect(&p.conn_str("t_split")).await;
    client
        .batch_execute("CREATE TABLE w (id serial primary key, port int); CREATE SEQUENCE s")
        .await
        .unwrap();
    c.wait_replay_caught_up(Duration::from_secs(10)).unwrap();

    let mut seen: HashMap<u16, usize> = HashMap::new();
    for _ in 0..1000 {
        *seen
            .entry(served_by(&client, "SELECT inet_server_port()").await)
            .or_default() += 1;
    }
    assert_eq!(
        seen.get(&primary),
        None,
        "a read reached the primary: {seen:?}"
    );
    for r in &replicas {
        let n = seen.get(r).copied().unwrap_or(0);
        assert!(n >= 300, "replica {r} served {n} of 1000 reads: {seen:?}");
    }
    // Extended protocol reads too (tokio-postgres prepares named statements).
    let stmt = client.prepare("SELECT inet_server_port()").await.unwrap();
    for _ in 0..50 {
        let port: i32 = client.query_one(&stmt, &[]).await.unwrap().get(0);
        assert_ne!(port as u16, primary);
    }

    for _ in 0..50 {
        let port = served_by(
            &client,
            "INSERT INTO w (port) SELECT inet_server_port() RETURNING port",
        )
        .await;
        assert_eq!(port, primary);
        let port = served_by(
            &client,
            "UPDATE w SET port = inet_server_port() WHERE id = 1 RETURNING port",
        )
        .await;
        assert_eq!(port, primary);
        let port = served_by(
            &client,
            "WITH d AS (DELETE FROM w WHERE id < 0 RETURNING 1) SELECT inet_server_port()",
        )
        .await;
        assert_eq!(port, primary);
        let port = served_by(
            &client,
            "SELECT inet_server_port() FROM (SELECT nextval('s')) x",
        )
        .await;
        assert_eq!(port, primary);
    }
    for _ in 0..20 {
        client.batch_execute("BEGIN").await.unwrap();
        let a = served_by(&client, "SELECT inet_server_port()").await;
        let b = served_by(
            &client,
            "INSERT INTO w (port) SELECT inet_server_port() RETURNING port",
        )
        .await;
        let c2 = served_by(&client, "SELECT inet_server_port()").await;
        client.batch_execute("COMMIT").await.unwrap();
        assert_eq!((a, b, c2), (primary, primary, primary));
    }
    // A read-only transaction may use a replica, and stays on one backend.
    client.batch_execute("BEGIN READ ONLY").await.unwrap();
    let a = served_by(&client, "SELECT inet_server_port()").await;
    let b = served_by(&client, "SELECT inet_server_port()").await;
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(a, b);
    assert!(replicas.contains(&a));
    // So may one that declares itself read-only as its first statement.
    for _ in 0..10 {
        client.batch_execute("BEGIN").await.unwrap();
        client
            .batch_execute("SET TRANSACTION READ ONLY")
            .await
            .unwrap();
        let a = served_by(&client, "SELECT inet_server_port()").await;
        let ro = served_by(
            &client,
            "SELECT CASE WHEN current_setting('transaction_read_only') = 'on' THEN 1 ELSE 0 END",
        )
        .await;
        client.batch_execute("COMMIT").await.unwrap();
        assert!(replicas.contains(&a), "read-only transaction went to {a}");
        assert_eq!(ro, 1);
    }
    // A plain BEGIN still sends the whole transaction to the primary, and an empty one works.
    client.batch_execute("BEGIN").await.unwrap();
    assert_eq!(
        served_by(&client, "SELECT inet_server_port()").await,
        primary
    );
    client.batch_execute("COMMIT").await.unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    client.batch_execute("ROLLBACK").await.unwrap();
    let err = client.batch_execute("BEGIN; SELECT 1/0").await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO)
    );
    client.batch_execute("ROLLBACK").await.unwrap();
}

/// A hot standby refuses serializable transactions ("cannot use serializable mode in a hot
/// standby"), read-only ones included, which the primary serves (`pg_dump
/// --serializable-deferrable` begins `SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY,
/// DEFERRABLE`): each form goes to the primary, as does every read of a client whose
/// transactions are serializable by default; other read-only transactions still use a replica.
/// All of these failed on a replica before.
#[tokio::test]
async fn serializable_transactions_are_served_by_the_primary() {
    let p = routed_proxy("t_serial", "");
    let c = cluster();
    let (primary, replicas) = (c.primary_port(), c.replica_ports());
    let client = connect(&p.conn_str("t_serial")).await;
    let in_tx = |begin: &'static str, then: &'static str| {
        let client = &client;
        async move {
            client.batch_execute(begin).await.unwrap();
            if !then.is_empty() {
                client.batch_execute(then).await.unwrap();
            }
            let port = served_by(client, "SELECT inet_server_port()").await;
            let level: String = client
                .query_one("SELECT current_setting('transaction_isolation')", &[])
                .await
                .unwrap()
                .get(0);
            client.batch_execute("COMMIT").await.unwrap();
            (port, level)
        }
    };
    for (begin, then) in [
        ("BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY", ""),
        (
            "START TRANSACTION READ ONLY ISOLATION LEVEL SERIALIZABLE DEFERRABLE",
            "",
        ),
        (
            "BEGIN",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE",
        ),
        (
            "BEGIN ISOLATION LEVEL SERIALIZABLE",
            "SET TRANSACTION READ ONLY",
        ),
    ] {
        for _ in 0..5 {
            let got = in_tx(begin, then).await;
            assert_eq!(
                got,
                (primary, "serializable".to_string()),
                "{begin}; {then}"
            );
        }
    }
    // (A replica that lags behind the other tests' writes leaves the read set for a moment:
    // one of a few tries must reach a replica.)
    let mut tries = Vec::new();
    for _ in 0..20 {
        tries.push(in_tx("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", "").await);
        if replicas.contains(&tries.last().unwrap().0) {
            break;
        }
    }
    assert!(replicas.contains(&tries.last().unwrap().0), "{tries:?}");
    // Serializable by default (pgjdbc's setTransactionIsolation, carried to every connection
    // the client gets): reads and read-only transactions on the primary.
    for set in [
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET default_transaction_isolation = 'serializable'",
    ] {
        client.batch_execute(set).await.unwrap();
        for _ in 0..5 {
            assert_eq!(
                served_by(&client, "SELECT inet_server_port()").await,
                primary,
                "{set}"
            );
            let got = in_tx("BEGIN READ ONLY", "").await;
            assert_eq!(got, (primary, "serializable".to_string()), "{set}");
        }
        client.batch_execute("RESET ALL").await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..20 {
            seen.push(served_by(&client, "SELECT inet_server_port()").await);
            if replicas.contains(seen.last().unwrap()) {
                break;
            }
        }
        assert!(replicas.contains(seen.last().unwrap()), "{seen:?}");
    }
    // The same default as a startup parameter.
    let startup = connect(&format!(
        "{} options='-c default_transaction_isolation=serializable'",
        p.conn_str("t_serial")
    ))
    .await;
    for _ in 0..5 {
        assert_eq!(
            served_by(&startup, "SELECT inet_server_port()").await,
            primary
        );
    }
}

#[tokio::test]
async fn hints_and_the_session_route_setting_override_classification() {
    let p = routed_proxy("t_hints", "");
    let c = cluster();
    let client = connect(&p.conn_str("t_hints")).await;
    for _ in 0..20 {
        assert_eq!(
            served_by(
                &client,
                "/* switchyard:primary */ SELECT inet_server_port()"
            )
            .await,
            c.primary_port()
        );
    }
    client
        .batch_execute("SET switchyard.route = 'primary'")
        .await
        .unwrap();
    for _ in 0..20 {
        assert_eq!(
            served_by(&client, "SELECT inet_server_port()").await,
            c.primary_port()
        );
    }
    client
        .batch_execute("SET switchyard.route = 'auto'")
        .await
        .unwrap();
    for _ in 0..20 {
        assert_ne!(
            served_by(&client, "SELECT inet_server_port()").await,
            c.primary_port()
        );
    }
    let rows = client
        .simple_query("SHOW switchyard.backends")
        .await
        .unwrap();
    let n = rows
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(n, 3);
}

#[test]
fn routing_off_sends_everything_to_the_primary() {
    let p = routed_proxy("t_nosplit", "read_write_split = false");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = connect(&p.conn_str("t_nosplit")).await;
        for _ in 0..50 {
            assert_eq!(
                served_by(&client, "SELECT inet_server_port()").await,
                cluster().primary_port()
            );
        }
    });
}

/// GET a path from the admin API (HTTP/1.1, Connection: close): (status, body).
fn admin_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    admin_request(addr, "GET", path)
}

/// Sum of the samples of `name` whose labels include all of `labels`, parsed by the
/// reference Python Prometheus parser.
fn prometheus_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let cond: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("s.labels.get({k:?}) == {v:?}"))
        .collect();
    let cond = if cond.is_empty() {
        "True".to_string()
    } else {
        cond.join(" and ")
    };
    let script = format!(
        "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\n\
         print(sum(s.value for f in p(sys.stdin.read()) for s in f.samples if s.name == {name:?} and {cond}))\n"
    );
    let mut child = std::process::Command::new("python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser rejected /metrics"
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_the_reads_routed_to_replicas() {
    let c = cluster();
    create_db_on(c, "t_metrics");
    let text = format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        routing_config(c, "t_metrics", "")
    );
    let cfg = switchyard::config::Config::from_toml(&text).unwrap();
    let server = switchyard::app::Server::start(cfg).unwrap();
    let admin = server.admin_addr.unwrap();
    let port = server.pg_addr.unwrap().port();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, _) = tokio::task::spawn_blocking(move || admin_get(admin, "/readyz"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let client = connect(&format!(
        "host=127.0.0.1 port={port} user=app password=secret dbname=t_metrics"
    ))
    .await;
    for _ in 0..25 {
        served_by(&client, "SELECT inet_server_port()").await;
    }
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS m (x int); INSERT INTO m VALUES (1)")
        .await
        .unwrap();
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = tokio::task::spawn_blocking(move || admin_get(admin, "/metrics"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let replica_reads = prometheus_sum(
        &body,
        "switchyard_statements_routed_total",
        &[("route", "replica"), ("reason", "read")],
    );
    assert_eq!(replica_reads, 25.0, "{body}");
    // The first login with these settings borrows a connection from any backend (a replica
    // when one is up) to learn what the server reports at login.
    let login = prometheus_sum(
        &body,
        "switchyard_statements_routed_total",
        &[("reason", "login")],
    );
    let primary = prometheus_sum(
        &body,
        "switchyard_statements_routed_total",
        &[("route", "primary")],
    );
    assert_eq!((login, primary), (1.0, 1.0), "{body}");
    let up = prometheus_sum(&body, "switchyard_backend_up", &[]);
    assert_eq!(up, 3.0, "{body}");
    let (status, body) = tokio::task::spawn_blocking(move || admin_get(admin, "/status"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        body.contains("replica") && v.is_object() || v.is_array(),
        "{body}"
    );
    server.shutdown();
}

/// Writes in every disguise, each written at random (comments before it, keyword case,
/// whitespace, a trailing semicolon) and sent at random as a simple Query or through the
/// extended protocol, in autocommit through a proxy whose reads go to hot standbys: none may
/// reach a replica. A standby refuses every write ("read-only transaction" or "during
/// recovery"), so one that got there shows as that error. Reads in disguise must still work.
#[tokio::test]
async fn writes_in_any_disguise_never_reach_a_replica() {
    use rand::{Rng, SeedableRng};
    let p = routed_proxy("t_disguise", "[routing]\nwrite_functions = [\"f_ins\"]\n");
    let c = cluster();
    let client = connect(&p.conn_str("t_disguise")).await;
    client
        .batch_execute(
            "CREATE TABLE w (id serial primary key, port int); CREATE SEQUENCE s; \
             CREATE TABLE scratch (i int); \
             CREATE MATERIALIZED VIEW mv AS SELECT count(*) FROM w; \
             CREATE FUNCTION f_ins() RETURNS int LANGUAGE sql AS \
               'INSERT INTO w (port) VALUES (7) RETURNING id'; \
             CREATE PROCEDURE p_ins() LANGUAGE sql AS 'INSERT INTO w (port) VALUES (8)';",
        )
        .await
        .unwrap();
    c.wait_replay_caught_up(Duration::from_secs(10)).unwrap();
    let writes = [
        "INSERT INTO w (port) VALUES (1)",
        "insert into w (port) select 2 returning id",
        "INSERT INTO w (id, port) VALUES (-1, 1) ON CONFLICT DO NOTHING",
        "WITH x AS (INSERT INTO w (port) VALUES (2) RETURNING id) SELECT count(*) FROM x",
        "WITH x AS (UPDATE w SET port = port WHERE id < 0 RETURNING 1) SELECT 1",
        "WITH RECURSIVE r(n) AS (SELECT 1) , d AS (DELETE FROM w WHERE id < 0 RETURNING 1) SELECT * FROM r",
        "SELECT nextval('s')",
        "SELECT setval('s', 100)",
        "SELECT * FROM w, LATERAL (SELECT nextval('s')) n LIMIT 1",
        "SELECT * FROM w WHERE id < 0 FOR UPDATE",
        "SELECT * FROM w WHERE id < 0 FOR NO KEY UPDATE",
        "SELECT * FROM w WHERE id < 0 FOR SHARE",
        "SELECT * FROM w WHERE id < 0 FOR KEY SHARE SKIP LOCKED",
        "SELECT txid_current()",
        "SELECT pg_current_xact_id()",
        "EXPLAIN ANALYZE INSERT INTO w (port) VALUES (3)",
        "DO $$ BEGIN INSERT INTO w (port) VALUES (4); END $$",
        "CALL p_ins()",
        "SELECT f_ins()",
        "SELECT * FROM f_ins()",
        "NOTIFY ch, 'x'",
        "SELECT pg_notify('ch', 'x')",
        "ANALYZE w",
        "VACUUM scratch",
        "TRUNCATE scratch",
        "MERGE INTO w USING (SELECT 1 AS id) s ON w.id = s.id \
         WHEN MATCHED THEN UPDATE SET port = w.port",
        "REFRESH MATERIALIZED VIEW mv",
        "COMMENT ON TABLE scratch IS 'x'",
        "CREATE TABLE IF NOT EXISTS scratch2 (i int)",
        "DROP TABLE IF EXISTS scratch3",
        "UPDATE w SET port = port WHERE id < 0",
        "DELETE FROM w WHERE id < 0",
        "(SELECT 1) UNION ALL (SELECT nextval('s'))",
        "SELECT lo_unlink(lo_create(0))",
    ];
    let reads = [
        "SELECT count(*) FROM w",
        "WITH x AS (SELECT id FROM w) SELECT count(*) FROM x",
        "SELECT 'INSERT INTO w VALUES (1)'",
        "SELECT 1 /* UPDATE w SET port = 1 */",
        "VALUES (1), (2)",
        "TABLE mv",
    ];
    let seed = prop_seed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let disguise = |sql: &str, rng: &mut rand::rngs::StdRng| -> String {
        let mut out = String::new();
        match rng.gen_range(0..5) {
            0 => out.push_str("/* hello */ "),
            1 => out.push_str("-- note\n"),
            2 => out.push_str("\n\t  "),
            3 => out.push_str("/* a /* nested */ comment */\n"),
            _ => {}
        }
        // Keyword case: the whole text upper or lower, outside quoted parts.
        let text = match rng.gen_range(0..3) {
            0 => sql.to_string(),
            n => {
                let mut quoted = false;
                sql.chars()
                    .map(|ch| {
                        if ch == '\'' {
                            quoted = !quoted;
                        }
                        match (quoted, n) {
                            (true, _) => ch,
                            (false, 1) => ch.to_ascii_uppercase(),
                            _ => ch.to_ascii_lowercase(),
                        }
                    })
                    .collect()
            }
        };
        out.push_str(&text);
        if rng.gen_bool(0.3) {
            out.push(';');
        }
        out
    };
    let mut bad = Vec::new();
    for round in 0..400 {
        let write = rng.gen_bool(0.8);
        let base = if write {
            writes[rng.gen_range(0..writes.len())]
        } else {
            reads[rng.gen_range(0..reads.len())]
        };
        let sql = disguise(base, &mut rng);
        // VACUUM cannot run in the extended protocol's implicit transaction block.
        let simple = rng.gen_bool(0.5) || base.starts_with("VACUUM");
        let r = if simple {
            client.simple_query(&sql).await.map(|_| ())
        } else {
            client.execute(sql.as_str(), &[]).await.map(|_| ())
        };
        if std::env::var("SWITCHYARD_PROP_TRACE").is_ok() {
            eprintln!(
                "round {round} simple={simple} {sql:?} -> {:?}",
                r.as_ref().err().map(|e| e.to_string())
            );
        }
        if let Err(e) = r {
            let msg = e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_else(|| e.to_string());
            if msg.contains("read-only transaction") || msg.contains("during recovery") {
                bad.push(format!(
                    "round {round} ({}): {sql:?} reached a replica: {msg}",
                    if simple { "simple" } else { "extended" }
                ));
            } else {
                panic!("seed {seed}: round {round}: {sql:?} failed on its own: {msg}");
            }
        }
    }
    assert!(bad.is_empty(), "seed {seed}:\n{}", bad.join("\n"));
}

/// A driver closes a prepared statement with Close + Sync between batches (tokio-postgres
/// does when a `Statement` is dropped); with no server connection held the proxy answers
/// both itself. That Sync must end the batch as a server's would: it did not, and the next
/// simple-Query read took a replica connection that then stayed for every later simple Query,
/// writes included (they failed there as "read-only transaction").
#[tokio::test]
async fn a_statement_closed_between_batches_does_not_keep_writes_on_a_replica() {
    let p = routed_proxy("t_close_sync", "");
    let c = cluster();
    let client = connect(&p.conn_str("t_close_sync")).await;
    client
        .batch_execute("CREATE TABLE w (id serial primary key, port int)")
        .await
        .unwrap();
    c.wait_replay_caught_up(Duration::from_secs(10)).unwrap();
    let (primary, replicas) = (c.primary_port(), c.replica_ports());
    for _ in 0..5 {
        // Prepared, executed, dropped: Parse/Describe/Sync, Bind/Execute/Sync, Close/Sync.
        client.execute("SELECT 1", &[]).await.unwrap();
        let read = served_by(&client, "SELECT inet_server_port()").await;
        assert!(replicas.contains(&read), "the read went to {read}");
        let write = served_by(
            &client,
            "INSERT INTO w (port) SELECT inet_server_port() RETURNING port",
        )
        .await;
        assert_eq!(
            write, primary,
            "a write after a closed statement went to {write}"
        );
    }
}

/// The same with a Close the client sends without a Sync, then simple Queries (the protocol
/// lets a Query follow): the read may use a replica, the write after it may not.
#[tokio::test]
async fn a_close_without_sync_then_queries_does_not_keep_writes_on_a_replica() {
    let c = cluster();
    create_db_on(c, "t_close_nosync");
    let config = routing_config(c, "t_close_nosync", "").replace(
        "[[cluster]]",
        "[[user]]\nname = \"raw\"\nauth = \"trust\"\n\n[[cluster]]",
    );
    let p = start_proxy(&config);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let client = connect(&p.conn_str("t_close_nosync")).await;
    client
        .batch_execute("CREATE TABLE w (id serial primary key, port int)")
        .await
        .unwrap();
    c.wait_replay_caught_up(Duration::from_secs(10)).unwrap();
    let (primary, replicas) = (c.primary_port(), c.replica_ports());
    let port_of = |msgs: &[raw::Msg]| -> u16 {
        let row = msgs.iter().find(|m| m.tag == b'D').expect("a row");
        row.row()[0].as_deref().unwrap().parse().unwrap()
    };
    let mut r = raw::Raw::connect(p.port, "raw", "t_close_nosync", &[]).await;
    for round in 0..5 {
        let name = format!("s{round}");
        let mut batch = raw::msg::parse(&name, "SELECT 1");
        batch.extend(raw::msg::sync());
        r.send(&batch).await;
        r.until_ready(1).await;
        let mut batch = raw::msg::close_statement(&name);
        batch.extend(raw::msg::query("SELECT inet_server_port()"));
        r.send(&batch).await;
        let read = port_of(&r.until_ready(1).await);
        assert!(replicas.contains(&read), "the read went to {read}");
        r.send(&raw::msg::query(
            "INSERT INTO w (port) SELECT inet_server_port() RETURNING port",
        ))
        .await;
        let answer = r.until_ready(1).await;
        assert!(
            answer.iter().all(|m| m.tag != b'E'),
            "round {round}: the write failed: {:?}",
            answer.iter().find(|m| m.tag == b'E').map(|m| m.field(b'M'))
        );
        assert_eq!(port_of(&answer), primary, "round {round}");
    }
}

/// The servers named by their Unix-domain sockets (`<dir>/.s.PGSQL.<port>`) instead of
/// host:port: the health checker finds them, reads spread over the replicas, writes reach the
/// primary, and a cancel reaches the replica running the statement over its socket.
#[tokio::test]
async fn servers_named_by_their_unix_sockets_split_reads_take_writes_and_cancel() {
    let c = cluster();
    let db = "t_unix";
    create_db_on(c, db);
    let socket = |node: usize| {
        c.data_dir(node)
            .join(format!(".s.PGSQL.{}", c.port(node)))
            .display()
            .to_string()
    };
    let tcp = routing_config(c, db, "");
    let primary_line = format!("primary = \"127.0.0.1:{}\"", c.primary_port());
    let replicas: Vec<String> = (1..c.node_count())
        .map(|n| format!("\"{}\"", socket(n)))
        .collect();
    let replicas_line = tcp
        .lines()
        .find(|l| l.starts_with("replicas = "))
        .unwrap()
        .to_owned();
    let text = tcp
        .replace(&primary_line, &format!("primary = \"{}\"", socket(0)))
        .replace(
            &replicas_line,
            &format!("replicas = [{}]", replicas.join(", ")),
        );
    assert!(text.contains(".s.PGSQL."), "{text}");
    let p = start_proxy(&text);
    std::thread::sleep(Duration::from_millis(600));

    let client = connect(&p.conn_str(db)).await;
    client
        .batch_execute("CREATE TABLE w (id serial primary key, port int)")
        .await
        .unwrap();
    let port_of = |rows: Vec<tokio_postgres::SimpleQueryMessage>| -> u16 {
        rows.into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|v| v.parse().unwrap()),
                _ => None,
            })
            .expect("a row")
    };
    // Over a Unix socket inet_server_port() is NULL; the server's own port setting tells.
    let written = port_of(
        client
            .simple_query("INSERT INTO w (port) VALUES (0) RETURNING current_setting('port')")
            .await
            .unwrap(),
    );
    assert_eq!(written, c.primary_port(), "the write ran elsewhere");
    c.wait_replay_caught_up(Duration::from_secs(10)).unwrap();
    let mut seen: HashMap<u16, usize> = HashMap::new();
    for _ in 0..200 {
        let port = port_of(
            client
                .simple_query("SELECT current_setting('port')")
                .await
                .unwrap(),
        );
        *seen.entry(port).or_default() += 1;
    }
    assert_eq!(
        seen.get(&c.primary_port()),
        None,
        "a read reached the primary: {seen:?}"
    );
    for r in c.replica_ports() {
        assert!(
            seen.get(&r).copied().unwrap_or(0) >= 40,
            "replica {r} took too few: {seen:?}"
        );
    }

    // A cancel goes to the server running the statement, over its socket.
    cancel_stops_a_sleep(connect(&p.conn_str(db)).await, Duration::from_secs(3)).await;
    // The backends the proxy reports are named by their socket paths.
    let backends = p.backends(db);
    assert!(backends.contains(&socket(0)), "{backends}");
}

/// PAUSE/RESUME as an operator uses it for maintenance: a transaction running when the cluster
/// is paused finishes (and the pause reports when none is left), new statements wait instead
/// of failing and run after the resume; one that waits longer than `pause_timeout` gets
/// SQLSTATE 57P03.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_lets_running_transactions_finish_and_holds_new_ones_until_resume() {
    let c = cluster();
    create_db_on(c, "t_pause");
    // One worker: a client's login then takes the server parameters the first one learned
    // (on a second worker its first login would need a server connection, and wait too).
    let text = format!(
        "{}\n[pool]\npause_timeout = \"2s\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        routing_config(c, "t_pause", "")
    )
    .replace("[general]\n", "[general]\nworkers = 1\n");
    let p = start_proxy(&text);
    let admin = p.admin_addr();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let post = |path: &'static str| {
        tokio::task::spawn_blocking(move || admin_request(admin, "POST", path))
    };
    let a = connect(&p.conn_str("t_pause")).await;
    a.batch_execute("CREATE TABLE t (id int primary key)")
        .await
        .unwrap();
    a.batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();

    // Paused with A's transaction open: not drained after the wait.
    let (code, body) = post("/pause?cluster=t_pause&wait=0.5").await.unwrap();
    assert_eq!(code, 202, "{body}");
    assert!(body.contains("\"held\":1"), "{body}");

    // B's statement waits (a new client logs in; its statement is held).
    let b = connect(&p.conn_str("t_pause")).await;
    let waiting = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let r = b.simple_query("SELECT 1").await.map(|_| ());
        (r, started.elapsed(), b)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a statement ran on a paused cluster"
    );

    // A finishes its transaction while paused; then the pause reports it drained.
    a.batch_execute("INSERT INTO t VALUES (2); COMMIT")
        .await
        .unwrap();
    let (code, body) = post("/pause?cluster=t_pause&wait=5").await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"drained\":true"), "{body}");
    let (_, status) = tokio::task::spawn_blocking(move || admin_get(admin, "/status"))
        .await
        .unwrap();
    assert!(status.contains("\"paused\":true"), "{status}");
    assert!(
        !waiting.is_finished(),
        "a statement ran on a paused cluster"
    );

    let (code, body) = post("/resume?cluster=t_pause").await.unwrap();
    assert_eq!(code, 200, "{body}");
    let (r, waited, _b) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the held statement did not run after the resume")
        .unwrap();
    r.unwrap();
    assert!(waited >= Duration::from_millis(500), "{waited:?}");

    // Longer than pause_timeout: 57P03.
    let (code, _) = post("/pause?wait=0").await.unwrap();
    assert!(code == 200 || code == 202);
    let d = connect(&p.conn_str("t_pause")).await;
    let started = std::time::Instant::now();
    let err = d.simple_query("SELECT count(*) FROM t").await.unwrap_err();
    assert!(d.is_closed() || d.simple_query("SELECT 1").await.is_err());
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::CANNOT_CONNECT_NOW),
        "{err}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    post("/resume").await.unwrap();
    let rows = a.query_one("SELECT count(*) FROM t", &[]).await.unwrap();
    assert_eq!(rows.get::<_, i64>(0), 2);
}

/// `[[routing.rule]]`s, the operator's routing (ProxySQL's query rules): a read whose text a
/// rule matches goes where the rule says; the first matching rule decides; a rule for the
/// other protocol does nothing here; a leading hint in the statement beats the rules; and a
/// rule that sends everything to replicas still cannot send a write or a transaction there.
#[tokio::test]
async fn routing_rules_route_what_they_match_and_never_send_writes_to_replicas() {
    let db = "t_rules";
    let c = cluster();
    create_db_on(c, db);
    let text = routing_config(c, db, "")
        + r#"
[[routing.rule]]
match = "(?i)as\\s+mysql_only"
route = "primary"
protocol = "mysql"

[[routing.rule]]
match = "(?i)as\\s+must_be_fresh"
route = "primary"

[[routing.rule]]
match = ".*"
route = "replica"
"#;
    let p = start_proxy(&text);
    support::drivers::wait_replicas_ready(&p, db);
    let client = connect(&p.conn_str(db)).await;
    client
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    let primary = c.primary_port();
    for _ in 0..20 {
        // The second rule.
        assert_eq!(
            served_by(&client, "SELECT inet_server_port() AS must_be_fresh").await,
            primary
        );
        // A rule for MySQL clients only.
        assert_ne!(
            served_by(&client, "SELECT inet_server_port() AS mysql_only").await,
            primary
        );
        // The catch-all: reads to replicas.
        assert_ne!(
            served_by(&client, "SELECT inet_server_port()").await,
            primary
        );
        // A hint of the statement's own beats the rules.
        assert_eq!(
            served_by(
                &client,
                "/* switchyard:primary */ SELECT inet_server_port() AS x"
            )
            .await,
            primary
        );
        // A write is a write whatever the catch-all says: it succeeds (on the primary).
        client
            .simple_query("INSERT INTO t VALUES (1)")
            .await
            .unwrap();
    }
    // A transaction stays on the primary, reads inside it included.
    client.batch_execute("BEGIN").await.unwrap();
    assert_eq!(
        served_by(&client, "SELECT inet_server_port()").await,
        primary
    );
    client.batch_execute("COMMIT").await.unwrap();
    // An invalid pattern is refused by name.
    let bad = routing_config(c, db, "")
        + "\n[[routing.rule]]\nmatch = \"(unclosed\"\nroute = \"primary\"\n";
    let e = switchyard::config::Config::from_toml(&bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("routing.rule[0].match"), "{e}");
}
