//! A client for the services' `/chaos/faults` admin API, by service name.

use std::time::Duration;

use anyhow::{Context, bail};
use chaos::Rule;
use serde_json::Value;

use crate::targets::Targets;

/// Calls each service's admin API with the token the services were started with.
pub struct Admin {
    client: reqwest::Client,
    pub targets: Targets,
    token: String,
}

impl Admin {
    pub fn new(targets: Targets, token: String, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder().timeout(timeout).build()?,
            targets,
            token,
        })
    }

    /// The token from CHAOS_TOKEN, or an error that says to set it.
    pub fn token_from_env() -> anyhow::Result<String> {
        std::env::var("CHAOS_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .context("set CHAOS_TOKEN to the token the services were started with")
    }

    /// Applies `rule`; answers the fault as the service describes it (`id`, `expires_in_ms`…).
    pub async fn apply(&self, service: &str, rule: &Rule) -> anyhow::Result<Value> {
        self.call(service, reqwest::Method::POST, "/chaos/faults", Some(rule))
            .await
    }

    pub async fn list(&self, service: &str) -> anyhow::Result<Value> {
        self.call(service, reqwest::Method::GET, "/chaos/faults", None)
            .await
    }

    pub async fn clear(&self, service: &str) -> anyhow::Result<Value> {
        self.call(service, reqwest::Method::DELETE, "/chaos/faults", None)
            .await
    }

    /// Deletes one fault; a fault that already expired counts as deleted (`Ok(false)`).
    pub async fn delete(&self, service: &str, id: &str) -> anyhow::Result<bool> {
        match self
            .call(
                service,
                reqwest::Method::DELETE,
                &format!("/chaos/faults/{id}"),
                None,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if err.downcast_ref::<NotFound>().is_some() => Ok(false),
            Err(err) => Err(err),
        }
    }

    async fn call(
        &self,
        service: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Rule>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.targets.url(service)?);
        let mut request = self.client.request(method, &url).bearer_auth(&self.token);
        if let Some(rule) = body {
            request = request.json(rule);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{service}: no answer from {url}; is it running?"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match status.as_u16() {
            200..=299 => Ok(body),
            404 if path.starts_with("/chaos/faults/") => Err(NotFound.into()),
            404 => bail!(
                "{service}: {url} has no chaos admin API; start it with --chaos and CHAOS_TOKEN set"
            ),
            401 => {
                bail!("{service}: the token was refused; set CHAOS_TOKEN to the service's token")
            }
            _ => bail!(
                "{service}: {status}: {}",
                body["detail"].as_str().unwrap_or("no detail")
            ),
        }
    }
}

/// The fault asked for is not there (it expired, or was cleared).
#[derive(Debug, thiserror::Error)]
#[error("no such fault")]
struct NotFound;
