//! `/metrics` exposes RED metrics by route template, in a format Prometheus accepts.

use serde_json::json;
use sloop_kit::testing::{TestApp, TestBackend};

#[tokio::test]
async fn metrics_use_route_templates_and_pass_promtool() {
    let app = TestApp::spawn(sloop_user::service(), TestBackend::Sqlite).await;
    let created = app
        .post("/users", &json!({ "email": "m@example.com", "name": "M" }))
        .await
        .assert_status(201)
        .value();
    let id = created["id"].as_str().unwrap();
    for _ in 0..3 {
        app.get(&format!("/users/{id}")).await.assert_status(200);
    }
    app.get(&format!("/users/{}", uuid::Uuid::now_v7()))
        .await
        .assert_status(404);
    // The relay publishes the UserCreated event and reports its backlog within a second.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

    let body = app.get("/metrics").await.assert_status(200).text();
    let line = |needle: &[&str]| {
        body.lines()
            .find(|l| needle.iter().all(|n| l.contains(n)))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{body}"))
            .to_owned()
    };
    let ok_bucket = line(&[
        "http_server_request_duration_seconds_bucket{",
        "route=\"/users/{id}\"",
        "status=\"200\"",
        "le=\"0.2\"",
    ]);
    assert!(
        ok_bucket.ends_with(" 3"),
        "three fast GETs under 200 ms: {ok_bucket}"
    );
    let not_found = line(&[
        "http_server_requests_total{",
        "route=\"/users/{id}\"",
        "status=\"404\"",
    ]);
    assert!(not_found.ends_with(" 1"), "{not_found}");
    line(&[
        "http_server_requests_total{",
        "method=\"POST\"",
        "route=\"/users\"",
        "status=\"201\"",
        "service=\"user\"",
    ]);
    line(&["http_server_active_requests{"]);
    let sent = line(&[
        "messaging_client_sent_messages_total{",
        "destination=\"sloop.user\"",
        "outcome=\"ok\"",
    ]);
    assert!(sent.ends_with(" 1"), "one event published: {sent}");
    line(&["outbox_pending_events{service=\"user\"} 0"]);
    line(&["messaging_client_operation_duration_seconds_bucket{"]);
    assert!(!body.contains(id), "raw ids must never become label values");
    assert!(
        !body.contains("route=\"/metrics\""),
        "scrapes are not API traffic"
    );

    sloop_kit::testing::assert_promtool_accepts(&body);
    app.stop().await;
}
