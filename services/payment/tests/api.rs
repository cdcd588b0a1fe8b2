//! The payment API over HTTP on SQLite and PostgreSQL: one charge per order, declines,
//! transient provider errors retried then failed, refunds, the provider's run-time
//! settings, and the events each outcome publishes.

use std::time::Duration;

use serde_json::{Value, json};
use sloop_events::payment as events;
use sloop_kit::on_both_backends;
use sloop_kit::testing::{TestApp, TestBackend};
use sloop_payment::PaymentSettings;
use sloop_payment::provider::ProviderSettings;

on_both_backends!(
    a_charge_is_made_once_per_order,
    declines_and_refunds_are_announced,
    transient_errors_are_retried_then_fail,
    the_provider_changes_at_run_time,
    bad_input_and_roles,
);

const ORDER_1: &str = "0192f0c0-0000-7000-8000-000000000001";
const ORDER_2: &str = "0192f0c0-0000-7000-8000-000000000002";
const ORDER_3: &str = "0192f0c0-0000-7000-8000-000000000003";
const ORDER_4: &str = "0192f0c0-0000-7000-8000-000000000004";
const ORDER_5: &str = "0192f0c0-0000-7000-8000-000000000005";
const ORDER_6: &str = "0192f0c0-0000-7000-8000-000000000006";

async fn spawn(backend: TestBackend, provider: ProviderSettings) -> TestApp {
    let settings = PaymentSettings {
        provider,
        ..PaymentSettings::default()
    };
    TestApp::spawn(sloop_payment::service(settings), backend).await
}

fn instant() -> ProviderSettings {
    ProviderSettings {
        latency_p50_ms: 1.0,
        latency_p99_ms: 2.0,
        ..ProviderSettings::default()
    }
}

fn charge(order: &str, cents: i64, method: &str) -> Value {
    json!({ "order_id": order, "amount": { "amount": cents, "currency": "EUR" }, "payment_method": method })
}

async fn a_charge_is_made_once_per_order(backend: TestBackend) {
    let app = spawn(backend, instant()).await;
    let first = app.post("/charges", &charge(ORDER_1, 1999, "card")).await;
    first.assert_status(201);
    let first = first.value();
    assert_eq!(first["status"], "succeeded");
    assert_eq!(first["attempts"], 1);
    assert!(
        first["provider_reference"]
            .as_str()
            .unwrap()
            .starts_with("sim_")
    );

    let again = app.post("/charges", &charge(ORDER_1, 1999, "card")).await;
    again.assert_status(200);
    assert_eq!(again.value(), first, "a retry answers the same charge");
    app.post("/charges", &charge(ORDER_1, 2500, "card"))
        .await
        .assert_problem(409, "one order, one charge");

    let by_order = app
        .get(&format!("/charges?order_id={ORDER_1}"))
        .await
        .assert_status(200)
        .value();
    assert_eq!(by_order, first);
    let by_id = app
        .get(&format!("/charges/{}", first["id"].as_str().unwrap()))
        .await
        .assert_status(200)
        .value();
    assert_eq!(by_id, first);

    app.wait_for_outbox_drained(Duration::from_secs(5)).await;
    let published = app.memory_bus().events(events::TOPIC);
    assert_eq!(published.len(), 1);
    assert!(published[0].is(events::SUCCEEDED));
    assert_eq!(published[0].subject, ORDER_1);
    app.stop().await;
}

