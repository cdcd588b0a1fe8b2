//! Kubernetes-style probes: `/healthz` says the process is alive, `/readyz` that its
//! database answers, so a load balancer stops sending traffic it cannot serve.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use crate::db::Database;
use crate::problem::{Json, Problem};

pub fn router(db: Database) -> Router {
    Router::new()
        .route("/healthz", get(alive))
        .route("/readyz", get(ready))
        .with_state(db)
}

async fn alive() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn ready(State(db): State<Database>) -> Result<Json<Value>, Problem> {
    match tokio::time::timeout(Duration::from_secs(2), db.ping()).await {
        Ok(Ok(())) => Ok(Json(json!({ "status": "ok", "database": "ok" }))),
        Ok(Err(err)) => Err(Problem::unavailable(format!(
            "database is not reachable: {err}"
        ))),
        Err(_) => Err(Problem::unavailable("database did not answer within 2s")),
    }
}
