//! `switchyard demo`: a real PostgreSQL primary with two streaming replicas, a MariaDB
//! primary with one GTID replica, two small HTTP upstream services, the proxy in front of
//! all of them (the HTTP edge for the services), and the URIs a person or a script needs, one
//! per line.

use crate::app::Server;
use crate::config::Config;
use crate::testkit::mariadb::MariaCluster;
use crate::testkit::pg::PgCluster;

/// Start everything, print the URIs and the config file's path, serve until `wait` returns
/// (Ctrl-C; it calls its argument on SIGHUP, which reloads that file), stop everything.
pub fn run(
    port: u16,
    mysql_port: u16,
    http_port: u16,
    wait: impl FnOnce(&dyn Fn()) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    eprintln!("starting PostgreSQL primary and two replicas...");
    let cluster = PgCluster::start(2)?;
    cluster.psql(0, "CREATE DATABASE app")?;
    eprintln!("starting MariaDB primary and one replica...");
    let maria = MariaCluster::start(1)?;
    maria.create_database("shop")?;
    eprintln!("starting two HTTP upstream services...");
    let web = [
        crate::testkit::http::HttpUpstream::start("web-1")?,
        crate::testkit::http::HttpUpstream::start("web-2")?,
    ];
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

[mysql]
listen = "127.0.0.1:{mysql_port}"

[admin]
listen = "127.0.0.1:0"

# The HTTP edge in front of the two sample services: round robin with health checks;
# responses under /static are cached (try /static/x?cc=max-age%3D60), /api is rate limited.
[[edge.listener]]
listen = "127.0.0.1:{http_port}"

[[edge.route]]
path = "/"
upstream = "web"

[[edge.route]]
path = "/static"
upstream = "web"
cache = true

[[edge.route]]
path = "/api"
upstream = "web"
rate_limit = {{ rate = 50, burst = 100 }}

[[edge.upstream]]
name = "web"
servers = ["{web1}", "{web2}"]

[edge.upstream.health]
path = "/healthz"
interval = "1s"

[[user]]
name = "app"
password = "app"

[[cluster]]
name = "demo"
database = "app"
primary = "127.0.0.1:{primary}"
replicas = [{replicas}]
user = "postgres"

[[cluster]]
name = "shop"
protocol = "mysql"
database = "shop"
primary = "127.0.0.1:{maria_primary}"
replicas = ["127.0.0.1:{maria_replica}"]
user = "switchyard"
password = "switchyard_pw"
"#,
        primary = cluster.primary_port(),
        replicas = replicas.join(", "),
        maria_primary = maria.primary_port(),
        maria_replica = maria.replica_ports()[0],
        web1 = web[0].addr(),
        web2 = web[1].addr(),
    );
    Config::from_toml(&text)?;
    // The generated config lives in a file so a newcomer can edit it and reload it.
    let dir = tempfile::Builder::new()
        .prefix("switchyard-demo-")
        .tempdir()?;
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, &text)?;
    let server = Server::start_file(&path)?;
    let addr = server.pg_addr.expect("demo config has a postgres listener");
    println!("proxy postgres://app:app@127.0.0.1:{}/app", addr.port());
    println!(
        "primary postgres://postgres@127.0.0.1:{}/app",
        cluster.primary_port()
    );
    for p in cluster.replica_ports() {
        println!("replica postgres://postgres@127.0.0.1:{p}/app");
    }
    let my = server.my_addr.expect("demo config has a mysql listener");
    println!("proxy mysql://app:app@127.0.0.1:{}/shop", my.port());
    println!(
        "primary mysql://app:app_pw@127.0.0.1:{}/shop",
        maria.primary_port()
    );
    for p in maria.replica_ports() {
        println!("replica mysql://app:app_pw@127.0.0.1:{p}/shop");
    }
    let edge = server.edge_addrs[0];
    println!("http://127.0.0.1:{}/", edge.port());
    for u in &web {
        println!("upstream http://{}/", u.addr());
    }
    if let Some(a) = server.admin_addr {
        println!("admin http://{a}");
    }
    println!("config {}", path.display());
    eprintln!(
        "try: psql postgres://app:app@127.0.0.1:{}/app   (Ctrl-C stops everything)",
        addr.port()
    );
    eprintln!("     mariadb -h127.0.0.1 -P{} -uapp -papp shop", my.port());
    eprintln!("     curl http://127.0.0.1:{}/echo", edge.port());
    eprintln!(
        "edit the config, then: kill -HUP {} (or POST /reload on the admin URL)",
        std::process::id()
    );
    wait(&|| match server.reload() {
        Ok(m) => eprintln!("reload: {m}"),
        Err(e) => eprintln!("reload failed, nothing changed: {e}"),
    })?;
    eprintln!("stopping...");
    server.shutdown();
    drop(cluster);
    drop(maria);
    drop(web);
    Ok(())
}
