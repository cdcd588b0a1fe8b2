//! The audit metrics on `/metrics`: entries appended by event type (undeclared types under
//! `other`), and the chain gauge following each verification, in a format Prometheus
//! accepts. One test in its own binary, as the registry is process-wide.

use std::time::Duration;

use serde_json::json;
use sloop_kit::testing::{TestApp, TestBackend};
use sloop_kit::{Event, EventType};

const MYSTERY: EventType = EventType {
    name: "sloop.payment.mystery",
    topic: sloop_events::payment::TOPIC,
    version: 1,
};

#[tokio::test]
async fn entries_and_chain_state_are_exported() {
    let app = TestApp::spawn(sloop_audit::service(), TestBackend::Sqlite).await;
    let created = sloop_events::user::CREATED;
    for (kind, subject) in [(created, "u-1"), (created, "u-2"), (MYSTERY, "p-1")] {
        let event = Event::new("test", kind, subject, &json!({})).unwrap();
        app.memory_bus().publish(event.to_message());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.get("/audit/verify").await.value()["entries"] != 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "events not recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let body = app.get("/metrics").await.assert_status(200).text();
    let line = |body: &str, needle: &[&str]| {
        body.lines()
            .find(|l| needle.iter().all(|n| l.contains(n)))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{body}"))
            .to_owned()
    };
    let user_created = line(
        &body,
        &[
            "audit_entries_total{",
            "service=\"audit\"",
            "event_type=\"sloop.user.created\"",
        ],
    );
    assert!(user_created.ends_with(" 2"), "{user_created}");
    let other = line(&body, &["audit_entries_total{", "event_type=\"other\""]);
    assert!(other.ends_with(" 1"), "{other}");
    assert!(
        !body.contains(MYSTERY.name),
        "undeclared types never become label values"
    );
    line(&body, &["audit_chain_intact{service=\"audit\"} 1"]);
    sloop_kit::testing::assert_promtool_accepts(&body);

    sqlx::query("UPDATE audit_log SET subject = 'u-3' WHERE seq = 2")
        .execute(app.db().pool())
        .await
        .unwrap();
    assert_eq!(app.get("/audit/verify").await.value()["intact"], false);
    let body = app.get("/metrics").await.text();
    line(&body, &["audit_chain_intact{service=\"audit\"} 0"]);
    app.stop().await;
}
