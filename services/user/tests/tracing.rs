//! Traces over OTLP: the server span continues an incoming `traceparent`, and a call made
//! through the telemetry client continues the caller's trace on the callee.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use sloop_kit::testing::{
    OtlpReceiver, SPAN_KIND_CLIENT as CLIENT, SPAN_KIND_SERVER as SERVER, TestApp, TestBackend,
};
use telemetry::{HttpClient, TelemetryConfig};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn config_for(receiver: &OtlpReceiver) -> TelemetryConfig {
    let vars: HashMap<&str, String> = HashMap::from([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.clone()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
    ]);
    TelemetryConfig::from_lookup("user", |k| vars.get(k).cloned()).unwrap()
}

/// A second service whose only route calls the user service through `HttpClient`.
fn caller_router(user_base: String) -> Router {
    let client = HttpClient::new("caller");
    Router::new()
        .route(
            "/proxy",
            get(
                |State((client, base)): State<(HttpClient, String)>| async move {
                    let request = client.request(reqwest::Method::GET, &format!("{base}/users"));
                    let status = client
                        .send(request, "/users")
                        .await
                        .map(|r| r.status().as_u16());
                    format!("{status:?}")
                },
            ),
        )
        .with_state((client, user_base))
}

#[tokio::test]
async fn traces_continue_across_requests_and_services() {
    let receiver = OtlpReceiver::start().await;
    let guard = telemetry::init_with(config_for(&receiver)).unwrap();
    let user = TestApp::spawn(
        sloop_user::SPEC,
        TestBackend::Sqlite,
        &sloop_user::MIGRATIONS,
        sloop_user::router,
    )
    .await;

    // 1. An incoming traceparent becomes the parent of the server span.
    let response = user
        .client
        .get(user.url("/users"))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    guard.force_flush();
    let server_span = receiver
        .wait_for(Duration::from_secs(10), |s| {
            s.trace_id == TRACE_ID && s.kind == SERVER
        })
        .await
        .expect("the server span reaches the OTLP receiver");
    assert_eq!(server_span.parent_span_id, PARENT_ID);
    assert_eq!(server_span.service, "user");
    assert_eq!(server_span.name, "GET /users");
    assert_eq!(server_span.attributes["http.route"], "/users");
    assert_eq!(server_span.attributes["http.response.status_code"], "200");

    // 2. Caller -> telemetry client -> user service: one trace, properly parented.
    let caller_db = TestApp::spawn(
        sloop_kit::ServiceSpec {
            name: "caller",
            default_port: 0,
        },
        TestBackend::Sqlite,
        &sloop_user::MIGRATIONS,
        |_| caller_router(user.url("")),
    )
    .await;
    let proxied = caller_db
        .client
        .get(caller_db.url("/proxy"))
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.text().await.unwrap(), "Ok(200)");
    guard.force_flush();
    let caller_server = receiver
        .wait_for(Duration::from_secs(10), |s| {
            s.name == "GET /proxy" && s.kind == SERVER
        })
        .await
        .expect("caller's server span");
    let client_span = receiver
        .wait_for(Duration::from_secs(10), |s| {
            s.trace_id == caller_server.trace_id && s.kind == CLIENT
        })
        .await
        .expect("caller's client span, in the caller's trace");
    assert_eq!(client_span.parent_span_id, caller_server.span_id);
    let callee_server = receiver
        .wait_for(Duration::from_secs(10), |s| {
            s.trace_id == caller_server.trace_id && s.kind == SERVER && s.name == "GET /users"
        })
        .await
        .expect("the callee continues the caller's trace");
    assert_eq!(callee_server.parent_span_id, client_span.span_id);
    assert_ne!(
        caller_server.trace_id, TRACE_ID,
        "a fresh request starts a fresh trace"
    );

    caller_db.stop().await;
    user.stop().await;
    guard.shutdown().await;
}
