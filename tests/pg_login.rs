//! Logging in: what a client needs from the servers at login, and when.

mod support;

use std::time::Duration;
use support::*;
use switchyard::testkit::pg::{PgCluster, PgClusterOptions};

/// Defect: every login checked out a primary connection, so while the primary was down no
/// client could log in, not even one that only reads. A transaction-mode login needs no
/// server connection once a client with the same startup settings has logged in, and the
/// first one may use a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_clients_log_in_while_the_primary_is_down() {
    let c = PgCluster::start_with(PgClusterOptions {
        replicas: 2,
        ..Default::default()
    })
    .expect("start PostgreSQL");
    create_db_on(&c, "logindb");
    let p = start_proxy(&routing_config(&c, "logindb", ""));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let replicas = c.replica_ports();
    {
        let client = connect(&p.conn_str("logindb")).await;
        served_by(&client, "SELECT inet_server_port()").await;
    }
    c.stop_node(0, true).unwrap();
    // The health checker notices within a few intervals; logins do not depend on it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..5 {
        let (client, conn) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_postgres::connect(&p.conn_str("logindb"), tokio_postgres::NoTls),
        )
        .await
        .expect("login in time")
        .expect("login while the primary is down");
        tokio::spawn(conn);
        let port = served_by(&client, "SELECT inet_server_port()").await;
        assert!(replicas.contains(&port), "read served by {port}");
        let e = client
            .simple_query("CREATE TABLE t (a int)")
            .await
            .expect_err("no primary to write to");
        assert!(
            e.to_string().contains("primary") || e.code().is_some(),
            "unclear error: {e}"
        );
    }
}
