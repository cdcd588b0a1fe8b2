//! What Alertmanager says: alerts firing now (its v2 API), and the notifications its
//! webhook receivers deliver, caught by a listener the run starts where the receivers point.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::spec::ExpectedAlert;

/// Alertmanager's v2 API.
pub struct Alertmanager {
    base: String,
    client: reqwest::Client,
}

impl Alertmanager {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
        }
    }

    /// Whether an active alert (firing, whether or not inhibited or silenced) matches.
    pub async fn firing(&self, expected: &ExpectedAlert) -> Result<bool, String> {
        let url = format!("{}/api/v2/alerts", self.base);
        let mut filters = vec![(
            "filter".to_owned(),
            format!("alertname=\"{}\"", expected.alert),
        )];
        for (name, value) in &expected.labels {
            filters.push(("filter".to_owned(), format!("{name}=\"{value}\"")));
        }
        filters.push(("active".to_owned(), "true".to_owned()));
        let alerts: Vec<Value> = self
            .client
            .get(&url)
            .query(&filters)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| format!("cannot reach Alertmanager at {url}: {e}"))?
            .error_for_status()
            .map_err(|e| format!("Alertmanager at {url}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("{url}: not an Alertmanager answer: {e}"))?;
        Ok(!alerts.is_empty())
    }
}

/// One alert in one webhook notification.
#[derive(Debug, Clone, Serialize)]
pub struct Notified {
    pub at: String,
    /// Seconds since the run started.
    pub t: f64,
    pub receiver: String,
    pub alertname: String,
    /// `firing` or `resolved`.
    pub status: String,
    pub labels: BTreeMap<String, String>,
}

/// Notifications received so far, shared with the listener.
#[derive(Clone, Default)]
pub struct Inbox(Arc<Mutex<Vec<Notified>>>);

impl Inbox {
    pub fn all(&self) -> Vec<Notified> {
        self.0.lock().expect("inbox lock").clone()
    }

    /// The first notification of `expected` with `status` at `receiver` (any receiver when
    /// the expectation names none) that arrived at `since` seconds or later: one sent for
    /// an alert that fired before the first fault says nothing about the faults.
    pub fn first(&self, expected: &ExpectedAlert, status: &str, since: f64) -> Option<Notified> {
        self.all().into_iter().find(|n| {
            n.t >= since
                && n.status == status
                && n.alertname == expected.alert
                && expected.receiver.as_ref().is_none_or(|r| *r == n.receiver)
                && expected
                    .labels
                    .iter()
                    .all(|(k, v)| n.labels.get(k) == Some(v))
        })
    }
}

/// The body Alertmanager's webhook receiver posts (payload version 4), as far as the run
/// reads it.
#[derive(Debug, Deserialize)]
struct Webhook {
    /// The receiver's name in Alertmanager's configuration.
    receiver: String,
    alerts: Vec<WebhookAlert>,
}

#[derive(Debug, Deserialize)]
struct WebhookAlert {
    /// `firing` or `resolved`.
    status: String,
    labels: BTreeMap<String, String>,
}

/// Listens on `address` for Alertmanager's webhook posts, on any path (the receiver is
/// named in the body); runs until the process ends. `clock` gives seconds since the run
/// started.
pub async fn listen(
    address: SocketAddr,
    clock: Arc<dyn Fn() -> f64 + Send + Sync>,
) -> std::io::Result<Inbox> {
    let inbox = Inbox::default();
    let listener = tokio::net::TcpListener::bind(address).await?;
    let app = Router::new()
        .route("/", post(receive))
        .route("/{*path}", post(receive))
        .with_state((inbox.clone(), clock));
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            super::run::say(&format!("warning: the webhook listener stopped: {err}"));
        }
    });
    Ok(inbox)
}

type ListenerState = (Inbox, Arc<dyn Fn() -> f64 + Send + Sync>);

/// Takes one notification; a body that is not Alertmanager's is refused (422) and kept
/// out of the inbox.
async fn receive(
    State((inbox, clock)): State<ListenerState>,
    axum::Json(body): axum::Json<Webhook>,
) {
    let at = super::journal::now_rfc3339();
    let t = clock();
    let mut inbox = inbox.0.lock().expect("inbox lock");
    for alert in body.alerts {
        inbox.push(Notified {
            at: at.clone(),
            t,
            receiver: body.receiver.clone(),
            alertname: alert.labels.get("alertname").cloned().unwrap_or_default(),
            status: alert.status,
            labels: alert.labels,
        });
    }
}
