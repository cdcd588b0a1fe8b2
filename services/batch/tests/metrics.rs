//! The batch metrics on `/metrics`: runs by job, trigger and status, their duration, the
//! last success time, and events applied to the read model, in a format Prometheus accepts.
//! One test in its own binary, as the registry is process-wide.

use std::time::Duration;

use serde_json::json;
use sloop_batch::BatchSettings;
use sloop_batch::schedule::JobSchedule;
use sloop_kit::Event;
use sloop_kit::testing::{TestApp, TestBackend};

#[tokio::test]
async fn runs_and_read_model_events_are_exported() {
    let settings = BatchSettings {
        user_stats_schedule: JobSchedule::Off,
        sales_report_schedule: JobSchedule::Off,
        chat_activity_schedule: JobSchedule::Off,
        cleanup_schedule: JobSchedule::Off,
        ..BatchSettings::default()
    };
    let app = TestApp::spawn(sloop_batch::service(settings), TestBackend::Sqlite).await;
    let order = json!({ "order_id": "o-1", "user_id": "u-1", "total": { "amount": 1999, "currency": "EUR" }, "charge_id": "c-1" });
    let event = Event::new("store", sloop_events::store::ORDER_CONFIRMED, "o-1", &order).unwrap();
    app.memory_bus().publish(event.to_message());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (applied,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM kit_processed_events")
            .fetch_one(app.db().pool())
            .await
            .unwrap();
        if applied == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "event not applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let run = app
        .request(reqwest::Method::POST, "/jobs/sales-report/runs")
        .send()
        .await
        .assert_status(202)
        .value();
    let path = format!("/runs/{}", run["id"].as_str().unwrap());
    while app.get(&path).await.value()["status"] == "running" {
        assert!(tokio::time::Instant::now() < deadline, "run not finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The run's metrics are recorded a moment after its row says it ended.
    let body = loop {
        let body = app.get("/metrics").await.assert_status(200).text();
        if body.contains("batch_job_runs_total{") {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no run metrics:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let line = |needle: &[&str]| {
        body.lines()
            .find(|l| !l.starts_with('#') && needle.iter().all(|n| l.contains(n)))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{body}"))
            .to_owned()
    };
    let runs = line(&[
        "batch_job_runs_total{",
        "service=\"batch\"",
        "job_name=\"sales-report\"",
        "trigger=\"manual\"",
        "status=\"succeeded\"",
    ]);
    assert!(runs.ends_with(" 1"), "{runs}");
    line(&[
        "batch_job_duration_seconds_bucket{",
        "job_name=\"sales-report\"",
        "status=\"succeeded\"",
        "le=\"0.2\"",
    ]);
    let last = line(&[
        "batch_job_last_success_timestamp_seconds{",
        "job_name=\"sales-report\"",
    ]);
    let seconds: f64 = last.rsplit(' ').next().unwrap().parse().unwrap();
    let now = sloop_kit::clock::now_millis() as f64 / 1000.0;
    assert!((now - 60.0..=now).contains(&seconds), "{last}");
    let events = line(&[
        "batch_read_model_events_total{",
        "service=\"batch\"",
        "type=\"order_confirmed\"",
    ]);
    assert!(events.ends_with(" 1"), "{events}");
    sloop_kit::testing::assert_promtool_accepts(&body);
    app.stop().await;
}
