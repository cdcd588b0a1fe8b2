//! What every sloop service shares: the chassis that describes and runs a service
//! ([`Service`], [`run`]), command-line config, the database pool, the event envelope,
//! outbox, bus and consumers, calls to other services with time-outs, retries and a
//! circuit breaker, problem documents, health probes and the shared OpenAPI parts.
//!
//! A service crate exposes `pub fn service() -> Service` and its `main.rs` hands that to
//! [`run`]; tests start the same description with [`testing::TestApp`].

pub mod breaker;
pub mod bus;
pub mod clock;
pub mod config;
pub mod consumer;
pub mod db;
pub mod event;
pub mod health;
pub mod identity;
pub mod lease;
pub mod openapi;
pub mod outbox;
pub mod problem;
pub mod ratelimit;
pub mod retention;
pub mod server;
pub mod service;
#[cfg(feature = "testing")]
pub mod testing;
pub mod upstream;
pub mod validate;

pub use bus::{BusUrl, EventBus, MemoryBus};
pub use config::ServiceArgs;
pub use consumer::{Consumer, Handler, HandlerError};
pub use db::{Backend, Database, DbError, Tx};
pub use event::{Event, EventType};
pub use identity::{Caller, ClientAddr, MaybeCaller};
pub use outbox::Outbox;
pub use problem::{Json, PROBLEM_JSON, Path, Problem, Query};
pub use server::shutdown_signal;
pub use service::{Context, Running, Service, Settings, StartError, run};
pub use upstream::{Upstream, UpstreamError};
