//! The user service holds 1000 requests per second with p99 under 200 ms, failures under
//! 0.1 % and nothing dropped, telemetry on (spans exported over OTLP, metrics recorded).
//! The same scenario as tests/load/scenarios/user-mix.yaml, shortened for CI.

use std::collections::HashMap;
use std::sync::Arc;

use loadtest::engine::{Live, run};
use loadtest::scenario::Scenario;
use sloop_kit::testing::{OtlpReceiver, TestApp, TestBackend};

#[tokio::test(flavor = "multi_thread")]
async fn user_service_holds_1000_rps() {
    let receiver = OtlpReceiver::start().await;
    let vars = HashMap::from([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.clone()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]);
    let guard = telemetry::init_with(
        telemetry::TelemetryConfig::from_lookup("user", |k| vars.get(k).cloned()).unwrap(),
    )
    .unwrap();
    let app = TestApp::spawn(
        sloop_user::SPEC,
        TestBackend::Sqlite,
        &sloop_user::MIGRATIONS,
        sloop_user::router,
    )
    .await;

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/user-mix.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut scenario = Scenario::parse(path, &text).unwrap();
    let seconds = std::env::var("SLOOP_LOAD_SECONDS").unwrap_or_else(|_| "10".into());
    scenario.stages[0].duration = format!("{seconds}s");
    let thresholds = scenario.thresholds(path).unwrap();

    let result = run(&scenario, &app.url(""), Arc::new(Live::default()))
        .await
        .unwrap();
    let results = loadtest::report::results(&scenario.name, &app.url(""), &result, &thresholds);
    println!("{}", loadtest::report::table(&results));
    assert!(
        results.passed,
        "thresholds failed:\n{}",
        loadtest::report::table(&results)
    );
    assert!(
        results.achieved_rps > 950.0,
        "achieved {} req/s",
        results.achieved_rps
    );

    guard.force_flush();
    let exported = receiver
        .wait_for(std::time::Duration::from_secs(10), |s| {
            s.name == "GET /users/{id}"
        })
        .await;
    assert!(
        exported.is_some(),
        "telemetry was on: request spans reached the collector"
    );
    app.stop().await;
    guard.shutdown().await;
}
