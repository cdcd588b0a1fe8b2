//! The fault layer: before a request reaches the service, asks the active faults what to do
//! with it and does it — hold it, answer in the service's place, drop the connection, or
//! never answer. Marks every injection on the request's span.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use futures::stream;
use http::StatusCode;

use crate::faults::{Faults, Injection};
use crate::rule::RequestInfo;

/// Wraps every route of `api` in the fault layer. Apply it where the route template is
/// known (on the API router, inside the request's span), so rules can match `/users/{id}`.
pub fn layer(api: Router, faults: Faults) -> Router {
    api.layer(middleware::from_fn_with_state(faults, inject))
}

async fn inject(State(faults): State<Faults>, request: Request, next: Next) -> Response {
    let injection = {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or_else(|| request.uri().path(), MatchedPath::as_str);
        let info = RequestInfo {
            method: request.method().as_str(),
            route,
            headers: request.headers(),
        };
        faults.decide(&info, &mut rand::rng())
    };
    let Some(injection) = injection else {
        return next.run(request).await;
    };
    tracing::warn!(
        chaos.fault = injection.kind(),
        chaos.rule = injection.rule(),
        "chaos fault injected"
    );
    match injection {
        Injection::Delay { by, .. } => {
            tokio::time::sleep(by).await;
            next.run(request).await
        }
        Injection::Abort { status, detail, .. } => abort(status, detail),
        Injection::Reset { .. } => reset(),
        Injection::Hang {
            at_most, released, ..
        } => {
            // Ends earlier when the client gives up: the server drops this future.
            tokio::select! {
                () = tokio::time::sleep(at_most) => {}
                () = released.cancelled() => {}
            }
            reset()
        }
    }
}

fn abort(status: u16, detail: Option<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let body = serde_json::json!({
        "type": "urn:sloop:problem:chaos-injected",
        "title": status.canonical_reason().unwrap_or("injected fault"),
        "status": status.as_u16(),
        "detail": detail.unwrap_or_else(|| "fault injected by chaos testing".to_owned()),
    });
    (
        status,
        [(http::header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

/// A response whose body fails before its first byte: the server gives up on the
/// connection and closes it without writing the head it had buffered.
fn reset() -> Response {
    let failing = stream::once(async {
        Err::<Bytes, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "chaos: connection reset",
        ))
    });
    Response::new(Body::from_stream(failing))
}
