//! JSON log lines that carry the fields of every enclosing span, flattened to the top level.
//!
//! The server span records `trace_id`, `span_id` and `request_id` as fields, so flattening puts
//! them on every line logged while a request is handled, which is what lets Loki and Grafana
//! jump from a log line to its trace. The stock JSON formatter nests span fields instead.
//!
//! Span fields are kept as JSON object members (`"k":v,"k2":v2`), and a field recorded later
//! is appended, not merged: the stock `JsonFields` parses and re-serialises all of a span's
//! fields on every `record`, which was a large share of what a request's span cost. At
//! formatting time the members are read as one object, where the later value of a key wins.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The text format with the service in front of each line, so the lines of services sharing
/// one terminal (`sloop up`) can be told apart.
#[derive(Debug)]
pub struct WithService<F> {
    pub inner: F,
    pub service: String,
}

impl<S, N, F> FormatEvent<S, N> for WithService<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let service = crate::scope::current().unwrap_or(&self.service);
        write!(writer, "{service:>12} ")?;
        self.inner.format_event(ctx, writer, event)
    }
}

/// Formats each event as one JSON object: time, level, service, target, span, span fields,
/// event fields. `service` is the service the thread works for ([`crate::scope`]), or the
/// process's own name outside every scope.
#[derive(Debug)]
pub struct FlatJson {
    pub service: String,
}

impl<S> FormatEvent<S, FlatFields> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, FlatFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(now_rfc3339()));
        line.insert("level".into(), Value::String(meta.level().to_string()));
        let service = crate::scope::current().map_or(self.service.as_str(), |scope| {
            crate::scope::service_name(scope)
        });
        line.insert("service".into(), Value::String(service.to_owned()));
        line.insert("target".into(), Value::String(meta.target().to_owned()));
        if let Some(scope) = ctx.event_scope() {
            let mut leaf_name = None;
            for span in scope.from_root() {
                leaf_name = Some(span.name());
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<FlatFields>>()
                    && !fields.is_empty()
                    && let Ok(Value::Object(map)) =
                        serde_json::from_str::<Value>(&format!("{{{}}}", fields.fields))
                {
                    line.extend(map);
                }
            }
            if let Some(name) = leaf_name {
                line.insert("span".into(), Value::String(name.to_owned()));
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Stores a span's fields as JSON object members; see the module's documentation.
#[derive(Debug, Default)]
pub struct FlatFields;

impl<'writer> FormatFields<'writer> for FlatFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut members = MemberWriter {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut members);
        members.result
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> fmt::Result {
        let mut added = String::new();
        self.format_fields(Writer::new(&mut added), fields)?;
        if !added.is_empty() {
            if !current.fields.is_empty() {
                current.fields.push(',');
            }
            current.fields.push_str(&added);
        }
        Ok(())
    }
}

/// Writes each field as a JSON object member straight into the span's field string: no map,
/// no intermediate values, as this runs for every span a request opens.
struct MemberWriter<'writer> {
    writer: Writer<'writer>,
    first: bool,
    result: fmt::Result,
}

impl MemberWriter<'_> {
    fn member(&mut self, field: &Field, value: impl serde::Serialize) {
        if self.result.is_ok() {
            self.result = self.write_member(field.name(), value);
        }
    }

    fn write_member(&mut self, name: &str, value: impl serde::Serialize) -> fmt::Result {
        if !std::mem::replace(&mut self.first, false) {
            self.writer.write_char(',')?;
        }
        // Field names are Rust identifiers, maybe dotted: only an odd one needs escaping.
        if name.contains(['"', '\\']) || name.chars().any(char::is_control) {
            let key = serde_json::to_string(name).map_err(|_| fmt::Error)?;
            self.writer.write_str(&key)?;
        } else {
            write!(self.writer, "\"{name}\"")?;
        }
        let value = serde_json::to_string(&value).map_err(|_| fmt::Error)?;
        write!(self.writer, ":{value}")
    }
}

impl Visit for MemberWriter<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.member(field, value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, value);
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.member(field, value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, format!("{value:?}"));
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Copies an event's fields into the JSON line, keeping numbers and booleans typed.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::from(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Collects what the layer writes.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_carry_the_fields_of_enclosing_spans_including_ones_recorded_later() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(FlatFields)
                .event_format(FlatJson {
                    service: "user".into(),
                })
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!(
                "request",
                request_id = "r-1",
                trace_id = tracing::field::Empty,
                http.route = tracing::field::Empty,
            );
            outer.record("trace_id", "4bf92f35");
            outer.record("http.route", "/users/{id}");
            outer.record("http.route", "/users/{id}/status");
            let _outer = outer.enter();
            let inner = tracing::info_span!("step", attempt = 2_u64, quoted = "a \"b\" c");
            let _inner = inner.enter();
            tracing::info!(status = 200_u64, "done");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["request_id"], "r-1");
        assert_eq!(line["trace_id"], "4bf92f35");
        assert_eq!(
            line["http.route"], "/users/{id}/status",
            "the later record wins"
        );
        assert_eq!(line["attempt"], 2);
        assert_eq!(line["quoted"], "a \"b\" c");
        assert_eq!(line["status"], 200);
        assert_eq!(line["message"], "done");
        assert_eq!(line["span"], "step");
    }
}
