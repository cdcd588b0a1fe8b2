//! The fault layer as every service gets it from the chassis: off by default (no admin API),
//! and when on, each action does to a real request over a real connection what it says.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};
use sloop_kit::Service;
use sloop_kit::testing::TestApp;

const TOKEN: &str = "chaos-test-token";

fn service(name: &'static str) -> Service {
    Service::new(name, 0).api(|_| {
        Router::new()
            .route("/things/{id}", get(|| async { "a thing" }))
            .route("/other", get(|| async { "other" }))
    })
}

async fn with_chaos() -> TestApp {
    TestApp::builder(service("things"))
        .chaos(TOKEN)
        .spawn()
        .await
}

async fn apply(app: &TestApp, rule: Value) -> Value {
    let response = app
        .request(reqwest::Method::POST, "/chaos/faults")
        .header("authorization", &format!("Bearer {TOKEN}"))
        .json(&rule)
        .send()
        .await;
    response.assert_status(201);
    response.value()
}

#[tokio::test]
async fn with_chaos_off_there_is_no_admin_api_and_nothing_is_injected() {
    let app = TestApp::spawn(service("quiet"), sloop_kit::testing::TestBackend::Sqlite).await;
    let listed = app
        .request(reqwest::Method::GET, "/chaos/faults")
        .header("authorization", &format!("Bearer {TOKEN}"))
        .send()
        .await;
    listed.assert_status(404);
    app.get("/things/1").await.assert_status(200);
    // Metrics are per process; other tests here run services with chaos on.
    let metrics = app.get("/metrics").await.text();
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("chaos_") && l.contains(r#"service="quiet""#)),
        "{metrics}"
    );
}

