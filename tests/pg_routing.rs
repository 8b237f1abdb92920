//! Read/write splitting against a real primary with two streaming replicas.

mod support;

use std::collections::HashMap;
use std::time::Duration;
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
