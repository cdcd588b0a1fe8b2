//! The process-wide Prometheus recorder and the `/metrics` route that renders it.
//!
//! Metric names follow the OpenTelemetry HTTP semantic conventions, Prometheus-named. The
//! duration buckets include 0.2 s because the latency SLO is read from the `le="0.2"` bucket.

use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const SERVER_DURATION: &str = "http_server_request_duration_seconds";
pub const SERVER_REQUESTS: &str = "http_server_requests_total";
pub const SERVER_ACTIVE: &str = "http_server_active_requests";
pub const CLIENT_DURATION: &str = "http_client_request_duration_seconds";
pub const CLIENT_REQUESTS: &str = "http_client_requests_total";
pub const CLIENT_ACTIVE: &str = "http_client_active_requests";

/// Bucket bounds in seconds for every `*_duration_seconds` histogram. 0.2 is the SLO threshold.
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder once and returns its handle; later calls return the same one,
/// so several services (or tests) in one process share a single registry.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_duration_seconds".to_owned()),
                DURATION_BUCKETS,
            )
            .expect("bucket list is non-empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (e.g. by a test harness); ours then
        // renders nothing, which the metrics tests would show.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_histogram!(
        SERVER_DURATION,
        metrics::Unit::Seconds,
        "Duration of HTTP server requests, by matched route template."
    );
    metrics::describe_counter!(SERVER_REQUESTS, "HTTP server requests completed.");
    metrics::describe_gauge!(SERVER_ACTIVE, "HTTP server requests in flight.");
    metrics::describe_histogram!(
        CLIENT_DURATION,
        metrics::Unit::Seconds,
        "Duration of outgoing HTTP requests."
    );
    metrics::describe_counter!(CLIENT_REQUESTS, "Outgoing HTTP requests completed.");
    metrics::describe_gauge!(CLIENT_ACTIVE, "Outgoing HTTP requests in flight.");
}

/// A router serving `GET /metrics` in the Prometheus text format.
pub fn router() -> Router {
    let handle = install();
    Router::new().route(
        "/metrics",
        get(move || {
            let body = handle.render();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    body,
                )
                    .into_response()
            }
        }),
    )
}
