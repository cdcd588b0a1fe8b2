//! W3C trace context and baggage carried across process boundaries: HTTP headers and the
//! string maps that travel as event headers.

use std::collections::HashMap;
use std::sync::OnceLock;

use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// `traceparent`/`tracestate` plus `baggage`. Held here rather than read from the global so
/// propagation works even where `init` was never called (tests, libraries).
fn propagator() -> &'static TextMapCompositePropagator {
    static PROPAGATOR: OnceLock<TextMapCompositePropagator> = OnceLock::new();
    PROPAGATOR.get_or_init(|| {
        TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ])
    })
}

/// The remote parent context carried by incoming HTTP headers (empty when there is none).
pub fn extract_from_headers(headers: &http::HeaderMap) -> opentelemetry::Context {
    extract(&HeaderExtractor(headers))
}

/// Writes the context of `span` into outgoing HTTP headers.
pub fn inject_into_headers(span: &tracing::Span, headers: &mut http::HeaderMap) {
    inject(span, &mut HeaderInjector(headers));
}

/// Event headers for a message published while `span` is current, so consumers continue
/// the producer's trace.
pub fn inject_into_map(span: &tracing::Span, map: &mut HashMap<String, String>) {
    inject(span, map);
}

/// The parent context carried by an event's headers.
pub fn extract_from_map(map: &HashMap<String, String>) -> opentelemetry::Context {
    extract(map)
}

fn extract(carrier: &dyn Extractor) -> opentelemetry::Context {
    propagator().extract(carrier)
}

fn inject(span: &tracing::Span, carrier: &mut dyn Injector) {
    propagator().inject_context(&span.context(), carrier);
}

/// Records the span's own `trace_id` and `span_id` as fields, which the log formatters and
/// Loki layer copy onto every line logged inside it, and returns them. The span must declare
/// both fields.
pub fn record_ids(span: &tracing::Span) -> opentelemetry::trace::SpanContext {
    let context = span.context();
    let ids = context.span().span_context().clone();
    if ids.is_valid() {
        span.record("trace_id", tracing::field::display(ids.trace_id()));
        span.record("span_id", tracing::field::display(ids.span_id()));
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_through_a_map() {
        let mut incoming = HashMap::new();
        incoming.insert(
            "traceparent".to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        );
        incoming.insert("baggage".to_owned(), "tenant=acme".to_owned());
        let context = extract_from_map(&incoming);
        assert_eq!(
            context.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let mut outgoing = HashMap::new();
        propagator().inject_context(&context, &mut outgoing);
        assert_eq!(outgoing["traceparent"], incoming["traceparent"]);
        assert_eq!(outgoing["baggage"], "tenant=acme");
    }

    #[test]
    fn missing_headers_give_an_empty_context() {
        let context = extract_from_headers(&http::HeaderMap::new());
        assert!(!context.span().span_context().is_valid());
    }
}
