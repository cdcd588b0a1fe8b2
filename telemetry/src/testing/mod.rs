//! Receivers for tests that speak what each exporter really talks to: OTLP traces over
//! HTTP/protobuf and gRPC (as a collector such as Jaeger takes them), Loki's push API and
//! Sentry's envelope endpoint. Each decodes the real wire format, so a test checks what the
//! backend would get.

mod loki;
mod sentry;

pub use loki::{LokiEntry, LokiReceiver};
pub use sentry::SentryReceiver;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

/// OTLP span kinds, as numbered in the protobuf.
pub const SPAN_KIND_SERVER: i32 = 2;
pub const SPAN_KIND_CLIENT: i32 = 3;

/// OTLP status code of a span marked as failed.
pub const STATUS_ERROR: i32 = 2;

/// An attribute value with the type it arrived as, so tests can check the types the semantic
/// conventions require (an integer status code is not the string `"200"`).
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    String(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Arrays, maps and bytes, which sloop's spans do not use.
    Other,
}

impl AttributeValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The OTLP type name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::String(_) => "string",
            Self::Int(_) => "int",
            Self::Double(_) => "double",
            Self::Bool(_) => "bool",
            Self::Other => "other",
        }
    }
}

impl PartialEq<&str> for AttributeValue {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == Some(*other)
    }
}

impl PartialEq<i64> for AttributeValue {
    fn eq(&self, other: &i64) -> bool {
        self.as_i64() == Some(*other)
    }
}

/// One received span, ids as lower-case hex.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service: String,
    /// The attributes of the resource that sent it (`service.name`, `service.version`, ...).
    pub resource: HashMap<String, AttributeValue>,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub kind: i32,
    pub attributes: HashMap<String, AttributeValue>,
    /// OTLP status code: 0 unset, 1 ok, [`STATUS_ERROR`].
    pub status_code: i32,
    /// Names of the span's events (`exception`, log events).
    pub events: Vec<String>,
    /// `(trace id, span id)` of each linked span.
    pub links: Vec<(String, String)>,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// How it arrived: [`TRANSPORT_GRPC`] or [`TRANSPORT_HTTP`].
    pub transport: &'static str,
}

/// The OTLP transports, as `OTEL_EXPORTER_OTLP_PROTOCOL` names them.
pub const TRANSPORT_GRPC: &str = "grpc";
pub const TRANSPORT_HTTP: &str = "http/protobuf";

impl ReceivedSpan {
    /// The attribute as text, whatever its type (empty when missing), for messages.
    pub fn text(&self, key: &str) -> String {
        match self.attributes.get(key) {
            Some(AttributeValue::String(s)) => s.clone(),
            Some(AttributeValue::Int(i)) => i.to_string(),
            Some(AttributeValue::Double(d)) => d.to_string(),
            Some(AttributeValue::Bool(b)) => b.to_string(),
            Some(AttributeValue::Other) | None => String::new(),
        }
    }

    /// Whether `self` is a direct child of `parent`.
    pub fn is_child_of(&self, parent: &ReceivedSpan) -> bool {
        self.trace_id == parent.trace_id && self.parent_span_id == parent.span_id
    }

    /// What is wrong with this span's attributes against a convention: each `(key, type)` of
    /// `required` must be present with that type (`"string"`, `"int"`, ...), and no attribute
    /// outside `required` and `allowed` may appear. Empty when the span conforms.
    pub fn convention_problems(
        &self,
        required: &[(&str, &str)],
        allowed: &[(&str, &str)],
    ) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, wanted) in required {
            match self.attributes.get(*key) {
                None => problems.push(format!("`{}`: missing {key}", self.name)),
                Some(value) if value.type_name() != *wanted => problems.push(format!(
                    "`{}`: {key} is {} {value:?}, not {wanted}",
                    self.name,
                    value.type_name()
                )),
                Some(_) => {}
            }
        }
        for (key, value) in &self.attributes {
            match allowed.iter().find(|(k, _)| k == key) {
                Some((_, wanted)) if value.type_name() != *wanted => problems.push(format!(
                    "`{}`: {key} is {} {value:?}, not {wanted}",
                    self.name,
                    value.type_name()
                )),
                Some(_) => {}
                None if required.iter().any(|(k, _)| k == key) => {}
                None => problems.push(format!(
                    "`{}`: stray attribute {key} = {value:?}",
                    self.name
                )),
            }
        }
        problems.sort();
        problems
    }
}

type Spans = Arc<Mutex<Vec<ReceivedSpan>>>;

/// A receiver listening on a loopback port for as long as the current runtime lives. One
/// port takes both transports, as a collector's would: OTLP/HTTP (`POST /v1/traces`) and
/// OTLP/gRPC (HTTP/2 without TLS, the `TraceService/Export` method).
pub struct OtlpReceiver {
    /// Base URL to put in `OTEL_EXPORTER_OTLP_ENDPOINT`, for either protocol.
    pub endpoint: String,
    spans: Spans,
}

