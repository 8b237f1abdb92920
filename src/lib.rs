//! Switchyard: a database proxy (see README.md for the code map).
pub mod app;
pub mod config;
pub mod demo;
pub mod net;
pub mod pg;
pub mod pool;
pub mod router;
pub mod testkit;
