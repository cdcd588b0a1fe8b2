//! Every telemetry exporter of the real `sloop-user` binary, against a receiver that speaks
//! what it talks to in production: OTLP over gRPC and over HTTP/protobuf (a collector such as
//! Jaeger), Loki's push API, Sentry's envelope endpoint.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Service;
use telemetry::testing::{
    LokiReceiver, OtlpReceiver, SPAN_KIND_SERVER, STATUS_ERROR, SentryReceiver, TRANSPORT_GRPC,
    TRANSPORT_HTTP, hanging_endpoint,
};

const CHAOS_TOKEN: &str = "exporters-test-token";
const WAIT: Duration = Duration::from_secs(10);

/// A caller's W3C trace context: the trace and the span the service's span must continue.
struct Caller {
    trace_id: String,
    span_id: String,
}

impl Caller {
    fn new() -> Self {
        let trace_id = uuid::Uuid::new_v4().simple().to_string();
        let span_id = trace_id[..16].to_owned();
        Self { trace_id, span_id }
    }

    fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// Injects `rule` through the service's chaos admin API.
async fn inject(service: &Service, rule: Value) {
    let response = client()
        .post(service.url("/chaos/faults"))
        .bearer_auth(CHAOS_TOKEN)
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
}

/// `GET /users/{id}` of an id no one created, as `caller`.
async fn read_unknown_user(service: &Service, caller: &Caller) -> reqwest::Response {
    client()
        .get(service.url(&format!("/users/{}", uuid::Uuid::new_v4())))
        .header("traceparent", caller.traceparent())
        .send()
        .await
        .unwrap()
}

async fn create_user(service: &Service, caller: &Caller) -> reqwest::Response {
    client()
        .post(service.url("/users"))
        .header("traceparent", caller.traceparent())
        .json(&json!({"email": format!("{}@example.com", caller.trace_id), "name": "Exported"}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_arrive_over_grpc_and_http_protobuf_with_resource_conventions_and_error_status() {
    let receiver = OtlpReceiver::start().await;
    for protocol in [TRANSPORT_GRPC, TRANSPORT_HTTP] {
        let service = Service::start(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("DEPLOYMENT_ENVIRONMENT", "staging"),
            ("CHAOS_ENABLED", "true"),
            ("CHAOS_TOKEN", CHAOS_TOKEN),
        ]);

        let caller = Caller::new();
        assert_eq!(create_user(&service, &caller).await.status(), 201);
        let span = receiver
            .wait_for(WAIT, |s| {
                s.trace_id == caller.trace_id && s.kind == SPAN_KIND_SERVER
            })
            .await
            .unwrap_or_else(|| panic!("no server span over {protocol}: {:?}", receiver.spans()));
        assert_eq!(span.transport, protocol);
        assert_eq!(span.name, "POST /users");
        assert_eq!(
            span.parent_span_id, caller.span_id,
            "the caller's traceparent is the parent"
        );
        assert_eq!(span.resource["service.name"], "user");
        assert_eq!(span.resource["deployment.environment.name"], "staging");
        assert_eq!(span.resource["service.version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(span.attributes["http.request.method"], "POST");
        assert_eq!(span.attributes["http.route"], "/users");
        assert_eq!(span.attributes["http.response.status_code"], 201);
        assert_ne!(span.status_code, STATUS_ERROR);

        // A 5xx marks the span failed (here one the fault layer answers in the service's place).
        inject(
            &service,
            json!({"match": {"route": "/users/{id}"}, "action": {"abort": {"status": 503}}}),
        )
        .await;
        let failing = Caller::new();
        let response = read_unknown_user(&service, &failing).await;
        assert_eq!(response.status(), 503);
        let failed = receiver
            .wait_for(WAIT, |s| {
                s.trace_id == failing.trace_id && s.kind == SPAN_KIND_SERVER
            })
            .await
            .unwrap_or_else(|| panic!("no span for the 503 over {protocol}"));
        assert_eq!(failed.status_code, STATUS_ERROR, "{failed:?}");
        assert_eq!(failed.attributes["http.response.status_code"], 503);
        assert_eq!(failed.attributes["error.type"], "503");
        assert_eq!(failed.transport, protocol);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn log_lines_reach_loki_with_bounded_labels_and_their_trace_ids() {
    let loki = LokiReceiver::start().await;
    let service = Service::start(&[("LOKI_URL", loki.url.as_str())]);
    let caller = Caller::new();
    assert_eq!(create_user(&service, &caller).await.status(), 201);

    let created = loki
        .wait_for(WAIT, |e| e.fields["message"] == "user created")
        .await
        .unwrap_or_else(|| panic!("no `user created` line in Loki: {:?}", loki.entries()));
    assert_eq!(
        created.fields["trace_id"],
        caller.trace_id.as_str(),
        "{}",
        created.line
    );
    let span_id = created.fields["span_id"].as_str().unwrap_or_default();
    assert!(
        span_id.len() == 16 && span_id != caller.span_id,
        "the line carries the service's own span id: {}",
        created.line
    );
    assert_eq!(created.labels["service"], "user");
    assert_eq!(created.labels["level"], "info");
    // Labels are bounded: ids live in the line, never in a label, or every request would
    // make a stream of its own.
    for entry in loki.entries() {
        let names: Vec<&str> = entry.labels.keys().map(String::as_str).collect();
        assert_eq!(names, ["level", "service"], "labels of {}", entry.line);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_in_a_request_reaches_sentry_once_with_its_trace_and_route_and_a_4xx_does_not() {
    let sentry = SentryReceiver::start().await;
    let service = Service::start(&[
        ("SENTRY_DSN", sentry.dsn.as_str()),
        ("CHAOS_ENABLED", "true"),
        ("CHAOS_TOKEN", CHAOS_TOKEN),
    ]);

    // Client errors are the client's: no event.
    let bad = client()
        .get(service.url("/users/not-a-uuid"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let missing = client()
        .get(service.url(&format!("/users/{}", uuid::Uuid::new_v4())))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // A database that stopped answering: taking a connection fails after the pool's
    // acquire timeout, and the request fails with 500.
    inject(
        &service,
        json!({"target": "database", "action": {"abort": {"status": 503}}}),
    )
    .await;
    let caller = Caller::new();
    let failed = read_unknown_user(&service, &caller).await;
    assert_eq!(failed.status(), 500);
    let request_id = failed.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let Some(event) = sentry
        .wait_for(WAIT, |e| e["message"] == "internal error")
        .await
    else {
        service.sigterm();
        let logs = service.wait_for_clean_exit().await;
        panic!(
            "no error event reached Sentry; received {:#?}; the service logged:\n{}",
            sentry.events(),
            logs.join("\n")
        );
    };
    assert_eq!(
        event["contexts"]["trace"]["trace_id"],
        caller.trace_id.as_str(),
        "{event:#}"
    );
    assert_eq!(event["tags"]["http.route"], "/users/{id}", "{event:#}");
    assert_eq!(
        event["tags"]["request_id"],
        request_id.as_str(),
        "{event:#}"
    );
    assert_eq!(
        event["release"],
        format!("user@{}", env!("CARGO_PKG_VERSION"))
    );

    // Once: the HTTP layer logs the 5xx at WARN, below what becomes an event.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = sentry.events();
    assert_eq!(events.len(), 1, "one failure, one event: {events:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn exporters_that_hang_slow_no_request_nor_shutdown_and_lost_spans_are_counted() {
    let (collector, loki) = (hanging_endpoint(), hanging_endpoint());
    let sentry_dsn = hanging_endpoint().replace("http://", "http://publickey@") + "/1";
    let service = Service::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("LOKI_URL", loki.as_str()),
        ("SENTRY_DSN", sentry_dsn.as_str()),
        ("SHUTDOWN_TIMEOUT", "2s"),
        ("CHAOS_ENABLED", "true"),
        ("CHAOS_TOKEN", CHAOS_TOKEN),
    ]);

    // An error, so the Sentry transport has an event to send into the void.
    inject(
        &service,
        json!({"target": "database", "action": {"abort": {"status": 503}}}),
    )
    .await;
    let failed = read_unknown_user(&service, &Caller::new()).await;
    assert_eq!(failed.status(), 500);
    let cleared = client()
        .delete(service.url("/chaos/faults"))
        .bearer_auth(CHAOS_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(
        cleared.status().is_success(),
        "clear faults: {}",
        cleared.status()
    );

    // Every request is answered, and none waits on an exporter: a bound far above this
    // service's milliseconds and far below the exporters' timeouts.
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let started = Instant::now();
        let created = create_user(&service, &Caller::new()).await;
        assert_eq!(created.status(), 201);
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(400),
        "slowest request took {slowest:?}"
    );

    // The spans that could not be delivered are counted where Prometheus reads.
    let lost = r#"otel_sdk_exporter_span_exported_total{error_type="export_failed"}"#;
    let deadline = Instant::now() + WAIT;
    loop {
        let metrics = client().get(service.url("/metrics")).send().await.unwrap();
        let text = metrics.text().await.unwrap();
        if text.lines().any(|line| line.starts_with(lost)) {
            break;
        }
        assert!(Instant::now() < deadline, "no {lost} in:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Shutdown is bounded too (the helper fails past 15 s, or on a non-zero exit).
    let stopping = Instant::now();
    service.sigterm();
    service.wait_for_clean_exit().await;
    eprintln!(
        "exited {:?} after SIGTERM with every exporter hanging",
        stopping.elapsed()
    );
}
