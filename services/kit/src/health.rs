//! Kubernetes-style probes: `/healthz` says the process is alive, `/readyz` that what it
//! needs to serve answers (its database; a service may add checks of its own), so a load
//! balancer stops sending traffic it cannot serve.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use crate::db::Database;
use crate::problem::{Json, PROBLEM_JSON};

/// How long one check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type CheckFn = dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// One named readiness check.
#[derive(Clone)]
pub struct Check {
    name: String,
    /// A failing required check makes the service unready; others are only reported.
    required: bool,
    run: Arc<CheckFn>,
}

impl Check {
    pub fn new<F>(name: impl Into<String>, required: bool, run: F) -> Self
    where
        F: Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static,
    {
        Self {
            name: name.into(),
            required,
            run: Arc::new(run),
        }
    }

    /// The database answers a trivial query.
    pub fn database(db: Database) -> Self {
        Self::new("database", true, move || {
            let db = db.clone();
            Box::pin(async move { db.ping().await.map_err(|e| e.to_string()) })
        })
    }
}

pub fn router(checks: Vec<Check>) -> Router {
    Router::new()
        .route("/healthz", get(alive))
        .route("/readyz", get(ready))
        .with_state(Arc::new(checks))
}

async fn alive() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn ready(State(checks): State<Arc<Vec<Check>>>) -> Response {
    let results = futures::future::join_all(checks.iter().map(|check| async move {
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, (check.run)()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
        };
        (check, outcome)
    }))
    .await;
    let mut report = Map::new();
    let mut failing = Vec::new();
    for (check, outcome) in results {
        let text = match outcome {
            Ok(()) => "ok".to_owned(),
            Err(reason) => {
                if check.required {
                    failing.push(format!("{}: {reason}", check.name));
                }
                format!("failing: {reason}")
            }
        };
        report.insert(check.name.clone(), Value::String(text));
    }
    if failing.is_empty() {
        return Json(json!({ "status": "ok", "checks": report })).into_response();
    }
    // A problem document, with the per-check report as an extension member.
    let body = json!({
        "type": "urn:sloop:problem:unavailable",
        "title": "Service Unavailable",
        "status": 503,
        "detail": format!("not ready: {}", failing.join("; ")),
        "checks": report,
    });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(axum::http::header::CONTENT_TYPE, PROBLEM_JSON)],
        body.to_string(),
    )
        .into_response()
}
