//! Test and demo harness: real database servers in temporary directories.
//!
//! - [`pg`]: a real PostgreSQL primary plus streaming replicas on free loopback ports
//!   ([`pg::PgCluster`]), with roles for SCRAM, md5 and cleartext password authentication.

pub mod pg;
