//! `/metrics` exposes RED metrics by route template, in a format Prometheus accepts.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;
use sloop_kit::testing::{TestApp, TestBackend};

#[tokio::test]
async fn metrics_use_route_templates_and_pass_promtool() {
    let app = TestApp::spawn(
        sloop_user::SPEC,
        TestBackend::Sqlite,
        &sloop_user::MIGRATIONS,
        sloop_user::router,
    )
    .await;
    let created: serde_json::Value = app
        .client
        .post(app.url("/users"))
        .json(&json!({ "email": "m@example.com", "name": "M" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    for _ in 0..3 {
        app.client
            .get(app.url(&format!("/users/{id}")))
            .send()
            .await
            .unwrap();
    }
    app.client
        .get(app.url(&format!("/users/{}", uuid::Uuid::now_v7())))
        .send()
        .await
        .unwrap();

    let body = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
    assert!(!body.contains(id), "raw ids must never become label values");
    assert!(
        !body.contains("route=\"/metrics\""),
        "scrapes are not API traffic"
    );

    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `{promtool}` ({e}); install it with `apt-get install prometheus` or run ./scripts/test.sh")
        });
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    app.stop().await;
}
