//! The process-wide Prometheus recorder and the `/metrics` route that renders it: one
//! registry per process, or one per service when several share the process.
//!
//! Metric names follow the OpenTelemetry HTTP semantic conventions, Prometheus-named. The
//! duration buckets include 0.2 s because the latency SLO is read from the `le="0.2"` bucket.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

pub const SERVER_DURATION: &str = "http_server_request_duration_seconds";
pub const SERVER_REQUESTS: &str = "http_server_requests_total";
pub const SERVER_ACTIVE: &str = "http_server_active_requests";
pub const CLIENT_DURATION: &str = "http_client_request_duration_seconds";
pub const CLIENT_REQUESTS: &str = "http_client_requests_total";
pub const CLIENT_ACTIVE: &str = "http_client_active_requests";

// Messaging, after the OpenTelemetry messaging conventions where they name a metric.
pub const MESSAGING_SENT: &str = "messaging_client_sent_messages_total";
pub const MESSAGING_SEND_DURATION: &str = "messaging_client_operation_duration_seconds";
pub const MESSAGING_CONSUMED: &str = "messaging_client_consumed_messages_total";
pub const MESSAGING_PROCESS_DURATION: &str = "messaging_process_duration_seconds";
pub const MESSAGING_RETRIES: &str = "messaging_process_retries_total";
pub const MESSAGING_DEAD_LETTERS: &str = "messaging_dead_lettered_messages_total";
pub const MESSAGING_LAG: &str = "messaging_consumer_lag_messages";
pub const MESSAGING_END_TO_END: &str = "messaging_end_to_end_duration_seconds";
pub const OUTBOX_PENDING: &str = "outbox_pending_events";
pub const OUTBOX_OLDEST_AGE: &str = "outbox_oldest_pending_age_seconds";

// Telemetry's own delivery, after the OpenTelemetry SDK self-metric
// `otel.sdk.exporter.span.exported`: `error_type` is set only on spans that were lost.
pub const SPANS_EXPORTED: &str = "otel_sdk_exporter_span_exported_total";

// Resilience of calls to other services.
pub const BREAKER_STATE: &str = "circuit_breaker_state";
pub const BREAKER_TRANSITIONS: &str = "circuit_breaker_transitions_total";
pub const CLIENT_RETRIES: &str = "http_client_retries_total";

/// Bucket bounds in seconds for every `*_duration_seconds` histogram. 0.2 is the SLO threshold.
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
];

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// Where this process's metrics are kept.
enum Registry {
    /// One service in the process: one registry.
    Single(PrometheusHandle),
    /// Several services in one process (`sloop up`): a registry per service, picked by the
    /// thread's [`crate::scope`], and one for metrics recorded outside every scope (never
    /// served).
    PerService {
        services: BTreeMap<&'static str, PrometheusHandle>,
        outside: PrometheusHandle,
    },
}

impl Registry {
    fn current(&self) -> &PrometheusHandle {
        match self {
            Registry::Single(handle) => handle,
            Registry::PerService { services, outside } => crate::scope::current()
                .and_then(|service| services.get(service))
                .unwrap_or(outside),
        }
    }
}

/// Metrics were set up already, so they cannot be split per service any more.
#[derive(Debug, thiserror::Error)]
#[error("metrics are already installed in this process")]
pub struct AlreadyInstalled;

fn build_recorder() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_duration_seconds".to_owned()),
            DURATION_BUCKETS,
        )
        .expect("bucket list is non-empty")
        .build_recorder()
}

/// Installs the global recorder once and returns the handle of the current service's
/// registry; later calls install nothing, so several tests in one process share a registry.
pub fn install() -> &'static PrometheusHandle {
    REGISTRY
        .get_or_init(|| {
            let recorder = build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. by a test harness); ours then
            // renders nothing, which the metrics tests would show.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            Registry::Single(handle)
        })
        .current()
}

