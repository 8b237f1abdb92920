//! Test and demo harness: real database servers in temporary directories.
//!
//! - [`pg`]: a real PostgreSQL primary plus streaming replicas on free loopback ports
//!   ([`pg::PgCluster`]), with roles for SCRAM, md5 and cleartext password authentication.
//! - [`mariadb`]: a real MariaDB primary plus GTID replicas on free loopback ports
//!   ([`mariadb::MariaCluster`]), with an application user and a proxy backend user.
//! - [`http`]: small real HTTP upstream servers (HTTP/1.1, h2c, WebSocket echo, cache and
//!   status knobs) for the edge's tests and `switchyard demo`.

pub mod http;
pub mod mariadb;
pub mod pg;
