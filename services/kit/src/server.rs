//! Composing a service's router with the shared layers, and serving it until told to stop:
//! stop accepting, let in-flight requests finish.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::ServiceArgs;
use crate::health::{self, Check};
use crate::problem::Problem;
use crate::service::StartError;

/// Limits applied to every API request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub body_bytes: usize,
    pub request_timeout: Duration,
}

impl From<&ServiceArgs> for Limits {
    fn from(args: &ServiceArgs) -> Self {
        Self {
            body_bytes: args.body_limit_bytes,
            request_timeout: args.request_timeout,
        }
    }
}

/// The full application: `api` instrumented and limited, plus `/healthz`, `/readyz` (with
/// `checks`), `/metrics`, and problem documents for unknown routes and methods. With
/// `chaos`, the fault layer on every API route and, with a token, its admin API.
pub fn app(
    service: &'static str,
    api: Option<Router>,
    checks: Vec<Check>,
    limits: Limits,
    chaos: Option<&chaos::Enabled>,
) -> Router {
    let timeout = limits.request_timeout;
    // Order matters: the panic catcher sits inside the instrumentation so a panic is
    // measured as the 500 it becomes. The fault layer sits inside the instrumentation too,
    // so injected faults are measured and traced like real ones, and outside the time
    // limit, so a hang lasts until the client gives up. A service without an API (a pure
    // consumer) still serves its probes and metrics.
    let api = api
        .map(|api| {
            let mut api = api
                .layer(middleware::from_fn(move |req, next| {
                    time_limit(timeout, req, next)
                }))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(DefaultBodyLimit::max(limits.body_bytes));
            if let Some(chaos) = chaos {
                api = chaos::layer(api, chaos.faults.clone());
            }
            telemetry::http::instrument(api, service)
        })
        .unwrap_or_default();
    let admin = chaos
        .and_then(|c| Some(chaos::admin::router(c.faults.clone(), c.token.clone()?)))
        .unwrap_or_default();
    api.merge(admin)
        .merge(health::router(checks))
        .merge(telemetry::metrics::router())
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this route does not take that method; see /openapi.json",
            )
        })
        .fallback(|| async {
            Problem::not_found("no such route; see /openapi.json for the routes this service has")
        })
}

async fn time_limit(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request did not finish within {limit:?}; retry later"),
        )
        .into_response(),
    }
}

fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    Problem::panicked().into_response()
}

/// A bound listener and the app it will serve. Binding first lets tests use port 0 and
/// read the real address before serving.
pub struct Server {
    listener: TcpListener,
    app: Router,
}

impl Server {
    pub async fn bind(addr: SocketAddr, app: Router) -> Result<Self, StartError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        Ok(Self { listener, app })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then waits up to `grace` for in-flight requests.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        grace: Duration,
    ) -> Result<(), StartError> {
        let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
        let signal = async move {
            shutdown.await;
            let _ = stopping_tx.send(true);
        };
        let serve = axum::serve(
            self.listener,
            self.app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal)
        .into_future();
        tokio::pin!(serve);
        tokio::select! {
            result = &mut serve => return result.map_err(StartError::Serve),
            _ = stopping.wait_for(|stopping| *stopping) => {}
        }
        tracing::info!(grace = ?grace, "shutting down: draining in-flight requests");
        match tokio::time::timeout(grace, serve).await {
            Ok(result) => result.map_err(StartError::Serve),
            Err(_) => {
                tracing::warn!("requests still running after the grace period; stopping anyway");
                Ok(())
            }
        }
    }
}

/// Completes on SIGTERM (what Kubernetes sends) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
