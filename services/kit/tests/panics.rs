//! A handler that panics, with Sentry on: the client gets a 500 problem document, the process
//! goes on serving, and Sentry gets the panic once, linked to the request's trace.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use sloop_kit::Service;
use sloop_kit::testing::{TestApp, TestBackend};
use telemetry::TelemetryConfig;
use telemetry::testing::SentryReceiver;

fn panicking_service() -> Service {
    Service::new("panics", 0).api(|_| {
        Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "fine" }))
    })
}

async fn boom() -> &'static str {
    panic!("the handler broke")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_in_a_request_reaches_sentry_once_with_its_trace_and_route() {
    let sentry = SentryReceiver::start().await;
    let vars = HashMap::from([
        ("SENTRY_DSN", sentry.dsn.clone()),
        ("LOG_FORMAT", "json".to_owned()),
    ]);
    let config = TelemetryConfig::from_lookup("panics", |k| vars.get(k).cloned()).unwrap();
    let _telemetry = telemetry::init_with(config).unwrap();
    let app = TestApp::spawn(panicking_service(), TestBackend::Sqlite).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = app
        .request(reqwest::Method::GET, "/boom")
        .header("traceparent", &format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await;
    response.assert_status(500);
    assert_eq!(
        response.value()["type"]
            .as_str()
            .map(|t| t.ends_with("internal")),
        Some(true)
    );
    app.get("/fine").await.assert_status(200);

    let event = sentry
        .wait_for(Duration::from_secs(10), |e| {
            e["exception"]["values"][0]["type"] == "panic"
        })
        .await
        .unwrap_or_else(|| panic!("no panic event; received {:#?}", sentry.events()));
    assert_eq!(
        event["contexts"]["trace"]["trace_id"], trace_id,
        "{event:#}"
    );
    assert_eq!(event["tags"]["http.route"], "/boom", "{event:#}");
    let message = event["exception"]["values"][0]["value"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("the handler broke"), "{event:#}");

    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = sentry.events();
    assert_eq!(events.len(), 1, "one panic, one event: {events:#?}");
}
