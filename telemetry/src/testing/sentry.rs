//! A Sentry stand-in for tests: takes envelopes at `/api/{project}/envelope/`, as the Sentry
//! SDK sends them, and keeps each event they carry.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use sentry::protocol::EnvelopeItem;

use super::{serve_on_loopback, wait_until};

type Events = Arc<Mutex<Vec<serde_json::Value>>>;

/// Listens on a loopback port for as long as the current runtime lives.
pub struct SentryReceiver {
    /// The DSN to put in `SENTRY_DSN`.
    pub dsn: String,
    events: Events,
}

impl SentryReceiver {
    pub async fn start() -> Self {
        let events: Events = Arc::default();
        let app = Router::new()
            .route("/api/{project}/envelope/", post(envelope))
            .with_state(events.clone());
        let dsn = format!("http://publickey@{}/1", serve_on_loopback(app).await);
        Self { dsn, events }
    }

    /// Every event received so far, as the JSON Sentry stores (`level`, `message`, `tags`,
    /// `contexts`, `exception`, ...).
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.events.lock().expect("event list lock").clone()
    }

    /// Waits up to `timeout` for an event matching `wanted`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        wanted: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        wait_until(timeout, || self.events().into_iter().find(|e| wanted(e))).await
    }
}

/// Refuses an envelope without the SDK's auth header or one that does not parse.
async fn envelope(State(events): State<Events>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let authenticated = headers
        .get("x-sentry-auth")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("sentry_key=publickey"));
    if !authenticated {
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(envelope) = sentry::Envelope::from_slice(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let received = envelope.into_items().filter_map(|item| match item {
        EnvelopeItem::Event(event) => serde_json::to_value(&event).ok(),
        _ => None,
    });
    events.lock().expect("event list lock").extend(received);
    StatusCode::OK
}
