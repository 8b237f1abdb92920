//! PostgreSQL wire protocol: pure codec, authentication, client sessions, backend connections.
pub mod auth;
pub mod auth_query;
pub mod backend;
pub mod cancel;
pub mod codec;
pub mod mux;
pub mod prepared;
pub mod probe;
pub mod session;
pub mod startup;
pub mod worker;
