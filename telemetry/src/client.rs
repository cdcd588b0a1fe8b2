//! An HTTP client that continues the current trace on the callee and records the same RED
//! metrics as the server side, as `http_client_*`.

use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use opentelemetry::trace::Status;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::http::{InFlight, method_label};
use crate::metrics::{CLIENT_ACTIVE, CLIENT_DURATION, CLIENT_REQUESTS};
use crate::propagation::{inject_into_headers, record_ids};

/// A `reqwest::Client` that injects `traceparent`, `tracestate` and `baggage` into every
/// request it sends. Cheap to clone; share one per service.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    service: &'static str,
}

impl HttpClient {
    /// A client for `service` with conservative time-outs: a dependency that hangs must not
    /// hold a request of ours forever.
    pub fn new(service: &'static str) -> Self {
        let inner = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a client with only time-outs set always builds");
        Self::with_client(service, inner)
    }

    /// Wraps a client configured elsewhere (TLS roots, pools, proxies).
    pub fn with_client(service: &'static str, inner: reqwest::Client) -> Self {
        Self { inner, service }
    }

    /// Starts a request; send it with [`HttpClient::send`] so it is traced and measured.
    pub fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.inner.request(method, url)
    }

    /// Sends `request` in a client span. `route` is the callee's route template (for example
    /// `/users/{id}`); it names the span and labels the metrics, so ids stay out of labels.
    /// Under `OTEL_SDK_DISABLED=true` it only sends.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
        route: &str,
    ) -> Result<reqwest::Response, reqwest::Error> {
        if crate::sdk_disabled() {
            return request.send().await;
        }
        let mut request = request.build()?;
        let method = method_label(request.method());
        let server = server_address(request.url());
        let span = tracing::info_span!(
            "HTTP client request",
            otel.name = format!("{method} {route}"),
            otel.kind = "client",
            http.request.method = method,
            server.address = request.url().host_str().unwrap_or_default(),
            server.port = request.url().port_or_known_default().map(i64::from),
            url.full = %without_credentials(request.url()),
            url.template = route,
            trace_id = Empty,
            span_id = Empty,
        );
        record_ids(&span);
        inject_into_headers(&span, request.headers_mut());

        let started = Instant::now();
        let in_flight = InFlight::enter(gauge!(
            CLIENT_ACTIVE,
            "service" => self.service,
            "method" => method,
        ));
        let result = self.inner.execute(request).instrument(span.clone()).await;
        drop(in_flight);

        let status = match &result {
            Ok(response) => {
                let status = response.status();
                // Outcome attributes go to the OpenTelemetry span only: recording a field
                // makes the JSON log layer re-serialise all of the span's fields.
                span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
                span.set_attribute(
                    "network.protocol.version",
                    crate::http::protocol_version(response.version()),
                );
                // For a client every 4xx and 5xx is an error (the conventions' rule); only
                // 5xx sets the span status, as only those fail the caller's own request.
                if status.is_client_error() || status.is_server_error() {
                    span.set_attribute("error.type", status.as_str().to_owned());
                }
                if status.is_server_error() {
                    span.set_status(Status::error(""));
                }
                status.as_u16().to_string()
            }
            Err(err) => {
                span.set_status(Status::error(""));
                span.set_attribute("error.type", transport_error_type(err));
                span.in_scope(|| tracing::warn!(error = %err, "outgoing request failed"));
                "error".to_owned()
            }
        };
        let labels = [
            ("service", self.service.to_owned()),
            ("method", method.to_owned()),
            ("server_address", server),
            ("route", route.to_owned()),
            ("status", status),
        ];
        histogram!(CLIENT_DURATION, &labels).record(started.elapsed().as_secs_f64());
        counter!(CLIENT_REQUESTS, &labels).increment(1);
        result
    }
}

fn server_address(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => "unknown".to_owned(),
    }
}

/// The URL as a span may carry it: user name and password removed.
fn without_credentials(url: &reqwest::Url) -> reqwest::Url {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url
}

/// `error.type` for a request that got no response, from a short fixed set.
fn transport_error_type(err: &reqwest::Error) -> &'static str {
    if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connect"
    } else if err.is_body() || err.is_decode() {
        "body"
    } else {
        "_OTHER"
    }
}