/// Installs one registry per service, each holding only what that service's threads
/// record. Must come before anything records a metric.
pub fn install_per_service(services: &[&'static str]) -> Result<(), AlreadyInstalled> {
    let recorder = PerServiceRecorder {
        services: services.iter().map(|s| (*s, build_recorder())).collect(),
        outside: build_recorder(),
    };
    let registry = Registry::PerService {
        services: recorder
            .services
            .iter()
            .map(|(service, r)| (*service, r.handle()))
            .collect(),
        outside: recorder.outside.handle(),
    };
    REGISTRY.set(registry).map_err(|_| AlreadyInstalled)?;
    metrics::set_global_recorder(recorder).map_err(|_| AlreadyInstalled)?;
    for service in services {
        crate::scope::with(service, describe);
    }
    Ok(())
}

/// Sends each metric to the registry of the service whose thread records it.
struct PerServiceRecorder {
    services: BTreeMap<&'static str, PrometheusRecorder>,
    outside: PrometheusRecorder,
}

impl PerServiceRecorder {
    fn current(&self) -> &PrometheusRecorder {
        crate::scope::current()
            .and_then(|service| self.services.get(service))
            .unwrap_or(&self.outside)
    }
}

impl Recorder for PerServiceRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.current().describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.current().describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.current().describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.current().register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.current().register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.current().register_histogram(key, metadata)
    }
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
    metrics::describe_counter!(
        SPANS_EXPORTED,
        "Spans the OTLP exporter handed to the collector; with error_type, spans it lost."
    );
    metrics::describe_gauge!(CLIENT_ACTIVE, "Outgoing HTTP requests in flight.");
    metrics::describe_counter!(
        MESSAGING_SENT,
        "Events published to the bus by the outbox relay, by outcome."
    );
    metrics::describe_histogram!(
        MESSAGING_SEND_DURATION,
        metrics::Unit::Seconds,
        "Time to publish one event until the bus acknowledged it."
    );
    metrics::describe_counter!(
        MESSAGING_CONSUMED,
        "Events a consumer finished with: applied, duplicate (already applied), dead_lettered."
    );
    metrics::describe_histogram!(
        MESSAGING_PROCESS_DURATION,
        metrics::Unit::Seconds,
        "Time to handle one event, retries included."
    );
    metrics::describe_counter!(
        MESSAGING_RETRIES,
        "Handler attempts that failed and were retried."
    );
    metrics::describe_counter!(
        MESSAGING_DEAD_LETTERS,
        "Events moved to a dead-letter topic after failing every attempt."
    );
    metrics::describe_gauge!(
        MESSAGING_LAG,
        "Events published to a consumer group's topics and not yet handled by it."
    );
    metrics::describe_histogram!(
        MESSAGING_END_TO_END,
        metrics::Unit::Seconds,
        "From the change that produced an event to a consumer having applied it."
    );
    metrics::describe_gauge!(OUTBOX_PENDING, "Outbox events not yet published.");
    metrics::describe_gauge!(
        OUTBOX_OLDEST_AGE,
        metrics::Unit::Seconds,
        "Age of the oldest outbox event not yet published (0 when none)."
    );
    metrics::describe_gauge!(
        BREAKER_STATE,
        "Circuit breaker per upstream: 0 closed, 1 open, 2 half-open."
    );
    metrics::describe_counter!(
        BREAKER_TRANSITIONS,
        "Circuit breaker state changes, by new state."
    );
    metrics::describe_counter!(
        CLIENT_RETRIES,
        "Outgoing HTTP requests sent again after a failure."
    );
}

/// A router serving `GET /metrics` for the current service: the Prometheus text format, or OpenMetrics with the
/// duration histogram's exemplars when the scrape asks for it (Prometheus does by default).
pub fn router() -> Router {
    let handle = install();
    Router::new().route(
        "/metrics",
        get(move |headers: axum::http::HeaderMap| {
            let text = handle.render();
            async move {
                let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
                if crate::exemplars::wants_openmetrics(accept) {
                    let body = crate::exemplars::to_openmetrics(&text);
                    let content_type = crate::exemplars::OPENMETRICS_CONTENT_TYPE;
                    ([(header::CONTENT_TYPE, content_type)], body).into_response()
                } else {
                    let content_type = "text/plain; version=0.0.4; charset=utf-8";
                    ([(header::CONTENT_TYPE, content_type)], text).into_response()
                }
            }
        }),
    )
}