impl OtlpReceiver {
    pub async fn start() -> Self {
        let spans: Spans = Arc::default();
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .route_service(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                TraceServiceServer::new(GrpcTraces(spans.clone())),
            )
            .with_state(spans.clone());
        let endpoint = format!("http://{}", serve_on_loopback(app).await);
        Self { endpoint, spans }
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("span list lock").clone()
    }

    /// Waits up to `timeout` for a span matching `wanted` (exporters batch, so spans
    /// arrive some time after the request).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        wanted: impl Fn(&ReceivedSpan) -> bool,
    ) -> Option<ReceivedSpan> {
        wait_until(timeout, || self.spans().into_iter().find(|s| wanted(s))).await
    }
}

/// An endpoint that accepts connections and never answers, for as long as the test process
/// lives: a collector, Loki or Sentry that hangs. Returns its base URL.
pub fn hanging_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a hanging endpoint");
    let address = listener.local_addr().expect("bound");
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().collect();
        drop(held);
    });
    format!("http://{address}")
}

/// Serves `app` on a fresh loopback port for as long as the current runtime lives.
async fn serve_on_loopback(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a test receiver on loopback");
    let address = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    address
}

/// Polls `found` until it gives something or `timeout` passes: exporters batch and retry,
/// so what they send arrives some time after what caused it.
async fn wait_until<T>(timeout: Duration, found: impl Fn() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(thing) = found() {
            return Some(thing);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn receive(State(spans): State<Spans>, body: Bytes) -> impl IntoResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (axum::http::StatusCode::BAD_REQUEST, Vec::new()).into_response();
    };
    store(&spans, request, TRANSPORT_HTTP);
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

/// The gRPC side of the receiver.
struct GrpcTraces(Spans);

#[tonic::async_trait]
impl TraceService for GrpcTraces {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        store(&self.0, request.into_inner(), TRANSPORT_GRPC);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn store(spans: &Spans, request: ExportTraceServiceRequest, transport: &'static str) {
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = attribute_map(
            resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default(),
        );
        let service = resource
            .get("service.name")
            .and_then(AttributeValue::as_str)
            .unwrap_or_default()
            .to_owned();
        for span in resource_spans
            .scope_spans
            .into_iter()
            .flat_map(|scope| scope.spans)
        {
            received.push(ReceivedSpan {
                service: service.clone(),
                resource: resource.clone(),
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                kind: span.kind,
                attributes: attribute_map(span.attributes),
                status_code: span.status.map(|s| s.code).unwrap_or_default(),
                events: span.events.into_iter().map(|e| e.name).collect(),
                links: span
                    .links
                    .into_iter()
                    .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                    .collect(),
                start_unix_nano: span.start_time_unix_nano,
                end_unix_nano: span.end_time_unix_nano,
                transport,
            });
        }
    }
    spans.lock().expect("span list lock").extend(received);
}

fn attribute_map(attributes: Vec<KeyValue>) -> HashMap<String, AttributeValue> {
    attributes
        .into_iter()
        .map(|kv| {
            let value = match kv.value.and_then(|v| v.value) {
                Some(Value::StringValue(s)) => AttributeValue::String(s),
                Some(Value::IntValue(i)) => AttributeValue::Int(i),
                Some(Value::BoolValue(b)) => AttributeValue::Bool(b),
                Some(Value::DoubleValue(d)) => AttributeValue::Double(d),
                _ => AttributeValue::Other,
            };
            (kv.key, value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(attributes: &[(&str, AttributeValue)]) -> ReceivedSpan {
        ReceivedSpan {
            service: "user".into(),
            resource: HashMap::new(),
            name: "GET /users".into(),
            trace_id: String::new(),
            span_id: String::new(),
            parent_span_id: String::new(),
            kind: SPAN_KIND_SERVER,
            attributes: attributes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            status_code: 0,
            events: Vec::new(),
            links: Vec::new(),
            start_unix_nano: 0,
            end_unix_nano: 0,
            transport: TRANSPORT_HTTP,
        }
    }

    #[test]
    fn a_conforming_span_has_no_problems() {
        let s = span(&[
            ("http.response.status_code", AttributeValue::Int(200)),
            ("user_agent.original", AttributeValue::String("curl".into())),
        ]);
        let problems = s.convention_problems(
            &[("http.response.status_code", "int")],
            &[("user_agent.original", "string")],
        );
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn missing_mistyped_and_stray_attributes_are_each_named() {
        let s = span(&[
            (
                "http.response.status_code",
                AttributeValue::String("200".into()),
            ),
            ("server.port", AttributeValue::String("80".into())),
            ("thread.id", AttributeValue::Int(7)),
        ]);
        let problems = s.convention_problems(
            &[("http.response.status_code", "int"), ("url.path", "string")],
            &[("server.port", "int")],
        );
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems.iter().any(|p| p.contains("missing url.path")));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("http.response.status_code is string"))
        );
        assert!(problems.iter().any(|p| p.contains("server.port is string")));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("stray attribute thread.id"))
        );
    }
}