#[tokio::test]
async fn abort_answers_with_a_problem_in_the_service_place() {
    let app = with_chaos().await;
    apply(
        &app,
        json!({"match": {"route": "/things/{id}"}, "action": {"abort": {"status": 503, "detail": "injected"}}}),
    )
    .await;
    let response = app.get("/things/7").await;
    response.assert_problem(503, "injected");
    app.get("/other").await.assert_status(200);
    assert_injected(
        &app,
        &[
            r#"fault="abort""#,
            r#"route="/things/{id}""#,
            r#"service="things""#,
        ],
    )
    .await;
    let metrics = app.get("/metrics").await.text();
    assert!(
        metrics.contains(r#"chaos_faults_active{service="things"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn delay_holds_the_request_then_lets_it_through() {
    let app = with_chaos().await;
    apply(
        &app,
        json!({"match": {"method": "GET", "route": "/things/{id}", "headers": {"x-canary": "yes"}},
               "action": {"delay": {"fixed": "300ms"}}}),
    )
    .await;
    let started = Instant::now();
    let response = app
        .request(reqwest::Method::GET, "/things/1")
        .header("x-canary", "yes")
        .send()
        .await;
    response.assert_status(200);
    // A lower bound only: the delay must have happened; how much longer it took is noise.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.text(), "a thing");
}

#[tokio::test]
async fn reset_drops_the_connection_without_an_answer() {
    let app = with_chaos().await;
    apply(
        &app,
        json!({"match": {"route": "/things/{id}"}, "action": "reset"}),
    )
    .await;
    let outcome = app.client.get(app.url("/things/1")).send().await;
    match outcome {
        Err(err) => assert!(!err.is_timeout(), "{err}"),
        Ok(response) => {
            // Some clients see the head before the body fails; then reading it must fail.
            let status = response.status();
            assert!(
                response.bytes().await.is_err(),
                "a complete {status} answer came back"
            );
        }
    }
}

#[tokio::test]
async fn hang_never_answers_until_the_client_gives_up() {
    let app = with_chaos().await;
    apply(
        &app,
        json!({"match": {"route": "/things/{id}"}, "action": "hang", "ttl": "1m"}),
    )
    .await;
    let err = app
        .client
        .get(app.url("/things/1"))
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .expect_err("no answer");
    assert!(err.is_timeout(), "{err}");
    // A request hanging when the fault is cleared is let go (its connection dropped), and
    // the next one is answered.
    let (client, url) = (app.client.clone(), app.url("/things/2"));
    let hanging = tokio::spawn(async move {
        client
            .get(url)
            .timeout(Duration::from_secs(60))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cleared = app
        .request(reqwest::Method::DELETE, "/chaos/faults")
        .header("authorization", &format!("Bearer {TOKEN}"))
        .send()
        .await;
    assert_eq!(cleared.value()["cleared"], 1);
    let released = tokio::time::timeout(Duration::from_secs(20), hanging)
        .await
        .expect("the hanging request is let go once its fault is cleared")
        .unwrap();
    let err = released.expect_err("a hang ends without an answer");
    assert!(!err.is_timeout(), "{err}");
    app.get("/things/1").await.assert_status(200);
}

static LEDGER: sqlx::migrate::Migrator = sqlx::migrate!("tests/ledger");

const ENTRY: sloop_kit::EventType = sloop_kit::EventType {
    name: "test.chaos.entry",
    topic: "test.chaos",
    version: 1,
};

/// A service with a database and an outbox: `/count` queries, `/write` writes an event.
fn with_dependencies() -> Service {
    Service::new("deps", 0)
        .database(&LEDGER)
        .publishes(&[ENTRY])
        .api(|ctx| {
            let (reader, writer) = (ctx.clone(), ctx.clone());
            Router::new()
                .route(
                    "/count",
                    get(move || async move {
                        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM entries")
                            .fetch_one(reader.db().pool())
                            .await
                            .map_err(|e| sloop_kit::Problem::internal(&e))?;
                        Ok::<_, sloop_kit::Problem>(n.to_string())
                    }),
                )
                .route(
                    "/write",
                    axum::routing::post(move || async move {
                        let mut tx = writer
                            .db()
                            .begin()
                            .await
                            .map_err(|e| sloop_kit::Problem::internal(&e))?;
                        writer
                            .outbox()
                            .append(&mut tx, ENTRY, "s", &json!({"n": 1}))
                            .await
                            .map_err(|e| sloop_kit::Problem::internal(&e))?;
                        tx.commit()
                            .await
                            .map_err(|e| sloop_kit::Problem::internal(&e))?;
                        writer.outbox().wake();
                        Ok::<_, sloop_kit::Problem>("written")
                    }),
                )
        })
}

#[tokio::test]
async fn a_database_delay_holds_every_query_until_it_is_deleted() {
    let app = TestApp::builder(with_dependencies())
        .chaos(TOKEN)
        .spawn()
        .await;
    let fault = apply(
        &app,
        json!({"target": "database", "action": {"delay": {"fixed": "400ms"}}}),
    )
    .await;
    let started = Instant::now();
    app.get("/count").await.assert_status(200);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "the query took {:?}",
        started.elapsed()
    );
    // The API itself is not the target: the probes answer at once.
    app.get("/healthz").await.assert_status(200);
    app.request(
        reqwest::Method::DELETE,
        &format!("/chaos/faults/{}", fault["id"].as_str().unwrap()),
    )
    .header("authorization", &format!("Bearer {TOKEN}"))
    .send()
    .await
    .assert_status(204);
    assert_injected(&app, &[r#"route="database""#, r#"fault="delay""#]).await;
}

/// An abort below probability 1 fails its share of queries. The pool retries a refused
/// connection on its own, so a fault decided per connection attempt would fail almost none.
#[tokio::test]
async fn a_database_abort_fails_about_its_share_of_queries() {
    let app = TestApp::builder(with_dependencies())
        .chaos(TOKEN)
        .spawn()
        .await;
    apply(
        &app,
        json!({"target": "database", "action": {"abort": {"status": 503}}, "probability": 0.5}),
    )
    .await;
    // Ten at once: with each query's dice rolled once, all ten pass one time in 1024.
    let answers = futures::future::join_all((0..10).map(|_| app.get("/count"))).await;
    let failed = answers
        .iter()
        .filter(|a| a.status.is_server_error())
        .count();
    assert!(
        failed > 0,
        "no query failed under a database abort at probability 0.5"
    );
    app.get("/healthz").await.assert_status(200);
    assert_injected(&app, &[r#"route="database""#, r#"fault="abort""#]).await;
}

#[tokio::test]
async fn a_publish_abort_keeps_events_in_the_outbox_until_it_goes() {
    let bus = sloop_kit::EventBus::connect(&sloop_kit::BusUrl::Memory, "test").unwrap();
    let mut subscription = bus.subscribe("reader", &[ENTRY.topic.to_owned()]).unwrap();
    let app = TestApp::builder(with_dependencies())
        .bus(bus.clone())
        .chaos(TOKEN)
        .spawn()
        .await;
    apply(
        &app,
        json!({"target": "publish", "action": {"abort": {"status": 503}}}),
    )
    .await;
    app.post("/write", &json!({})).await.assert_status(200);
    let nothing = tokio::time::timeout(Duration::from_secs(2), subscription.next()).await;
    assert!(nothing.is_err(), "published through a publish fault");
    assert_injected(&app, &[r#"route="test.chaos""#, r#"fault="abort""#]).await;
    app.request(reqwest::Method::DELETE, "/chaos/faults")
        .header("authorization", &format!("Bearer {TOKEN}"))
        .send()
        .await
        .assert_status(200);
    let delivered = tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .expect("the event is published once the fault is gone")
        .unwrap();
    assert_eq!(delivered.message.topic, ENTRY.topic);
}

#[test]
fn dependency_faults_refuse_what_cannot_apply_to_them() {
    let rule: chaos::Rule = serde_json::from_value(
        json!({"target": "database", "match": {"route": "/x"}, "action": "reset"}),
    )
    .unwrap();
    let err = rule.check("deps").unwrap_err();
    assert!(err.contains("drop match"), "{err}");
    let rule: chaos::Rule =
        serde_json::from_value(json!({"target": "consume", "action": "hang"})).unwrap();
    assert!(rule.check("deps").unwrap_err().contains("delay or abort"));
}

/// Asserts that `/metrics` counts an injected fault carrying every one of `labels`.
async fn assert_injected(app: &TestApp, labels: &[&str]) {
    let metrics = app.get("/metrics").await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("chaos_faults_injected_total")
                && labels.iter().all(|label| l.contains(label))),
        "no chaos_faults_injected_total with {labels:?} in:\n{metrics}"
    );
}
