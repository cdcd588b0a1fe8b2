//! The audit service end to end, each scenario on SQLite and on PostgreSQL: events published
//! on the bus become a hash chain, each once; queries filter and page through it; and
//! verification finds entries changed or removed behind the service's back.

use std::time::Duration;

use serde_json::{Value, json};
use sloop_audit::chain::{Entry, GENESIS_HASH};
use sloop_events::{payment, store, user};
use sloop_kit::testing::{TestApp, TestBackend};
use sloop_kit::{Event, EventType, on_both_backends};

async fn spawn(backend: TestBackend) -> TestApp {
    TestApp::spawn(sloop_audit::service(), backend).await
}

on_both_backends!(
    events_of_every_topic_form_one_intact_chain,
    each_event_is_recorded_once,
    queries_filter_and_paginate,
    bad_parameters_get_problem_documents,
    only_admins_may_read_through_the_gateway,
    changed_entries_are_found,
    removed_entries_are_found,
    verification_pages_through_long_logs,
    racing_instances_do_not_fork_the_chain,
    probes_and_openapi,
);

/// A type no service declares, on a platform topic: audit keeps it all the same.
const MYSTERY: EventType = EventType {
    name: "sloop.user.mystery",
    topic: user::TOPIC,
    version: 7,
};

fn event(kind: EventType, subject: &str, data: Value) -> Event {
    let service = kind.topic.trim_start_matches("sloop.");
    Event::new(service, kind, subject, &data).unwrap()
}

fn publish(app: &TestApp, event: &Event) {
    app.memory_bus().publish(event.to_message());
}

/// Publishes `event` and waits until the log has it, so entries land in a known order.
async fn record(app: &TestApp, event: &Event) {
    publish(app, event);
    wait_for_event_id(app, &event.id).await;
}

async fn wait_for_event_id(app: &TestApp, id: &str) {
    wait_until(app, Until::Recorded(id)).await;
}

async fn wait_for_entries(app: &TestApp, count: i64) {
    wait_until(app, Until::Entries(count)).await;
}

/// What a test waits for the consumer to have done.
#[derive(Debug, Clone, Copy)]
enum Until<'a> {
    Recorded(&'a str),
    Entries(i64),
}

