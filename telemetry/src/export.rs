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
        let spans = batch.len() as u64;
        let result = self.0.export(batch).await;
        // The SDK's own count of lost spans is private and its warnings are compiled out:
        // this counter is how an operator sees that a collector is down.
        let counter = if result.is_ok() {
            metrics::counter!(crate::metrics::SPANS_EXPORTED)
        } else {
            metrics::counter!(crate::metrics::SPANS_EXPORTED, "error_type" => "export_failed")
        };
        counter.increment(spans);
        result
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{SpanContext, SpanKind, Status};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

    use super::*;

    /// Keeps what it is given, as a collector would receive it.
    #[derive(Debug, Default, Clone)]
    struct Kept(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Kept {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    fn span_with(attributes: Vec<KeyValue>) -> SpanData {
        SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: "GET /users/{id}".into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    #[tokio::test]
    async fn log_only_fields_never_leave_the_process() {
        let kept = Kept::default();
        let exporter = WithoutLogOnlyFields(kept.clone());
        let span = span_with(vec![
            KeyValue::new("http.route", "/users/{id}"),
            KeyValue::new("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
            KeyValue::new("span_id", "00f067aa0ba902b7"),
            KeyValue::new("request_id", "abc"),
            KeyValue::new("http.response.status_code", 200_i64),
        ]);
        exporter.export(vec![span]).await.unwrap();
        let sent = kept.0.lock().unwrap();
        let keys: Vec<&str> = sent[0]
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .collect();
        assert_eq!(keys, ["http.route", "http.response.status_code"]);
    }

    #[test]
    fn the_resource_names_the_instance_and_honours_the_service_name() {
        let vars = [("DEPLOYMENT_ENVIRONMENT", "staging")];
        let config = TelemetryConfig::from_lookup("user", |k| {
            vars.iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        let resource = resource(&config);
        let get = |key: &str| {
            resource
                .get(&opentelemetry::Key::from(key.to_owned()))
                .map(|v| v.to_string())
        };
        assert_eq!(get("service.name").as_deref(), Some("user"));
        assert_eq!(
            get("service.version").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            get("deployment.environment.name").as_deref(),
            Some("staging")
        );
        let instance = get("service.instance.id").unwrap();
        assert!(uuid::Uuid::parse_str(&instance).is_ok(), "{instance}");
        assert_ne!(
            resource_id(&config),
            instance,
            "each process is its own instance"
        );
    }

    fn resource_id(config: &TelemetryConfig) -> String {
        resource(config)
            .get(&opentelemetry::Key::from_static_str("service.instance.id"))
            .map(|v| v.to_string())
            .unwrap_or_default()
    }
}
