//! Server-side HTTP instrumentation: one span per request continuing the caller's trace, RED
//! metrics labelled by route template, and an `x-request-id` carried through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::Response;
use metrics::{Gauge, Label, counter, gauge, histogram};
use opentelemetry::trace::Status;
use sentry::SentryFutureExt;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::{SERVER_ACTIVE, SERVER_DURATION, SERVER_REQUESTS};
use crate::propagation::{extract_from_headers, record_ids};

/// Header that correlates one request across services and log lines.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request id of the request being handled, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Route label for requests no route matched, so raw paths never become label values.
const UNMATCHED_ROUTE: &str = "unmatched";

/// Wraps every route of `router` with request spans, metrics and request ids. Call it after
/// all API routes are added; routes merged in later (health, metrics) stay unmeasured, so
/// probes and scrapes do not count toward the SLOs. Under `OTEL_SDK_DISABLED=true` the
/// router is returned as it is.
pub fn instrument(router: Router, service: &'static str) -> Router {
    if crate::sdk_disabled() {
        return router;
    }
    router
        .route_layer(middleware::from_fn(mark_route))
        .layer(middleware::from_fn_with_state(service, observe))
}

/// The request's server span, handed from `observe` to `mark_route`.
#[derive(Clone)]
struct RequestSpan(tracing::Span);

/// Runs after routing, where the matched template is known. The span is named here and
/// only then entered: tracing-opentelemetry starts the OTel span on first entry, and a
/// started span's name can no longer change.
async fn mark_route(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let span = request
        .extensions()
        .get::<RequestSpan>()
        .map(|s| s.0.clone())
        .unwrap_or_else(tracing::Span::current);
    if let Some(route) = &matched {
        span.record("http.route", route.as_str());
        span.record(
            "otel.name",
            format!("{} {}", request.method(), route.as_str()),
        );
    }
    let ids = record_ids(&span);
    if crate::sentry_enabled() {
        tag_error_scope(&ids, matched.as_ref(), &request);
    }
    let mut response = next.run(request).instrument(span).await;
    if let Some(route) = matched {
        response.extensions_mut().insert(route);
    }
    if ids.is_sampled() {
        response.extensions_mut().insert(SampledIds(ids));
    }
    response
}

/// The ids of a request's span when it is sampled (its trace reaches the backend), handed
/// from `mark_route` to `observe` for the duration histogram's exemplar.
#[derive(Clone)]
struct SampledIds(opentelemetry::trace::SpanContext);

async fn observe(
    State(service): State<&'static str>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let request_id = accept_or_generate_request_id(request.headers().get(REQUEST_ID_HEADER));
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));

    // Fields are what log lines inside the request carry too; every other attribute goes to
    // the OpenTelemetry span only (`set_attribute`): the JSON log layer re-serialises a
    // span's fields on each `record`, which cost more than the rest of the span.
    let span = tracing::info_span!(
        "HTTP request",
        otel.name = method,
        otel.kind = "server",
        http.request.method = method,
        url.path = request.uri().path(),
        http.route = Empty,
        request_id = %request_id,
        trace_id = Empty,
        span_id = Empty,
    );
    set_request_attributes(&span, &request, method);
    let _ = span.set_parent(extract_from_headers(request.headers()));
    request.extensions_mut().insert(RequestSpan(span.clone()));

    let in_flight =
        InFlight::enter(gauge!(SERVER_ACTIVE, "service" => service, "method" => method));
    // With Sentry on, each request gets a scope of its own, so an error event carries its
    // request's trace, route and id, and breadcrumbs never mix two requests.
    let mut response = if crate::sentry_enabled() {
        let hub = Arc::new(sentry::Hub::new_from_top(sentry::Hub::current()));
        next.run(request).bind_hub(hub).await
    } else {
        next.run(request).await
    };
    drop(in_flight);

    let status = response.status();
    let route = response
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.set_status(Status::error(""));
        span.set_attribute("error.type", status.as_str().to_owned());
        // WARN, not ERROR: whoever caused a 5xx of ours logs the cause at ERROR once (the
        // kit's `Problem::internal`), so error trackers get one event per failure.
        span.in_scope(|| tracing::warn!(status = status.as_u16(), %route, "request failed"));
    } else {
        span.in_scope(|| tracing::debug!(status = status.as_u16(), %route, "request completed"));
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(SampledIds(ids)) = response.extensions().get() {
        crate::exemplars::record(crate::exemplars::Sample {
            service,
            method,
            route: &route,
            status: status.as_u16(),
            seconds,
            trace_id: ids.trace_id(),
            span_id: ids.span_id(),
        });
    }
    let labels = vec![
        Label::from_static_parts("service", service),
        Label::from_static_parts("method", method),
        Label::new("route", route),
        Label::new("status", status.as_u16().to_string()),
    ];
    histogram!(SERVER_DURATION, labels.clone()).record(seconds);
    counter!(SERVER_REQUESTS, labels).increment(1);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// Names the request in the Sentry scope bound to it: the trace and span ids as Sentry's
/// trace context (so an event links to the trace), the route and the request id as tags.
fn tag_error_scope(
    ids: &opentelemetry::trace::SpanContext,
    route: Option<&MatchedPath>,
    request: &Request,
) {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone());
    sentry::configure_scope(|scope| {
        if let Some(route) = route {
            scope.set_tag("http.route", route.as_str());
        }
        if let Some(id) = request_id {
            scope.set_tag("request_id", id);
        }
        if ids.is_valid() {
            scope.set_context(
                "trace",
                sentry::protocol::TraceContext {
                    trace_id: ids.trace_id().to_bytes().into(),
                    span_id: ids.span_id().to_bytes().into(),
                    ..Default::default()
                },
            );
        }
    });
}

