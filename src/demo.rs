//! `switchyard demo`: a real primary with two streaming replicas, the proxy in front, and the
//! URIs a person or a script needs, one per line.

use crate::app::Server;
use crate::config::Config;
use crate::testkit::pg::PgCluster;

/// Start everything, print the URIs, wait for `wait` (Ctrl-C), stop everything.
pub fn run(port: u16, wait: fn() -> anyhow::Result<()>) -> anyhow::Result<()> {
    eprintln!("starting PostgreSQL primary and two replicas...");
    let cluster = PgCluster::start(2)?;
    cluster.psql(0, "CREATE DATABASE app")?;
    let replicas: Vec<String> = cluster
        .replica_ports()
        .iter()
        .map(|p| format!("\"127.0.0.1:{p}\""))
        .collect();
    let text = format!(
        r#"
[postgres]
listen = "127.0.0.1:{port}"
pool_mode = "transaction"

[admin]
listen = "127.0.0.1:0"

[[user]]
name = "app"
password = "app"

[[cluster]]
name = "demo"
database = "app"
primary = "127.0.0.1:{primary}"
replicas = [{replicas}]
user = "postgres"
"#,
        primary = cluster.primary_port(),
        replicas = replicas.join(", "),
    );
    let config = Config::from_toml(&text)?;
    let server = Server::start(config)?;
    let addr = server.pg_addr.expect("demo config has a postgres listener");
    println!("proxy postgres://app:app@127.0.0.1:{}/app", addr.port());
    println!(
        "primary postgres://postgres@127.0.0.1:{}/app",
        cluster.primary_port()
    );
    for p in cluster.replica_ports() {
        println!("replica postgres://postgres@127.0.0.1:{p}/app");
    }
    eprintln!(
        "try: psql postgres://app:app@127.0.0.1:{}/app   (Ctrl-C stops everything)",
        addr.port()
    );
    wait()?;
    eprintln!("stopping...");
    server.shutdown();
    drop(cluster);
    Ok(())
}
