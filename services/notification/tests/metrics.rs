//! `/metrics` carries the delivery metrics, labelled by service and channel only, in a
//! format Prometheus accepts.

use std::time::Duration;

use sloop_events::user as user_events;
use sloop_kit::Event;
use sloop_kit::testing::{TestApp, TestBackend};

#[tokio::test]
async fn delivery_metrics_pass_promtool() {
    let settings = sloop_notification::NotificationSettings::default();
    let app = TestApp::spawn(sloop_notification::service(settings), TestBackend::Sqlite).await;
    let user = uuid::Uuid::now_v7().to_string();
    let created = user_events::UserCreated {
        id: user.clone(),
        email: "m@example.com".to_owned(),
        name: "M".to_owned(),
        status: user_events::UserStatus::Active,
        version: 1,
    };
    let event = Event::new("user", user_events::CREATED, &user, &created).unwrap();
    app.memory_bus().publish(event.to_message());

    let wanted = [
        "notification_deliveries_total{",
        "channel=\"email\"",
        "outcome=\"sent\"",
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let body = loop {
        let body = app.get("/metrics").await.assert_status(200).text();
        if body.lines().any(|l| wanted.iter().all(|n| l.contains(n))) {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the welcome email was never counted:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for needle in [
        "notification_delivery_duration_seconds_bucket{",
        "notification_deliveries_in_flight{service=\"notification\"}",
        "# TYPE notification_deliveries_total counter",
    ] {
        assert!(body.contains(needle), "no {needle} in:\n{body}");
    }
    assert!(
        !body.contains(&user),
        "raw ids must never become label values"
    );

    sloop_kit::testing::assert_promtool_accepts(&body);
    app.stop().await;
}
