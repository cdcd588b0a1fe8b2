//! Traces over OTLP: the server span continues an incoming `traceparent`, and a call made
//! through the telemetry client continues the caller's trace on the callee.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use sloop_kit::testing::{
    OtlpReceiver, SPAN_KIND_CLIENT as CLIENT, SPAN_KIND_SERVER as SERVER, TestApp, TestBackend,
};
use telemetry::TelemetryConfig;

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

/// A second service whose only route calls the user service as an upstream.
fn caller() -> sloop_kit::Service {
    sloop_kit::Service::new("caller", 0)
        .upstream("user", 0)
        .api(|ctx| {
            let user = ctx.upstream("user").clone();
            Router::new().route(
                "/proxy",
                get(move || async move {
                    let status = user
                        .call(reqwest::Method::GET, "/users", "/users", None::<&()>)
                        .await
                        .map(|r| r.status().as_u16());
                    format!("{status:?}")
                }),
            )
        })
}

#[tokio::test]
async fn traces_continue_across_requests_and_services() {
    let receiver = OtlpReceiver::start().await;
    let guard = telemetry::init_with(config_for(&receiver)).unwrap();
    let user = TestApp::spawn(sloop_user::service(), TestBackend::Sqlite).await;

    // 1. An incoming traceparent becomes the parent of the server span.
    user.request(reqwest::Method::GET, "/users")
        .header("traceparent", &format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .send()
        .await
        .assert_status(200);
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
    assert_eq!(server_span.attributes["http.response.status_code"], 200);

    // 2. Caller -> telemetry client -> user service: one trace, properly parented.
    let caller = TestApp::builder(caller())
        .upstream("user", user.url(""))
        .spawn()
        .await;
    let proxied = caller.get("/proxy").await;
    assert_eq!(proxied.text(), "Ok(200)");
    guard.force_flush();
    let caller_server = receiver
        .wait_for(Duration::from_secs(10), |s| {
            s.name == "GET /proxy" && s.kind == SERVER
        })
        .await
        .expect("caller's server span");
    let client_span = receiver
        .wait_for(Duration::from_secs(10), |s| {
            s.trace_id == caller_server.trace_id
                && s.kind == CLIENT
                && s.attributes.contains_key("url.full")
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

    caller.stop().await;
    user.stop().await;
    guard.shutdown().await;
}
