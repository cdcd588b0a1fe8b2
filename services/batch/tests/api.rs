//! The batch service end to end, each scenario on SQLite and on PostgreSQL: events on the bus
//! fill the read model once each; manual runs of the report jobs give exact numbers as JSON
//! and CSV; runs page newest first; and every bad input gets a problem document.

use std::time::Duration;

use serde_json::{Value, json};
use sloop_batch::BatchSettings;
use sloop_batch::schedule::JobSchedule;
use sloop_events::{chat, store, user};
use sloop_kit::testing::{TestApp, TestBackend, TestResponse};
use sloop_kit::{Event, EventType, on_both_backends};

on_both_backends!(
    reports_count_each_event_once,
    chat_activity_counts_messages_rooms_and_senders,
    runs_page_newest_first,
    a_running_job_cannot_be_triggered_again,
    bad_input_gets_problem_documents,
    only_admins_may_use_the_api_through_the_gateway,
    probes_and_openapi,
);

/// Every schedule off: only the runs a test triggers happen.
fn manual_only() -> BatchSettings {
    BatchSettings {
        user_stats_schedule: JobSchedule::Off,
        sales_report_schedule: JobSchedule::Off,
        chat_activity_schedule: JobSchedule::Off,
        cleanup_schedule: JobSchedule::Off,
        tick: Duration::from_millis(100),
        ..BatchSettings::default()
    }
}

async fn spawn(backend: TestBackend, settings: BatchSettings) -> TestApp {
    TestApp::spawn(sloop_batch::service(settings), backend).await
}

/// An event of `kind` that happened at `time`.
fn event_at(kind: EventType, subject: &str, data: Value, time: &str) -> Event {
    let service = kind.topic.trim_start_matches("sloop.");
    let mut event = Event::new(service, kind, subject, &data).unwrap();
    event.time = time.to_owned();
    event
}

fn signup(id: &str, time: &str) -> Event {
    let data = json!({ "id": id, "email": format!("{id}@example.com"), "name": id, "status": "active", "version": 1 });
    event_at(user::CREATED, id, data, time)
}

fn confirmed(order: &str, amount: i64, currency: &str, time: &str) -> Event {
    let data = json!({ "order_id": order, "user_id": "u-1", "total": { "amount": amount, "currency": currency }, "charge_id": format!("c-{order}") });
    event_at(store::ORDER_CONFIRMED, order, data, time)
}

fn cancelled(order: &str, amount: i64, currency: &str, time: &str) -> Event {
    let data = json!({ "order_id": order, "user_id": "u-1", "total": { "amount": amount, "currency": currency }, "reason": "payment declined" });
    event_at(store::ORDER_CANCELLED, order, data, time)
}

fn chat_message(id: &str, room: &str, sender: &str, mentions: &[&str], time: &str) -> Event {
    let data = json!({ "message_id": id, "room_id": room, "sender_id": sender, "text": "hi", "mentions": mentions, "sent_at": time });
    event_at(chat::MESSAGE_SENT, room, data, time)
}