async fn wait_until(app: &TestApp, until: Until<'_>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pool = app.db().pool();
        let (count, wanted): (i64, i64) = match until {
            Until::Recorded(id) => {
                let (n,) = sqlx::query_as("SELECT COUNT(*) FROM audit_log WHERE event_id = $1")
                    .bind(id)
                    .fetch_one(pool)
                    .await
                    .unwrap();
                (n, 1)
            }
            Until::Entries(wanted) => {
                let (n,) = sqlx::query_as("SELECT COUNT(*) FROM audit_log")
                    .fetch_one(pool)
                    .await
                    .unwrap();
                (n, wanted)
            }
        };
        if count == wanted {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {count} rows, not {wanted}, waiting for {until:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn entries(app: &TestApp, query: &str) -> Value {
    app.get(&format!("/audit/events{query}"))
        .await
        .assert_status(200)
        .value()
}

async fn verify(app: &TestApp) -> Value {
    app.get("/audit/verify").await.assert_status(200).value()
}

async fn execute(app: &TestApp, sql: &'static str, seq: i64) {
    let done = sqlx::query(sql)
        .bind(seq)
        .execute(app.db().pool())
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1, "{sql}");
}

/// Records `count` user events and returns them.
async fn record_many(app: &TestApp, count: usize) -> Vec<Event> {
    let mut events = Vec::new();
    for n in 0..count {
        let e = event(user::UPDATED, &format!("u-{n}"), json!({ "n": n }));
        record(app, &e).await;
        events.push(e);
    }
    events
}

async fn events_of_every_topic_form_one_intact_chain(backend: TestBackend) {
    let app = spawn(backend).await;
    assert_eq!(
        verify(&app).await,
        json!({ "intact": true, "entries": 0, "last_hash": GENESIS_HASH })
    );
    let published = [
        event(
            user::CREATED,
            "u-1",
            json!({ "id": "u-1", "email": "a@example.com", "name": "A", "status": "active", "version": 1 }),
        ),
        event(
            store::ORDER_PLACED,
            "o-1",
            json!({ "z": 1, "a": [1, 2.5, "x"], "nested": { "b": null } }),
        ),
        event(payment::SUCCEEDED, "p-1", json!({ "amount": 1999 })),
        event(MYSTERY, "m-1", json!("not even an object")),
    ];
    for e in &published {
        record(&app, e).await;
    }

    let page = entries(&app, "").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert!(page["next_cursor"].is_null());
    let mut prev_hash = GENESIS_HASH.to_owned();
    for (n, (item, sent)) in items.iter().zip(&published).enumerate() {
        assert_eq!(item["seq"], n as i64 + 1);
        assert_eq!(item["event_id"], sent.id.as_str());
        assert_eq!(item["topic"], sent.topic.as_str());
        assert_eq!(item["type"], sent.kind.as_str());
        assert_eq!(item["source"], sent.source.as_str());
        assert_eq!(item["subject"], sent.subject.as_str());
        assert_eq!(item["schema_version"], sent.schema_version);
        assert_eq!(item["time"], sent.time.as_str());
        assert_eq!(item["time_utc"], sent.time.as_str());
        assert_eq!(item["data"], sent.data);
        assert_eq!(item["prev_hash"], prev_hash.as_str());
        prev_hash = item["hash"].as_str().unwrap().to_owned();
        assert_eq!(prev_hash.len(), 64);
    }
    assert_eq!(items[3]["type"], MYSTERY.name);
    assert_eq!(items[3]["schema_version"], 7);
    // The data is kept as received: member order too.
    let (text,): (String,) = sqlx::query_as("SELECT data FROM audit_log WHERE seq = $1")
        .bind(2_i64)
        .fetch_one(app.db().pool())
        .await
        .unwrap();
    assert_eq!(text, r#"{"z":1,"a":[1,2.5,"x"],"nested":{"b":null}}"#);

    assert_eq!(
        verify(&app).await,
        json!({ "intact": true, "entries": 4, "last_hash": prev_hash })
    );
    let one = app.get("/audit/events/2").await.assert_status(200).value();
    assert_eq!(one, items[1]);
    app.get("/audit/events/5")
        .await
        .assert_problem(404, "no entry 5");
    app.stop().await;
}

async fn each_event_is_recorded_once(backend: TestBackend) {
    let app = spawn(backend).await;
    let first = event(user::CREATED, "u-1", json!({ "id": "u-1" }));
    let second = event(user::UPDATED, "u-1", json!({ "id": "u-1" }));
    // The bus delivers at least once: the same message twice is one entry.
    publish(&app, &first);
    publish(&app, &first);
    record(&app, &second).await;
    wait_for_entries(&app, 2).await;

    // Should the consumer's record of processed ids be lost, the log's own unique event
    // id still keeps a redelivered event out.
    sqlx::query("DELETE FROM kit_processed_events")
        .execute(app.db().pool())
        .await
        .unwrap();
    let third = event(user::UPDATED, "u-1", json!({ "id": "u-1", "v": 3 }));
    publish(&app, &first);
    record(&app, &third).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let page = entries(&app, "").await;
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [&first.id, &second.id, &third.id]);
    assert_eq!(verify(&app).await["entries"], 3);
    app.stop().await;
}

/// Events at known times, alternating subjects and types; returns them with their times.
async fn record_timed(app: &TestApp) -> Vec<Event> {
    let mut recorded = Vec::new();
    for n in 0..12 {
        let (kind, subject) = match n % 3 {
            0 => (store::ORDER_PLACED, "order-1"),
            1 => (payment::SUCCEEDED, "order-2"),
            _ => (store::ORDER_CONFIRMED, "order-1"),
        };
        let mut e = event(kind, subject, json!({ "n": n }));
        e.time = format!("2026-01-01T00:00:{n:02}.000000Z");
        recorded.push(e);
    }
    // Another offset, same instant as n = 5: compared as UTC, not as text.
    recorded[5].time = "2026-01-01T01:00:05+01:00".to_owned();
    for e in &recorded {
        record(app, e).await;
    }
    recorded
}

fn seqs(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["seq"].as_i64().unwrap())
        .collect()
}

/// Every entry a query selects, page by page; asserts the pages follow on.
async fn walk(app: &TestApp, query: &str, limit: u32) -> Vec<i64> {
    let mut seen = Vec::new();
    let mut cursor: Option<i64> = None;
    loop {
        let mut path = format!("?limit={limit}{query}");
        if let Some(cursor) = cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = entries(app, &path).await;
        let got = seqs(&page);
        assert!(got.len() <= limit as usize);
        seen.extend(got);
        match page["next_cursor"].as_i64() {
            Some(next) => {
                assert_eq!(Some(&next), seen.last());
                cursor = Some(next);
            }
            None => return seen,
        }
    }
}

async fn queries_filter_and_paginate(backend: TestBackend) {
    let app = spawn(backend).await;
    record_timed(&app).await;

    assert_eq!(
        seqs(&entries(&app, "?subject=order-2").await),
        [2, 5, 8, 11]
    );
    assert_eq!(
        seqs(&entries(&app, "?type=sloop.store.order_confirmed").await),
        [3, 6, 9, 12]
    );
    assert_eq!(
        seqs(&entries(&app, "?subject=order-1&type=sloop.store.order_placed").await),
        [1, 4, 7, 10]
    );
    // From inclusive, to exclusive; entry 6 was sent as 01:00:05+01:00.
    let range = entries(
        &app,
        "?from=2026-01-01T00:00:03Z&to=2026-01-01T00:00:07.000000Z",
    )
    .await;
    assert_eq!(seqs(&range), [4, 5, 6, 7]);
    assert_eq!(range["items"][2]["time"], "2026-01-01T01:00:05+01:00");
    assert_eq!(range["items"][2]["time_utc"], "2026-01-01T00:00:05.000000Z");
    assert_eq!(
        seqs(&entries(&app, "?from=2026-01-01T01:00:10%2B01:00").await),
        [11, 12]
    );
    assert_eq!(
        seqs(&entries(&app, "?to=2026-01-01T00:00:02Z&subject=order-1").await),
        [1]
    );
    assert!(seqs(&entries(&app, "?subject=nobody").await).is_empty());

    // Pages visit every entry once, in order, and the last one says it is the last.
    assert_eq!(walk(&app, "", 5).await, (1..=12).collect::<Vec<_>>());
    assert_eq!(walk(&app, "", 12).await, (1..=12).collect::<Vec<_>>());
    assert_eq!(walk(&app, "", 1).await, (1..=12).collect::<Vec<_>>());
    assert_eq!(
        walk(&app, "&subject=order-1", 3).await,
        [1, 3, 4, 6, 7, 9, 10, 12]
    );
    let default = entries(&app, "").await;
    assert_eq!(seqs(&default).len(), 12);
    assert!(default["next_cursor"].is_null());
    app.stop().await;
}

async fn bad_parameters_get_problem_documents(backend: TestBackend) {
    let app = spawn(backend).await;
    for (query, needle) in [
        ("limit=0", "limit must be a whole number from 1 to 500"),
        ("limit=501", "got `501`"),
        ("limit=many", "limit"),
        ("limit=-1", "limit"),
        ("cursor=-1", "cursor"),
        ("cursor=abc", "next_cursor"),
        ("from=yesterday", "from must be an RFC 3339 time"),
        ("to=2026-13-01T00:00:00Z", "to must be an RFC 3339 time"),
        ("from=2026-01-01T00:00:00+01:00", "%2B"),
        (
            "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            "is after to",
        ),
        ("subject=", "subject must not be empty"),
        ("type=", "type must not be empty"),
        ("subjct=u-1", "subjct"),
        ("limit=1&limit=2", "limit"),
    ] {
        let problem = app
            .get(&format!("/audit/events?{query}"))
            .await
            .assert_problem(400, needle);
        assert_eq!(problem["type"], "urn:sloop:problem:bad-request", "{query}");
    }
    app.get("/audit/events/0")
        .await
        .assert_problem(400, "not an entry number");
    app.get("/audit/events/abc")
        .await
        .assert_problem(400, "not an entry number");
    app.get("/audit/events/99999999999999999999")
        .await
        .assert_problem(400, "not an entry number");
    app.get("/audit/events/7")
        .await
        .assert_problem(404, "no entry 7");
    app.post("/audit/events", &json!({}))
        .await
        .assert_problem(405, "method");
    app.stop().await;
}

async fn only_admins_may_read_through_the_gateway(backend: TestBackend) {
    let app = spawn(backend).await;
    record(&app, &event(user::CREATED, "u-1", json!({}))).await;
    let paths = ["/audit/events", "/audit/events/1", "/audit/verify"];
    let as_roles = |path: &str, roles: &str| {
        app.request(reqwest::Method::GET, path)
            .header("x-user-id", "u-9")
            .header("x-user-roles", roles)
            .send()
    };
    for path in paths {
        as_roles(path, "user").await.assert_problem(403, "admin");
        as_roles(path, "").await.assert_problem(403, "admin");
        as_roles(path, "user,admin").await.assert_status(200);
        // Other services call without identity headers and are trusted.
        app.get(path).await.assert_status(200);
    }
    app.stop().await;
}

async fn changed_entries_are_found(backend: TestBackend) {
    let app = spawn(backend).await;
    let recorded = record_many(&app, 5).await;
    let original = app.get("/audit/events/3").await.value();

    // Someone edits an entry's data in the database.
    execute(
        &app,
        r#"UPDATE audit_log SET data = '{"n":300}' WHERE seq = $1"#,
        3,
    )
    .await;
    let report = verify(&app).await;
    assert_eq!(report["intact"], false);
    assert_eq!(report["entries_checked"], 3);
    assert_eq!(report["first_broken"]["seq"], 3);
    assert_eq!(report["first_broken"]["event_id"], recorded[2].id.as_str());
    let problem = report["first_broken"]["problem"].as_str().unwrap();
    assert!(
        problem.starts_with(&format!(
            "hash mismatch: stored {} computed ",
            original["hash"].as_str().unwrap()
        )),
        "{problem}"
    );
    // The entry still reads; it is the chain that says it was changed.
    let edited = app.get("/audit/events/3").await.assert_status(200).value();
    assert_eq!(edited["data"], json!({ "n": 300 }));

    // A careful editor recomputes the entry's hash too: the next entry's link gives it away.
    let rehashed = entry_from(&edited).compute_hash();
    sqlx::query("UPDATE audit_log SET hash = $1 WHERE seq = $2")
        .bind(&rehashed)
        .bind(3_i64)
        .execute(app.db().pool())
        .await
        .unwrap();
    let report = verify(&app).await;
    assert_eq!(report["entries_checked"], 4);
    assert_eq!(report["first_broken"]["seq"], 4);
    assert_eq!(
        report["first_broken"]["problem"],
        "prev_hash does not match entry 3"
    );
    app.stop().await;
}

/// The stored entry an API entry shows, to recompute its hash as an editor would.
fn entry_from(item: &Value) -> Entry {
    let text = |name: &str| item[name].as_str().unwrap().to_owned();
    Entry {
        seq: item["seq"].as_i64().unwrap(),
        event_id: text("event_id"),
        topic: text("topic"),
        kind: text("type"),
        source: text("source"),
        subject: text("subject"),
        schema_version: item["schema_version"].as_i64().unwrap(),
        time: text("time"),
        time_utc: item["time_utc"].as_str().map(str::to_owned),
        data: item["data"].to_string(),
        recorded_at: text("recorded_at"),
        prev_hash: text("prev_hash"),
        hash: text("hash"),
    }
}

async fn removed_entries_are_found(backend: TestBackend) {
    let app = spawn(backend).await;
    let recorded = record_many(&app, 5).await;
    // Entries computed from the API match what the service stored.
    let intact = verify(&app).await;
    let last = app.get("/audit/events/5").await.value();
    assert_eq!(entry_from(&last).compute_hash(), last["hash"]);
    assert_eq!(intact["last_hash"], last["hash"]);

    execute(&app, "DELETE FROM audit_log WHERE seq = $1", 3).await;
    let report = verify(&app).await;
    assert_eq!(report["intact"], false);
    assert_eq!(report["entries_checked"], 3);
    assert_eq!(report["first_broken"]["seq"], 4);
    assert_eq!(report["first_broken"]["event_id"], recorded[3].id.as_str());
    assert_eq!(
        report["first_broken"]["problem"],
        "seq gap: expected 3 found 4"
    );

    // Removing the first entry is found at the start.
    execute(&app, "DELETE FROM audit_log WHERE seq = $1", 1).await;
    let report = verify(&app).await;
    assert_eq!(report["entries_checked"], 1);
    assert_eq!(
        report["first_broken"]["problem"],
        "seq gap: expected 1 found 2"
    );
    // The log goes on recording after the damage.
    record(&app, &event(user::CREATED, "u-new", json!({}))).await;
    assert_eq!(app.get("/audit/events/6").await.value()["seq"], 6);
    app.stop().await;
}

/// A log longer than verification's page: written directly (fast), hashed as the service
/// would, then one entry past the first page edited.
async fn verification_pages_through_long_logs(backend: TestBackend) {
    let app = spawn(backend).await;
    let total = 1000_i64;
    let mut tx = app.db().pool().begin().await.unwrap();
    let mut prev_hash = GENESIS_HASH.to_owned();
    for seq in 1..=total {
        let mut entry = Entry {
            seq,
            event_id: uuid::Uuid::now_v7().to_string(),
            topic: "sloop.user".into(),
            kind: "sloop.user.updated".into(),
            source: "/sloop/user".into(),
            subject: format!("u-{}", seq % 7),
            schema_version: 1,
            time: "2026-01-01T00:00:00.000000Z".into(),
            time_utc: Some("2026-01-01T00:00:00.000000Z".into()),
            data: format!(r#"{{"seq":{seq}}}"#),
            recorded_at: "2026-01-01T00:00:01.000000Z".into(),
            prev_hash: prev_hash.clone(),
            hash: String::new(),
        };
        entry.hash = entry.compute_hash();
        sqlx::query(
            "INSERT INTO audit_log (seq, event_id, topic, type, source, subject, \
             schema_version, time, time_utc, data, recorded_at, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(entry.seq)
        .bind(&entry.event_id)
        .bind(&entry.topic)
        .bind(&entry.kind)
        .bind(&entry.source)
        .bind(&entry.subject)
        .bind(entry.schema_version)
        .bind(&entry.time)
        .bind(&entry.time_utc)
        .bind(&entry.data)
        .bind(&entry.recorded_at)
        .bind(&entry.prev_hash)
        .bind(&entry.hash)
        .execute(&mut *tx)
        .await
        .unwrap();
        prev_hash = entry.hash;
    }
    tx.commit().await.unwrap();

    assert_eq!(
        verify(&app).await,
        json!({ "intact": true, "entries": total, "last_hash": prev_hash })
    );
    // The service appends after what is there.
    record(&app, &event(user::CREATED, "u-1", json!({}))).await;
    assert_eq!(verify(&app).await["entries"], total + 1);

    execute(
        &app,
        "UPDATE audit_log SET subject = 'someone-else' WHERE seq = $1",
        501,
    )
    .await;
    let report = verify(&app).await;
    assert_eq!(report["entries_checked"], 501);
    assert_eq!(report["first_broken"]["seq"], 501);
    app.stop().await;
}

/// Two instances on one database, in one consumer group, appending at once: the loser of
/// each race retries after the winner's entry, and the chain stays one line.
async fn racing_instances_do_not_fork_the_chain(backend: TestBackend) {
    let first = spawn(backend).await;
    let second = TestApp::builder(sloop_audit::service())
        .backend(backend)
        .database_url(first.database_url.clone())
        .bus(first.bus.clone())
        .spawn()
        .await;
    let kinds = [user::UPDATED, store::ORDER_PLACED, payment::FAILED];
    let mut ids = Vec::new();
    for n in 0..90 {
        let e = event(kinds[n % 3], &format!("s-{n}"), json!({ "n": n }));
        publish(&first, &e);
        ids.push(e.id);
    }
    wait_for_entries(&first, 90).await;
    let report = verify(&second).await;
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["entries"], 90);
    let mut seen: Vec<String> = Vec::new();
    let mut cursor = 0;
    loop {
        let page = entries(&first, &format!("?limit=500&cursor={cursor}")).await;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["event_id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_i64() {
            Some(next) => cursor = next,
            None => break,
        }
    }
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids, "every event once");
    second.stop().await;
    first.stop().await;
}

async fn probes_and_openapi(backend: TestBackend) {
    let app = spawn(backend).await;
    app.get("/healthz").await.assert_status(200);
    let ready = app.get("/readyz").await.assert_status(200).value();
    assert_eq!(ready["checks"]["database"], "ok");

    let doc = app.get("/openapi.json").await.assert_status(200).value();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/audit/events", "/audit/events/{seq}", "/audit/verify"] {
        assert!(
            doc["paths"][path]["get"].is_object(),
            "OpenAPI lacks {path}"
        );
    }
    let list = &doc["paths"]["/audit/events"]["get"];
    let param = |name: &str| {
        list["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no parameter {name}"))
            .clone()
    };
    let limit = param("limit");
    assert_eq!(
        (
            limit["schema"]["minimum"].as_i64(),
            limit["schema"]["maximum"].as_i64()
        ),
        (Some(1), Some(500))
    );
    for name in ["subject", "type", "from", "to", "cursor"] {
        param(name);
    }
    for status in ["200", "400", "403"] {
        assert!(list["responses"][status].is_object(), "list lacks {status}");
    }
    let get = &doc["paths"]["/audit/events/{seq}"]["get"]["responses"];
    assert!(get["404"]["content"]["application/problem+json"].is_object());
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["AuditEntry"]["properties"]["type"].is_object());
    assert!(schemas["Verification"].is_object());
    app.stop().await;
}
