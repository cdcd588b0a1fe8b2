//! The one event envelope every service publishes and consumes: CloudEvents 1.0 attributes
//! (id, type, source, subject, time) plus a data schema version, JSON data, and the W3C trace
//! context of the request that caused it.
//!
//! On the wire it uses the CloudEvents Kafka binding in binary mode: the attributes travel
//! as `ce_*` message headers, the data is the message value, the subject is the message key
//! (so per-subject order holds within a partition) and `traceparent`/`tracestate` are
//! headers of their own. The in-memory bus carries exactly the same messages.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::clock;

/// A kind of event: its CloudEvents `type`, the topic it travels on and the version of its
/// data schema. Declared once per event in `sloop-events` and shared by producer and
/// consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventType {
    /// CloudEvents `type`, reverse-DNS style, e.g. `sloop.user.created`.
    pub name: &'static str,
    /// Topic (Kafka) the event is published on; one topic per producing aggregate.
    pub topic: &'static str,
    /// Version of the data schema. Bump it on a change consumers must notice.
    pub version: u32,
}

/// The CloudEvents spec version this envelope follows.
pub const SPEC_VERSION: &str = "1.0";
/// Suffix of the topic a consumer moves messages to after they keep failing.
pub const DEAD_LETTER_SUFFIX: &str = ".dlq";

/// Header names of the CloudEvents Kafka binding (binary content mode).
mod header {
    pub const SPEC_VERSION: &str = "ce_specversion";
    pub const ID: &str = "ce_id";
    pub const TYPE: &str = "ce_type";
    pub const SOURCE: &str = "ce_source";
    pub const SUBJECT: &str = "ce_subject";
    pub const TIME: &str = "ce_time";
    /// A CloudEvents extension attribute: the version of the data schema.
    pub const SCHEMA_VERSION: &str = "ce_schemaversion";
    pub const CONTENT_TYPE: &str = "content-type";
}

/// Trace-context headers carried beside the CloudEvents attributes.
const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// An event, as written to the outbox and read by consumers.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// UUIDv7; consumers remember it to apply each event once.
    pub id: String,
    /// CloudEvents `type`.
    pub kind: String,
    /// CloudEvents `source`: `/sloop/<service>`.
    pub source: String,
    /// The entity the event is about (a user id, an order id); the message key.
    pub subject: String,
    /// RFC 3339 UTC time of the change.
    pub time: String,
    pub schema_version: u32,
    pub topic: String,
    pub data: serde_json::Value,
    /// `traceparent` and `tracestate` of the span that produced the event.
    pub trace: BTreeMap<String, String>,
}

impl Event {
    /// A new event of `kind` about `subject`, produced by `service` inside the current span,
    /// whose trace context it carries.
    pub fn new(
        service: &str,
        kind: EventType,
        subject: impl Into<String>,
        data: &impl Serialize,
    ) -> Result<Self, serde_json::Error> {
        let mut trace = std::collections::HashMap::new();
        telemetry::propagation::inject_into_map(&tracing::Span::current(), &mut trace);
        Ok(Self {
            id: uuid::Uuid::now_v7().to_string(),
            kind: kind.name.to_owned(),
            source: format!("/sloop/{service}"),
            subject: subject.into(),
            time: clock::now_rfc3339(),
            schema_version: kind.version,
            topic: kind.topic.to_owned(),
            data: serde_json::to_value(data)?,
            trace: trace
                .into_iter()
                .filter(|(k, _)| TRACE_HEADERS.contains(&k.as_str()))
                .collect(),
        })
    }

    /// Whether this is an event of `kind` (name and schema version both match).
    pub fn is(&self, kind: EventType) -> bool {
        self.kind == kind.name && self.schema_version == kind.version
    }

