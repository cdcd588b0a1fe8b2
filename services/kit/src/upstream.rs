//! Calling another sloop service: the traced telemetry client plus a time-out per call,
//! retries that are safe (connection refused for any method; time-outs and 5xx only for
//! idempotent ones), and a circuit breaker so a dead dependency costs one feature, fast,
//! rather than every request's patience.

use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use reqwest::Method;
use serde::Serialize;

use crate::breaker::{BreakerSettings, CircuitBreaker};
use crate::problem::Problem;
use telemetry::HttpClient;
use telemetry::metrics::CLIENT_RETRIES;

/// How calls to one upstream behave.
#[derive(Debug, Clone, Copy)]
pub struct CallPolicy {
    /// Each attempt's limit, response headers and body included.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// Wait before the first retry; doubles after each.
    pub backoff: Duration,
    pub breaker: BreakerSettings,
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            retries: 2,
            backoff: Duration::from_millis(50),
            breaker: BreakerSettings::default(),
        }
    }
}

/// Why a call to an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the {upstream} service is failing, so calls to it are paused for {retry_after:?}")]
    Open {
        upstream: &'static str,
        retry_after: Duration,
    },
    #[error("the {upstream} service did not answer within {timeout:?}")]
    Timeout {
        upstream: &'static str,
        timeout: Duration,
    },
    #[error("the {upstream} service cannot be reached: {reason}")]
    Unreachable {
        upstream: &'static str,
        reason: String,
    },
    #[error("the {upstream} service failed with status {status}")]
    Failed { upstream: &'static str, status: u16 },
    #[error("cannot encode the request for {upstream}: {reason}")]
    Encode {
        upstream: &'static str,
        reason: String,
    },
}

impl From<UpstreamError> for Problem {
    /// Every upstream failure is the platform's fault, not the caller's, and temporary.
    fn from(err: UpstreamError) -> Self {
        let retry_after = match &err {
            UpstreamError::Open { retry_after, .. } => retry_after.as_secs().max(1),
            _ => 1,
        };
        if let UpstreamError::Encode { .. } = err {
            return Problem::internal(&err);
        }
        Problem::unavailable(format!("{err}; retry later")).with_retry_after(retry_after)
    }
}

/// Another service this one calls, by name and base URL. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Upstream {
    name: &'static str,
    base_url: String,
    client: HttpClient,
    policy: CallPolicy,
    breaker: Arc<CircuitBreaker>,
}

impl Upstream {
    pub fn new(
        service: &'static str,
        name: &'static str,
        base_url: &str,
        policy: CallPolicy,
    ) -> Self {
        Self {
            name,
            base_url: base_url.trim_end_matches('/').to_owned(),
            client: HttpClient::new(service),
            policy,
            breaker: Arc::new(CircuitBreaker::new(service, name, policy.breaker)),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Sends `method path` with an optional JSON body. `route` is the callee's route
    /// template (`/users/{id}`), which names spans and labels metrics. Answers below 500
    /// are returned to the caller to interpret, 4xx included.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        route: &str,
        body: Option<&impl Serialize>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| UpstreamError::Encode {
                upstream: self.name,
                reason: e.to_string(),
            })?;
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        );
        let mut attempt = 0;
        loop {
            let error = match self.attempt(&method, path, route, body.as_deref()).await {
                Ok(response) => return Ok(response),
                Err(error) => error,
            };
            let retryable = match &error {
                UpstreamError::Unreachable { .. } => true,
                UpstreamError::Timeout { .. } | UpstreamError::Failed { .. } => idempotent,
                UpstreamError::Open { .. } | UpstreamError::Encode { .. } => false,
            };
            if !retryable || attempt >= self.policy.retries {
                return Err(error);
            }
            attempt += 1;
            counter!(CLIENT_RETRIES, "upstream" => self.name).increment(1);
            tokio::time::sleep(self.policy.backoff * 2u32.pow(attempt - 1)).await;
        }
    }

    async fn attempt(
        &self,
        method: &Method,
        path: &str,
        route: &str,
        body: Option<&[u8]>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let permit = self.breaker.try_call().map_err(|r| UpstreamError::Open {
            upstream: self.name,
            retry_after: r.retry_after,
        })?;
        let mut request = self
            .client
            .request(method.clone(), &format!("{}{path}", self.base_url))
            .timeout(self.policy.timeout);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        match self.client.send(request, route).await {
            Ok(response) if response.status().is_server_error() => {
                permit.failure();
                Err(UpstreamError::Failed {
                    upstream: self.name,
                    status: response.status().as_u16(),
                })
            }
            Ok(response) => {
                permit.success();
                Ok(response)
            }
            Err(err) => {
                permit.failure();
                Err(if err.is_timeout() {
                    UpstreamError::Timeout {
                        upstream: self.name,
                        timeout: self.policy.timeout,
                    }
                } else {
                    UpstreamError::Unreachable {
                        upstream: self.name,
                        reason: error_chain(&err),
                    }
                })
            }
        }
    }
}

/// The error and its causes on one line (reqwest's own message is only the outermost).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
