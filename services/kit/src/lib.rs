//! What every sloop service shares: command-line config, the database pool, problem
//! documents, health probes and a server that shuts down gracefully.
//!
//! A service crate exposes `pub fn router(state) -> Router` and its `main.rs` hands that to
//! [`run`], which wires telemetry, the database, the probes and the signals around it.

pub mod config;
pub mod db;
pub mod health;
pub mod problem;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{EventBus, ServiceArgs};
pub use db::{Database, DbError};
pub use problem::{Json, Path, Problem, Query};
pub use server::{Server, StartError, app, run, shutdown_signal};

/// Names a service and its conventional port (see the port table in DESIGN.md).
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    /// Short name used for telemetry (`service` label, `service.name`) and the default
    /// SQLite file.
    pub name: &'static str,
    pub default_port: u16,
}