    /// The data as the payload type of its kind.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.data)
    }

    /// The trace context of the producer, for the consumer's span parent.
    pub fn trace_context(&self) -> opentelemetry::Context {
        let map = self
            .trace
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        telemetry::propagation::extract_from_map(&map)
    }

    /// Makes `span` a child of the producer's span.
    pub fn continue_trace(&self, span: &tracing::Span) {
        let _ = span.set_parent(self.trace_context());
    }

    /// The message this event travels as (CloudEvents Kafka binding, binary mode).
    pub fn to_message(&self) -> Message {
        let mut headers = vec![
            (header::SPEC_VERSION.to_owned(), SPEC_VERSION.to_owned()),
            (header::ID.to_owned(), self.id.clone()),
            (header::TYPE.to_owned(), self.kind.clone()),
            (header::SOURCE.to_owned(), self.source.clone()),
            (header::SUBJECT.to_owned(), self.subject.clone()),
            (header::TIME.to_owned(), self.time.clone()),
            (
                header::SCHEMA_VERSION.to_owned(),
                self.schema_version.to_string(),
            ),
            (
                header::CONTENT_TYPE.to_owned(),
                "application/json".to_owned(),
            ),
        ];
        headers.extend(self.trace.iter().map(|(k, v)| (k.clone(), v.clone())));
        Message {
            topic: self.topic.clone(),
            key: self.subject.clone(),
            headers,
            payload: serde_json::to_vec(&self.data).expect("JSON values always serialize"),
        }
    }

    /// Reads an event back from a message, or says which part is missing or malformed.
    pub fn from_message(message: &Message) -> Result<Self, EnvelopeError> {
        let get = |name: &'static str| {
            message
                .header(name)
                .map(str::to_owned)
                .ok_or(EnvelopeError::MissingHeader(name))
        };
        let spec = get(header::SPEC_VERSION)?;
        if spec != SPEC_VERSION {
            return Err(EnvelopeError::SpecVersion(spec));
        }
        let version = get(header::SCHEMA_VERSION)?;
        let schema_version = version
            .parse()
            .map_err(|_| EnvelopeError::SchemaVersion(version))?;
        let data = serde_json::from_slice(&message.payload).map_err(EnvelopeError::Data)?;
        Ok(Self {
            id: get(header::ID)?,
            kind: get(header::TYPE)?,
            source: get(header::SOURCE)?,
            subject: get(header::SUBJECT)?,
            time: get(header::TIME)?,
            schema_version,
            topic: message.topic.clone(),
            data,
            trace: TRACE_HEADERS
                .iter()
                .filter_map(|name| {
                    message
                        .header(name)
                        .map(|v| ((*name).to_owned(), v.to_owned()))
                })
                .collect(),
        })
    }
}

/// Why a message is not a sloop event. Such messages go to the dead-letter topic at once.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("header {0} is missing")]
    MissingHeader(&'static str),
    #[error("ce_specversion {0:?} is not 1.0")]
    SpecVersion(String),
    #[error("ce_schemaversion {0:?} is not a number")]
    SchemaVersion(String),
    #[error("the value is not JSON: {0}")]
    Data(serde_json::Error),
}

/// A message as a broker carries it: topic, key, string headers, bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub key: String,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The same message for the dead-letter topic, with why and by whom it was given up.
    pub fn dead_letter(&self, consumer: &str, attempts: u32, reason: &str) -> Self {
        let mut headers = self.headers.clone();
        headers.extend([
            ("dlq_original_topic".to_owned(), self.topic.clone()),
            ("dlq_consumer".to_owned(), consumer.to_owned()),
            ("dlq_attempts".to_owned(), attempts.to_string()),
            ("dlq_reason".to_owned(), reason.to_owned()),
        ]);
        Self {
            topic: format!("{}{DEAD_LETTER_SUFFIX}", self.topic),
            key: self.key.clone(),
            headers,
            payload: self.payload.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATED: EventType = EventType {
        name: "sloop.test.created",
        topic: "sloop.test",
        version: 2,
    };

    #[test]
    fn an_event_round_trips_through_its_message() {
        let mut event = Event::new("test", CREATED, "s-1", &serde_json::json!({"n": 1})).unwrap();
        event.trace.insert(
            "traceparent".into(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        );
        let message = event.to_message();
        assert_eq!(message.topic, "sloop.test");
        assert_eq!(message.key, "s-1");
        assert_eq!(message.header("ce_type"), Some("sloop.test.created"));
        assert_eq!(message.header("ce_schemaversion"), Some("2"));
        assert_eq!(message.header("ce_source"), Some("/sloop/test"));
        assert_eq!(Event::from_message(&message).unwrap(), event);
        assert!(event.is(CREATED));
        assert!(!event.is(EventType {
            version: 1,
            ..CREATED
        }));
        let parent = event.trace_context();
        use opentelemetry::trace::TraceContextExt;
        assert_eq!(
            parent.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        let event = Event::new("test", CREATED, "s-1", &1).unwrap();
        let mut message = event.to_message();
        message.headers.retain(|(k, _)| k != "ce_id");
        assert!(matches!(
            Event::from_message(&message),
            Err(EnvelopeError::MissingHeader("ce_id"))
        ));
        let mut message = event.to_message();
        message.payload = b"{not json".to_vec();
        assert!(matches!(
            Event::from_message(&message),
            Err(EnvelopeError::Data(_))
        ));
    }

    #[test]
    fn dead_letters_keep_the_event_and_add_the_reason() {
        let message = Event::new("test", CREATED, "s-1", &1).unwrap().to_message();
        let dead = message.dead_letter("audit", 5, "boom");
        assert_eq!(dead.topic, "sloop.test.dlq");
        assert_eq!(dead.key, "s-1");
        assert_eq!(dead.header("dlq_reason"), Some("boom"));
        assert_eq!(dead.header("ce_id"), message.header("ce_id"));
    }
}
