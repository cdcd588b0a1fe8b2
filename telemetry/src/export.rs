//! The span exporter's last step: fields that exist only so log lines carry them are taken off
//! spans before they leave the process, and the resource names the service instance.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::resource::{EnvResourceDetector, TelemetryResourceDetector};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::config::TelemetryConfig;

/// Span fields recorded for the log formatters and the Loki layer (they copy span fields onto
/// every line). As span attributes they would only repeat the span's own identity, which the
/// semantic conventions leave to the span context.
pub(crate) const LOG_ONLY_FIELDS: [&str; 3] = ["trace_id", "span_id", "request_id"];

/// Wraps the OTLP exporter; drops [`LOG_ONLY_FIELDS`] from each span's attributes. Runs on the
/// batch processor's thread, off the request path.
#[derive(Debug)]
pub(crate) struct WithoutLogOnlyFields<E>(pub(crate) E);

impl<E: SpanExporter> SpanExporter for WithoutLogOnlyFields<E> {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        for span in &mut batch {
            span.attributes
                .retain(|kv| !LOG_ONLY_FIELDS.contains(&kv.key.as_str()));
        }
        self.0.export(batch).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// The resource every span carries. Later sources win: sloop's own attributes, then
/// `OTEL_RESOURCE_ATTRIBUTES` (an operator's explicit setting), then the service name, which
/// `OTEL_SERVICE_NAME` already decided and the specification ranks above the generic variable.
pub(crate) fn resource(config: &TelemetryConfig) -> Resource {
    let mut own = vec![
        KeyValue::new("service.version", config.service_version.clone()),
        KeyValue::new("service.instance.id", uuid::Uuid::new_v4().to_string()),
    ];
    if let Some(environment) = &config.environment {
        own.push(KeyValue::new(
            "deployment.environment.name",
            environment.clone(),
        ));
    }
    Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(own)
        .with_detector(Box::new(EnvResourceDetector::new()))
        .with_service_name(config.service_name.clone())
        .build()
}