/// Publishes `events` and waits until the consumer has applied `distinct` events.
async fn feed(app: &TestApp, events: &[Event], distinct: i64) {
    for event in events {
        app.memory_bus().publish(event.to_message());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (applied,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM kit_processed_events WHERE consumer = 'batch'")
                .fetch_one(app.db().pool())
                .await
                .unwrap();
        if applied == distinct {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{applied} of {distinct} events applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Triggers `job` (with `query`, e.g. `?from=...&to=...`) and returns the run as accepted.
/// A run's row says it ended a moment before its lease and lock are let go, so a 409 right
/// after an earlier run of the job is tried again.
async fn trigger(app: &TestApp, job: &str, query: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let response = loop {
        let response = app
            .request(reqwest::Method::POST, &format!("/jobs/{job}/runs{query}"))
            .send()
            .await;
        if response.status != 409 || tokio::time::Instant::now() >= deadline {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    response.assert_status(202);
    let run = response.value();
    assert_eq!(
        response.header("location"),
        Some(format!("/runs/{}", run["id"].as_str().unwrap()).as_str())
    );
    run
}

/// Waits until run `id` has ended and returns it.
async fn finished(app: &TestApp, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let run = app
            .get(&format!("/runs/{id}"))
            .await
            .assert_status(200)
            .value();
        if run["status"] != "running" {
            return run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run still running: {run}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Triggers `job`, waits for the run to succeed and returns it.
async fn run_to_success(app: &TestApp, job: &str, query: &str) -> Value {
    let run = trigger(app, job, query).await;
    let run = finished(app, run["id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    run
}

async fn csv(app: &TestApp, path: &str, accept: Option<&str>) -> TestResponse {
    let mut request = app.request(reqwest::Method::GET, path);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await;
    response.assert_status(200);
    assert_eq!(
        response.header("content-type"),
        Some("text/csv; charset=utf-8")
    );
    response
}

async fn reports_count_each_event_once(backend: TestBackend) {
    let app = spawn(backend, manual_only()).await;
    let twice = signup("u-2", "2026-12-01T08:00:00Z");
    let events = [
        signup("u-1", "2026-11-30T10:00:00Z"),
        twice.clone(),
        twice,
        signup("u-3", "2026-12-01T23:59:59Z"),
        // 23:00:01 UTC on the 1st, though written as the 2nd.
        signup("u-4", "2026-12-02T00:00:01+01:00"),
        signup("u-5", "2026-12-03T09:00:00Z"),
        confirmed("o-1", 1999, "EUR", "2026-12-01T10:00:00Z"),
        confirmed("o-2", 2500, "EUR", "2026-12-01T11:00:00Z"),
        confirmed("o-3", 1000, "USD", "2026-12-01T12:00:00Z"),
        confirmed("o-4", 500, "EUR", "2026-11-30T12:00:00Z"),
        cancelled("o-5", 700, "EUR", "2026-12-01T13:00:00Z"),
        // Not part of the read model.
        event_at(
            store::ORDER_PLACED,
            "o-6",
            json!({ "order_id": "o-6" }),
            "2026-12-01T14:00:00Z",
        ),
    ];
    feed(&app, &events, 11).await;

    let accepted = trigger(&app, "user-stats", "?from=2026-11-30&to=2026-12-02").await;
    assert_eq!(accepted["status"], "running");
    assert_eq!(accepted["trigger"], "manual");
    assert_eq!(accepted["attempt"], 1);
    assert_eq!(accepted["scheduled_for"], Value::Null);
    let id = accepted["id"].as_str().unwrap().to_owned();
    let run = finished(&app, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["period_from"], "2026-11-30");
    assert_eq!(run["period_to"], "2026-12-02");
    assert_eq!(run["has_report"], true);
    assert!(run["duration_ms"].as_i64().is_some(), "{run}");
    let log = run["log"].as_array().unwrap();
    assert!(
        log.iter()
            .any(|line| line.as_str().unwrap().contains("4 signups")),
        "{run}"
    );

    let report = app
        .get(&format!("/runs/{id}/report"))
        .await
        .assert_status(200)
        .value();
    assert_eq!(report["job"], "user-stats");
    assert_eq!(report["run_id"], id.as_str());
    assert_eq!(
        (&report["from"], &report["to"]),
        (&json!("2026-11-30"), &json!("2026-12-02"))
    );
    assert_eq!(report["columns"], json!(["day", "signups"]));
    assert_eq!(
        report["rows"],
        json!([
            { "day": "2026-11-30", "signups": 1 },
            { "day": "2026-12-01", "signups": 3 },
            { "day": "2026-12-02", "signups": 0 },
        ])
    );
    let expected = "day,signups\r\n2026-11-30,1\r\n2026-12-01,3\r\n2026-12-02,0\r\n";
    for (query, accept) in [("?format=csv", None), ("", Some("text/csv"))] {
        let response = csv(&app, &format!("/runs/{id}/report{query}"), accept).await;
        assert_eq!(response.text(), expected);
        assert_eq!(
            response.header("content-disposition"),
            Some(format!("attachment; filename=\"user-stats-{id}.csv\"").as_str())
        );
    }

    let sales = run_to_success(&app, "sales-report", "?from=2026-11-30&to=2026-12-01").await;
    let sales_id = sales["id"].as_str().unwrap();
    let report = app
        .get(&format!("/runs/{sales_id}/report?format=json"))
        .await
        .assert_status(200)
        .value();
    assert_eq!(
        report["rows"],
        json!([
            { "day": "2026-11-30", "currency": "EUR", "orders_confirmed": 1, "orders_cancelled": 0, "revenue": 500 },
            { "day": "2026-12-01", "currency": "EUR", "orders_confirmed": 2, "orders_cancelled": 1, "revenue": 4499 },
            { "day": "2026-12-01", "currency": "USD", "orders_confirmed": 1, "orders_cancelled": 0, "revenue": 1000 },
        ])
    );
    let response = csv(&app, &format!("/runs/{sales_id}/report?format=csv"), None).await;
    assert_eq!(
        response.text(),
        "day,currency,orders_confirmed,orders_cancelled,revenue\r\n\
         2026-11-30,EUR,1,0,500\r\n\
         2026-12-01,EUR,2,1,4499\r\n\
         2026-12-01,USD,1,0,1000\r\n"
    );

    // Without a period, a report covers yesterday (UTC), as a scheduled run would.
    let today = time::OffsetDateTime::now_utc().date();
    let yesterday = today.previous_day().unwrap();
    let default_run = run_to_success(&app, "user-stats", "").await;
    let period = default_run["period_to"].as_str().unwrap().to_owned();
    assert!(
        [
            yesterday.to_string(),
            yesterday.previous_day().unwrap().to_string()
        ]
        .contains(&period),
        "{default_run}"
    );
    assert_eq!(default_run["period_from"], default_run["period_to"]);

    // Cleanup keeps everything younger than its retention and makes no report.
    let cleanup = run_to_success(&app, "cleanup", "").await;
    assert_eq!(cleanup["has_report"], false);
    assert_eq!(cleanup["period_from"], Value::Null);
    let cleanup_id = cleanup["id"].as_str().unwrap();
    app.get(&format!("/runs/{cleanup_id}/report"))
        .await
        .assert_problem(404, "makes no report");

    let jobs = app.get("/jobs").await.assert_status(200).value();
    let names: Vec<&str> = jobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["user-stats", "sales-report", "chat-activity", "cleanup"]
    );
    let stats = &jobs["items"][0];
    assert_eq!(stats["schedule"], Value::Null);
    assert_eq!(stats["next_run_at"], Value::Null);
    assert_eq!(stats["last_run"]["id"], default_run["id"]);
    assert_eq!(jobs["items"][1]["last_run"]["id"], sales["id"]);
    app.stop().await;
}

async fn chat_activity_counts_messages_rooms_and_senders(backend: TestBackend) {
    let app = spawn(backend, manual_only()).await;
    let again = chat_message("m-2", "r-1", "ann", &["bob"], "2026-12-01T09:00:00Z");
    let events = [
        chat_message("m-1", "r-1", "ann", &[], "2026-12-01T08:00:00Z"),
        again.clone(),
        again,
        chat_message("m-3", "r-2", "ann", &["bob", "cy"], "2026-12-01T10:00:00Z"),
        chat_message("m-4", "r-2", "bob", &[], "2026-12-01T23:59:59Z"),
        chat_message("m-5", "r-1", "cy", &[], "2026-12-03T00:00:00Z"),
    ];
    feed(&app, &events, 5).await;
    let run = run_to_success(&app, "chat-activity", "?from=2026-12-01&to=2026-12-03").await;
    let id = run["id"].as_str().unwrap();
    let report = app
        .get(&format!("/runs/{id}/report"))
        .await
        .assert_status(200)
        .value();
    assert_eq!(
        report["columns"],
        json!([
            "day",
            "messages",
            "mentions",
            "active_rooms",
            "active_senders"
        ])
    );
    assert_eq!(
        report["rows"],
        json!([
            { "day": "2026-12-01", "messages": 4, "mentions": 3, "active_rooms": 2, "active_senders": 2 },
            { "day": "2026-12-02", "messages": 0, "mentions": 0, "active_rooms": 0, "active_senders": 0 },
            { "day": "2026-12-03", "messages": 1, "mentions": 0, "active_rooms": 1, "active_senders": 1 },
        ])
    );
    app.stop().await;
}

async fn runs_page_newest_first(backend: TestBackend) {
    let app = spawn(backend, manual_only()).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let run = run_to_success(&app, "cleanup", "").await;
        ids.push(run["id"].as_str().unwrap().to_owned());
    }
    ids.reverse();
    let first = app
        .get("/jobs/cleanup/runs?limit=2")
        .await
        .assert_status(200)
        .value();
    let page_ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|run| run["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(page_ids(&first), ids[..2]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = app
        .get(&format!("/jobs/cleanup/runs?limit=2&cursor={cursor}"))
        .await
        .assert_status(200)
        .value();
    assert_eq!(page_ids(&second), ids[2..]);
    assert_eq!(second["next_cursor"], Value::Null);
    let others = app
        .get("/jobs/sales-report/runs")
        .await
        .assert_status(200)
        .value();
    assert_eq!(others["items"], json!([]));
    app.stop().await;
}

async fn a_running_job_cannot_be_triggered_again(backend: TestBackend) {
    let slow = BatchSettings {
        job_delay: Duration::from_millis(1500),
        ..manual_only()
    };
    let app = spawn(backend, slow.clone()).await;
    // A second instance on the same database: the lease keeps it out too.
    let other = TestApp::builder(sloop_batch::service(slow))
        .backend(backend)
        .database_url(app.database_url.clone())
        .spawn()
        .await;
    let run = trigger(&app, "user-stats", "").await;
    app.request(reqwest::Method::POST, "/jobs/user-stats/runs")
        .send()
        .await
        .assert_problem(409, "running");
    other
        .request(reqwest::Method::POST, "/jobs/user-stats/runs")
        .send()
        .await
        .assert_problem(409, "another instance");
    let id = run["id"].as_str().unwrap();
    app.get(&format!("/runs/{id}/report"))
        .await
        .assert_problem(404, "still running");
    // Other jobs are not held up.
    trigger(&other, "cleanup", "").await;
    let done = finished(&app, id).await;
    assert_eq!(done["status"], "succeeded");
    // Once it has ended, the lease is free for either instance.
    let again = trigger(&other, "user-stats", "").await;
    finished(&other, again["id"].as_str().unwrap()).await;
    other.stop().await;
    app.stop().await;
}

async fn bad_input_gets_problem_documents(backend: TestBackend) {
    let app = spawn(backend, manual_only()).await;
    let missing = uuid::Uuid::now_v7();
    for (path, status, needle) in [
        ("/runs/42", 400, "not a run id"),
        ("/runs/not-a-run/report", 400, "not a run id"),
        (&format!("/runs/{missing}"), 404, "no run"),
        (&format!("/runs/{missing}/report"), 404, "no run"),
        ("/jobs/chat/runs", 404, "no job"),
        ("/jobs/user-stats/runs?limit=0", 400, "limit"),
        ("/jobs/user-stats/runs?limit=501", 400, "limit"),
        ("/jobs/user-stats/runs?limit=ten", 400, "limit"),
        ("/jobs/user-stats/runs?cursor=42", 400, "cursor"),
        ("/jobs/user-stats/runs?page=2", 400, "query"),
    ] {
        app.get(path).await.assert_problem(status, needle);
    }
    let post = |path: String| app.request(reqwest::Method::POST, &path).send();
    for (query, status, needle) in [
        ("?from=2026-12-01", 400, "both"),
        ("?to=2026-12-01", 400, "both"),
        ("?from=2026-12-05&to=2026-12-01", 400, "after"),
        ("?from=01.12.2026&to=2026-12-02", 400, "YYYY-MM-DD"),
        ("?from=2026-02-30&to=2026-03-02", 400, "YYYY-MM-DD"),
        ("?from=2025-01-01&to=2026-12-31", 400, "at most"),
        ("?days=7", 400, "query"),
    ] {
        post(format!("/jobs/user-stats/runs{query}"))
            .await
            .assert_problem(status, needle);
    }
    post("/jobs/cleanup/runs?from=2026-12-01&to=2026-12-01".to_owned())
        .await
        .assert_problem(400, "no report");
    post("/jobs/nope/runs".to_owned()).await.assert_problem(
        404,
        "the jobs are user-stats, sales-report, chat-activity, cleanup",
    );

    let run = run_to_success(&app, "user-stats", "?from=2026-12-01&to=2026-12-01").await;
    let report = format!("/runs/{}/report", run["id"].as_str().unwrap());
    app.get(&format!("{report}?format=xml"))
        .await
        .assert_problem(400, "json");
    app.request(reqwest::Method::GET, &report)
        .header("accept", "image/png")
        .send()
        .await
        .assert_problem(406, "text/csv");
    app.request(reqwest::Method::GET, &report)
        .header("accept", "text/html, */*;q=0.8")
        .send()
        .await
        .assert_status(200);
    app.stop().await;
}

async fn only_admins_may_use_the_api_through_the_gateway(backend: TestBackend) {
    let app = spawn(backend, manual_only()).await;
    let run = run_to_success(&app, "user-stats", "").await;
    let id = run["id"].as_str().unwrap();
    let reads = [
        "/jobs".to_owned(),
        "/jobs/user-stats/runs".to_owned(),
        format!("/runs/{id}"),
        format!("/runs/{id}/report"),
    ];
    let as_roles = |method: reqwest::Method, path: &str, roles: &str| {
        app.request(method, path)
            .header("x-user-id", "u-9")
            .header("x-user-roles", roles)
            .send()
    };
    for path in &reads {
        as_roles(reqwest::Method::GET, path, "user")
            .await
            .assert_problem(403, "admin");
        as_roles(reqwest::Method::GET, path, "")
            .await
            .assert_problem(403, "admin");
        as_roles(reqwest::Method::GET, path, "user,admin")
            .await
            .assert_status(200);
        // Other services call without identity headers and are trusted.
        app.get(path).await.assert_status(200);
    }
    // Refused before anything else is looked at: no hint whether the job exists.
    for path in ["/jobs/user-stats/runs", "/jobs/nope/runs"] {
        as_roles(reqwest::Method::POST, path, "user")
            .await
            .assert_problem(403, "admin");
    }
    as_roles(reqwest::Method::POST, "/jobs/cleanup/runs", "admin")
        .await
        .assert_status(202);
    app.stop().await;
}

async fn probes_and_openapi(backend: TestBackend) {
    let app = spawn(backend, BatchSettings::default()).await;
    app.get("/healthz").await.assert_status(200);
    let ready = app.get("/readyz").await.assert_status(200).value();
    assert_eq!(ready["checks"]["database"], "ok");

    let jobs = app.get("/jobs").await.assert_status(200).value();
    let stats = &jobs["items"][0];
    assert_eq!(stats["schedule"], "5 0 * * *");
    assert!(
        stats["schedule_description"]
            .as_str()
            .unwrap()
            .contains("00:05"),
        "{stats}"
    );
    assert!(
        stats["next_run_at"]
            .as_str()
            .unwrap()
            .ends_with("T00:05:00.000000Z"),
        "{stats}"
    );

    let doc = app.get("/openapi.json").await.assert_status(200).value();
    let paths = &doc["paths"];
    for (path, method) in [
        ("/jobs", "get"),
        ("/jobs/{job}/runs", "get"),
        ("/jobs/{job}/runs", "post"),
        ("/runs/{id}", "get"),
        ("/runs/{id}/report", "get"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "OpenAPI lacks {method} {path}"
        );
    }
    let report = &paths["/runs/{id}/report"]["get"]["responses"];
    assert!(report["200"]["content"]["text/csv"].is_object(), "{report}");
    assert!(
        report["200"]["content"]["application/json"].is_object(),
        "{report}"
    );
    for status in ["400", "403", "404", "406"] {
        assert!(report[status].is_object(), "report lacks {status}");
    }
    assert!(paths["/jobs/{job}/runs"]["post"]["responses"]["409"].is_object());
    let schemas = &doc["components"]["schemas"];
    for schema in ["Run", "RunPage", "JobInfo", "JobList", "Report"] {
        assert!(schemas[schema].is_object(), "no schema {schema}");
    }
    app.stop().await;
}
