//! One trace from the client to the database change and beyond: the gateway's server span,
//! its client span to the upstream, the upstream's server span, and the consumer span of the
//! service that applied the event the change produced, all parented correctly in OTLP.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use sloop_kit::testing::{OtlpReceiver, SPAN_KIND_CLIENT, SPAN_KIND_SERVER, TestBackend};
use support::Platform;
use telemetry::TelemetryConfig;

/// OTLP span kind of a consumer.
const SPAN_KIND_CONSUMER: i32 = 5;

#[tokio::test(flavor = "multi_thread")]
async fn a_trace_runs_from_the_gateway_through_the_service_to_the_event_consumer() {
    let receiver = OtlpReceiver::start().await;
    let vars: HashMap<&str, String> = HashMap::from([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.clone()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
    ]);
    let guard = telemetry::init_with(
        TelemetryConfig::from_lookup("platform", |k| vars.get(k).cloned()).unwrap(),
    )
    .unwrap();
    let p = Platform::start(TestBackend::Sqlite).await;
    let (me, _) = p.sign_up("trace@example.com").await;
    let (_, admin) = p.sign_up("admin@example.com").await;

    // An admin suspends the user through the gateway; auth consumes UserStatusChanged.
    p.gateway
        .request(reqwest::Method::PUT, &format!("/api/users/{me}/status"))
        .bearer(&admin)
        .json(&json!({ "status": "suspended" }))
        .send()
        .await
        .assert_status(200);
    let wait = Duration::from_secs(10);
    let gateway_server = receiver
        .wait_for(wait, |s| {
            s.kind == SPAN_KIND_SERVER && s.name == "PUT /api/users/{*rest}"
        })
        .await
        .expect("the gateway's server span");
    let trace = gateway_server.trace_id.clone();
    let client = receiver
        .wait_for(wait, |s| {
            // An HTTP client span; the services' database spans are client spans too.
            s.trace_id == trace
                && s.kind == SPAN_KIND_CLIENT
                && s.attributes.contains_key("url.full")
        })
        .await
        .expect("the gateway's client span");
    assert_eq!(client.parent_span_id, gateway_server.span_id);
    assert_eq!(client.name, "PUT /api/users");
    let user_server = receiver
        .wait_for(wait, |s| {
            s.trace_id == trace && s.kind == SPAN_KIND_SERVER && s.name == "PUT /users/{id}/status"
        })
        .await
        .expect("the user service continues the trace");
    assert_eq!(user_server.parent_span_id, client.span_id);
    let consumer = receiver
        .wait_for(wait, |s| {
            s.trace_id == trace && s.kind == SPAN_KIND_CONSUMER
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "auth's consumer span joins the trace: {:#?}",
                receiver.spans()
            )
        });
    assert_eq!(
        consumer.parent_span_id, user_server.span_id,
        "a child of the request that produced it"
    );
    assert_eq!(consumer.name, "process sloop.user");
    assert_eq!(consumer.attributes["messaging.consumer.group.name"], "auth");
    assert_eq!(
        consumer.attributes["cloudevents.event_type"],
        "sloop.user.status_changed"
    );
    // The messaging conventions' process span: required attributes typed, nothing else.
    let problems = consumer.convention_problems(
        &[
            ("messaging.system", "string"),
            ("messaging.operation.name", "string"),
            ("messaging.operation.type", "string"),
            ("messaging.destination.name", "string"),
            ("messaging.consumer.group.name", "string"),
            ("messaging.message.id", "string"),
        ],
        &[
            ("cloudevents.event_type", "string"),
            ("cloudevents.event_subject", "string"),
        ],
    );
    assert!(problems.is_empty(), "{problems:#?}");
    // The handler's statements are children of the process span.
    let handled = receiver
        .wait_for(wait, |s| {
            s.is_child_of(&consumer) && s.attributes.contains_key("db.system.name")
        })
        .await
        .expect("the consumer's database spans");
    assert_eq!(handled.attributes["db.system.name"], "sqlite");
    p.stop().await;
    guard.shutdown().await;
}