async fn declines_and_refunds_are_announced(backend: TestBackend) {
    let app = spawn(backend, instant()).await;
    let declined = app
        .post("/charges", &charge(ORDER_2, 500, "test-decline"))
        .await
        .assert_status(201)
        .value();
    assert_eq!(declined["status"], "failed");
    assert!(declined["reason"].as_str().unwrap().contains("declined"));
    let id = declined["id"].as_str().unwrap();
    app.post(&format!("/charges/{id}/refund"), &json!({}))
        .await
        .assert_problem(409, "only a succeeded charge");

    let paid = app
        .post("/charges", &charge(ORDER_3, 700, "card"))
        .await
        .assert_status(201)
        .value();
    let path = format!("/charges/{}/refund", paid["id"].as_str().unwrap());
    let refunded = app
        .post(&path, &json!({ "reason": "damaged in transit" }))
        .await
        .assert_status(200)
        .value();
    assert_eq!(refunded["status"], "refunded");
    assert_eq!(refunded["reason"], "damaged in transit");
    // Refunding again changes nothing and announces nothing.
    app.post(&path, &json!({})).await.assert_status(200);

    app.wait_for_outbox_drained(Duration::from_secs(5)).await;
    let kinds: Vec<String> = app
        .memory_bus()
        .events(events::TOPIC)
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            events::FAILED.name,
            events::SUCCEEDED.name,
            events::REFUNDED.name
        ]
    );
    let (refunds,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM refunds")
        .fetch_one(app.db().executor())
        .await
        .unwrap();
    assert_eq!(refunds, 1);
    app.stop().await;
}

async fn transient_errors_are_retried_then_fail(backend: TestBackend) {
    let app = spawn(
        backend,
        ProviderSettings {
            error_rate: 1.0,
            ..instant()
        },
    )
    .await;
    let pending = app
        .post("/charges", &charge(ORDER_4, 900, "card"))
        .await
        .assert_status(201)
        .value();
    assert_eq!(
        pending["status"], "pending",
        "one failed call leaves it to the worker"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let now = app
            .get(&format!("/charges?order_id={ORDER_4}"))
            .await
            .value();
        if now["status"] != "pending" {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still pending: {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["attempts"], 5, "{failed}");
    assert!(
        failed["reason"].as_str().unwrap().contains("5 attempts"),
        "{failed}"
    );
    app.stop().await;
}

async fn the_provider_changes_at_run_time(backend: TestBackend) {
    let app = spawn(backend, instant()).await;
    let settings = app.get("/provider").await.assert_status(200).value();
    assert_eq!(settings["decline_rate"], 0.0);
    let declining = json!({ "latency_p50_ms": 1.0, "latency_p99_ms": 2.0, "decline_rate": 1.0, "error_rate": 0.0 });
    app.put("/provider", &declining).await.assert_status(200);
    let declined = app
        .post("/charges", &charge(ORDER_5, 100, "card"))
        .await
        .assert_status(201)
        .value();
    assert_eq!(declined["status"], "failed");
    assert!(
        declined["reason"]
            .as_str()
            .unwrap()
            .contains("insufficient funds")
    );
    app.put("/provider", &json!({ "latency_p50_ms": 10.0, "latency_p99_ms": 5.0, "decline_rate": 0.0, "error_rate": 0.0 }))
        .await
        .assert_problem(422, "latency_p99_ms");
    app.put("/provider", &json!({ "latency_p50_ms": 1.0 }))
        .await
        .assert_status(422);
    app.stop().await;
}

async fn bad_input_and_roles(backend: TestBackend) {
    let app = spawn(backend, instant()).await;
    app.post("/charges", &charge(ORDER_6, 0, "card"))
        .await
        .assert_problem(422, "positive");
    app.post("/charges", &charge(ORDER_6, 100, ""))
        .await
        .assert_problem(422, "payment_method");
    app.post("/charges", &json!({ "order_id": "x" }))
        .await
        .assert_status(422);
    app.get("/charges/nope")
        .await
        .assert_problem(404, "no charge has id");
    app.get("/charges?order_id=missing")
        .await
        .assert_problem(400, "not an order id");
    app.get(&format!("/charges?order_id={}", uuid::Uuid::now_v7()))
        .await
        .assert_problem(404, "no charge");
    app.post("/charges", &charge("order-7", 100, "card"))
        .await
        .assert_problem(422, "not an order id");
    app.request(reqwest::Method::PUT, "/provider")
        .header("x-user-id", "someone")
        .json(&json!({ "latency_p50_ms": 1.0, "latency_p99_ms": 2.0, "decline_rate": 1.0, "error_rate": 0.0 }))
        .send()
        .await
        .assert_problem(403, "admin");
    app.get("/readyz").await.assert_status(200);
    let doc = app.get("/openapi.json").await.assert_status(200).value();
    assert!(doc["paths"]["/charges/{id}/refund"].is_object());
    app.stop().await;
}