/// The request's attributes beyond its fields: the scheme and protocol, who called (the first
/// `X-Forwarded-For` hop when a proxy such as the gateway forwarded it, else the peer), which
/// host and port they addressed, the query, the user agent, a non-standard method.
fn set_request_attributes(span: &tracing::Span, request: &Request, method: &str) {
    let headers = request.headers();
    span.set_attribute("url.scheme", "http");
    span.set_attribute(
        "network.protocol.version",
        protocol_version(request.version()),
    );
    if method == "_OTHER" {
        span.set_attribute(
            "http.request.method_original",
            request.method().as_str().to_owned(),
        );
    }
    if let Some(query) = request.uri().query() {
        span.set_attribute("url.query", query.to_owned());
    }
    let authority = request.uri().authority().cloned().or_else(|| {
        headers
            .get(http::header::HOST)
            .and_then(|host| host.to_str().ok())
            .and_then(|host| host.parse::<http::uri::Authority>().ok())
    });
    if let Some(authority) = authority {
        span.set_attribute("server.address", authority.host().to_owned());
        span.set_attribute("server.port", i64::from(authority.port_u16().unwrap_or(80)));
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    if let Some(peer) = peer {
        span.set_attribute("network.peer.address", peer.ip().to_string());
        span.set_attribute("network.peer.port", i64::from(peer.port()));
    }
    let forwarded_for = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let client = forwarded_for
        .map(str::to_owned)
        .or_else(|| peer.map(|p| p.ip().to_string()));
    if let Some(client) = client {
        span.set_attribute("client.address", client);
    }
    if let Some(agent) = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        span.set_attribute("user_agent.original", agent.to_owned());
    }
}

/// `network.protocol.version` as the conventions spell it.
pub fn protocol_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// Keeps an in-flight gauge raised while alive; dropping it lowers the gauge even when the
/// request future is cancelled because the client went away.
pub(crate) struct InFlight(Gauge);

impl InFlight {
    pub(crate) fn enter(gauge: Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Standard methods by name; anything else is `_OTHER`, as the semantic conventions say,
/// so a client cannot create unbounded label values.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// Keeps a caller's request id when it is short printable ASCII, else makes a new one, so
/// log lines never carry attacker-sized or control-character ids.
fn accept_or_generate_request_id(header: Option<&HeaderValue>) -> String {
    header
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_or_replaced() {
        let good = HeaderValue::from_static("abc-123");
        assert_eq!(accept_or_generate_request_id(Some(&good)), "abc-123");
        let spaced = HeaderValue::from_static("has space");
        assert_ne!(accept_or_generate_request_id(Some(&spaced)), "has space");
        let long = HeaderValue::from_str(&"x".repeat(200)).unwrap();
        assert_eq!(accept_or_generate_request_id(Some(&long)).len(), 36);
        assert_eq!(accept_or_generate_request_id(None).len(), 36);
    }

    #[test]
    fn unknown_methods_collapse_to_other() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(
            method_label(&Method::from_bytes(b"BREW").unwrap()),
            "_OTHER"
        );
    }
}
