//! Switchyard: a database proxy for the PostgreSQL and MySQL wire protocols, with an HTTP edge
//! (reverse proxy and load balancer) in the same process.
//!
//! Layout (the path of one statement):
//! - [`net`]: listeners (one SO_REUSEPORT socket per worker), TLS.
//! - [`pg`]: PostgreSQL protocol — pure codec, authentication, startup, the per-client session
//!   state machine, backend connections, cancel keys, prepared-statement mapping.
//! - [`router`]: SQL scanning and the rules built on it (which statements pin a session).
//! - [`pool`]: per-worker, per-backend connection pools that only take back clean connections
//!   (any protocol: `pool::Connector`), one size shared by the workers' pools of a backend.
//! - [`cluster`]: topology, health checks over any protocol's `cluster::health::Prober`, lag,
//!   replica selection.
//! - [`engine`]: the protocol-neutral state front ends read (config, topology, classifier,
//!   shutdown, metrics).
//! - [`mysql`]: MySQL/MariaDB protocol — pure codec, auth scrambles, login, sessions with
//!   transaction pooling, server connections, the health probe.
//! - [`edge`]: the HTTP edge — listeners (TLS, HTTP/1.1, HTTP/2), routes, upstream groups
//!   with balancing and health, retries, rate limits, the response cache, WebSocket tunnels.
//! - [`app`]: wiring: worker threads, the engine and each front end's state, shutdown, drain.
//! - [`config`]: the config model, validation, durations (a leaf).
//! - [`testkit`] and [`demo`]: real PostgreSQL and MariaDB servers and small HTTP services for
//!   tests and `switchyard demo`.
//!
//! Import rules: `pool`, `cluster`, `router`, `config`, `admin`, `metrics` and `engine` import
//! nothing from `pg`, `mysql` or `edge`; `pg`, `mysql` and `edge` import nothing from each
//! other or from `app`.
//!
//! Invariants: a backend connection returns to a pool only idle and clean; untrusted bytes
//! never panic; codecs do no I/O; no global mutable state; every network wait is bounded or
//! ends at shutdown. README.md has the longer version.

pub mod admin;
pub mod app;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod edge;
pub mod engine;
pub mod metrics;
pub mod mysql;
pub mod net;
pub mod pg;
pub mod pool;
pub mod reload;
pub mod router;
pub mod testkit;

/// Decrements a counter when dropped, also when the future holding it is dropped: holds one
/// place in a count (clients open, a worker's load, a pool's waiters) while it lives.
pub(crate) struct Decrement<'a>(pub(crate) &'a std::sync::atomic::AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
