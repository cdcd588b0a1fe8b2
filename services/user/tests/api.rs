//! The user API end to end over HTTP, each scenario on SQLite and on PostgreSQL, with the
//! events every change publishes.

use std::time::Duration;

use serde_json::{Value, json};
use sloop_events::user as events;
use sloop_kit::on_both_backends;
use sloop_kit::testing::{TestApp, TestBackend};

async fn spawn(backend: TestBackend) -> TestApp {
    TestApp::spawn(sloop_user::service(), backend).await
}

on_both_backends!(
    create_get_update_and_status,
    every_change_is_announced_once_in_order,
    put_creates_once_and_retries_are_harmless,
    duplicate_email_is_a_conflict,
    bad_input_gets_problem_documents,
    pagination_walks_every_user_once,
    deleted_users_cannot_change,
    callers_through_the_gateway_act_only_on_their_own_account,
    an_unknown_stored_status_is_an_error_not_active,
    probes_and_openapi,
    concurrent_updates_are_never_server_errors,
);

async fn create(app: &TestApp, email: &str, name: &str) -> Value {
    app.post("/users", &json!({ "email": email, "name": name }))
        .await
        .assert_status(201)
        .value()
}

async fn create_get_update_and_status(backend: TestBackend) {
    let app = spawn(backend).await;
    let response = app
        .post(
            "/users",
            &json!({ "email": " Ada@Example.com ", "name": "Ada" }),
        )
        .await;
    response.assert_status(201);
    let location = response.header("location").unwrap().to_owned();
    let created = response.value();
    assert_eq!(created["email"], "ada@example.com");
    assert_eq!(created["status"], "active");
    assert_eq!(created["version"], 1);
    assert_eq!(
        location,
        format!("/users/{}", created["id"].as_str().unwrap())
    );

    assert_eq!(app.get(&location).await.assert_status(200).value(), created);

    let updated = app
        .patch(&location, &json!({ "name": "Ada Lovelace" }))
        .await
        .assert_status(200)
        .value();
    assert_eq!(updated["name"], "Ada Lovelace");
    assert_eq!(updated["email"], "ada@example.com");
    assert_eq!(updated["version"], 2);

    let suspended = app
        .put(
            &format!("{location}/status"),
            &json!({ "status": "suspended" }),
        )
        .await
        .assert_status(200)
        .value();
    assert_eq!(suspended["status"], "suspended");
    assert_eq!(suspended["version"], 3);
    app.stop().await;
}

async fn every_change_is_announced_once_in_order(backend: TestBackend) {
    let app = spawn(backend).await;
    let user = create(&app, "eve@example.com", "Eve").await;
    let id = user["id"].as_str().unwrap();
    let path = format!("/users/{id}");
    app.patch(&path, &json!({ "email": "eve2@example.com" }))
        .await
        .assert_status(200);
    // A change that changes nothing announces nothing.
    app.patch(&path, &json!({ "email": "eve2@example.com" }))
        .await
        .assert_status(200);
    app.put(&format!("{path}/status"), &json!({ "status": "suspended" }))
        .await
        .assert_status(200);
    // A rejected change announces nothing either.
    app.patch(&path, &json!({ "email": "not-an-email" }))
        .await
        .assert_status(422);

    let bus = app.memory_bus();
    bus.wait_for_event(events::TOPIC, Duration::from_secs(5), |e| {
        e.is(events::STATUS_CHANGED)
    })
    .await
    .expect("the status change is published");
    let published = bus.events(events::TOPIC);
    let kinds: Vec<&str> = published.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            events::CREATED.name,
            events::UPDATED.name,
            events::STATUS_CHANGED.name
        ]
    );
    assert!(
        published
            .iter()
            .all(|e| e.subject == id && e.source == "/sloop/user")
    );
    let created: events::UserCreated = published[0].data_as().unwrap();
    assert_eq!(created.email, "eve@example.com");
    let updated: events::UserUpdated = published[1].data_as().unwrap();
    assert_eq!(
        (updated.email.as_str(), updated.version),
        ("eve2@example.com", 2)
    );
    let changed: events::UserStatusChanged = published[2].data_as().unwrap();
    assert_eq!(changed.status, events::UserStatus::Suspended);
    assert_eq!(changed.previous_status, events::UserStatus::Active);
    app.wait_for_outbox_drained(Duration::from_secs(5)).await;
    app.stop().await;
}

async fn put_creates_once_and_retries_are_harmless(backend: TestBackend) {
    let app = spawn(backend).await;
    let id = uuid::Uuid::now_v7().to_string();
    let path = format!("/users/{id}");
    let body = json!({ "email": "pat@example.com", "name": "Pat" });
    let first = app.put(&path, &body).await.assert_status(201).value();
    assert_eq!(first["id"], id.as_str());
    let again = app.put(&path, &body).await.assert_status(200).value();
    assert_eq!(again, first);
    app.put(
        &path,
        &json!({ "email": "pat@example.com", "name": "Other" }),
    )
    .await
    .assert_problem(409, "different email or name");
    app.put(
        &format!("/users/{}", uuid::Uuid::now_v7()),
        &json!({ "email": "pat@example.com", "name": "Pat" }),
    )
    .await
    .assert_problem(409, "already exists");
    app.memory_bus()
        .wait_for_event(events::TOPIC, Duration::from_secs(5), |e| {
            e.is(events::CREATED)
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.memory_bus().events(events::TOPIC).len(),
        1,
        "one account, one UserCreated"
    );
    app.stop().await;
}

async fn duplicate_email_is_a_conflict(backend: TestBackend) {
    let app = spawn(backend).await;
    create(&app, "bob@example.com", "Bob").await;
    // Case and spaces do not make a different address.
    app.post(
        "/users",
        &json!({ "email": "BOB@example.com ", "name": "Other Bob" }),
    )
    .await
    .assert_problem(409, "bob@example.com");

    // Taking another user's email on update is a conflict too.
    let carol = create(&app, "carol@example.com", "Carol").await;
    app.patch(
        &format!("/users/{}", carol["id"].as_str().unwrap()),
        &json!({ "email": "bob@example.com" }),
    )
    .await
    .assert_problem(409, "already exists");
    app.stop().await;
}

async fn bad_input_gets_problem_documents(backend: TestBackend) {
    let app = spawn(backend).await;
    let post = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = app.request(reqwest::Method::POST, "/users").body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };
    post("{\"email\": ", Some("application/json"))
        .await
        .assert_problem(400, "not valid JSON");
    post(r#"{"email": 42, "name": "x"}"#, Some("application/json"))
        .await
        .assert_problem(422, "invalid type");
    post(
        r#"{"email": "a@b.io", "name": "x", "admin": true}"#,
        Some("application/json"),
    )
    .await
    .assert_problem(422, "admin");
    post("{}", None)
        .await
        .assert_problem(415, "application/json");
    app.post("/users", &json!({ "email": "not-an-email", "name": "x" }))
        .await
        .assert_problem(422, "not an email");
    app.post(
        "/users",
        &json!({ "email": "big@example.com", "name": "x".repeat(100 * 1024) }),
    )
    .await
    .assert_problem(413, "larger");
    app.post(
        "/users",
        &json!({ "email": "a@b.io", "name": " ".repeat(101) }),
    )
    .await
    .assert_problem(422, "longer than 100");

    let unknown = format!("/users/{}", uuid::Uuid::now_v7());
    app.get(&unknown).await.assert_problem(404, "no user");
    app.get("/users/42").await.assert_problem(400, "UUID");
    app.put(&format!("{unknown}/status"), &json!({ "status": "banned" }))
        .await
        .assert_problem(422, "unknown variant");
    app.get("/users?limit=0").await.assert_problem(400, "limit");
    app.get("/users?limit=many")
        .await
        .assert_problem(400, "limit");
    app.get("/users?cursor=%%%")
        .await
        .assert_problem(400, "cursor");
    app.patch(&unknown, &json!({}))
        .await
        .assert_problem(422, "nothing to change");
    app.patch(&unknown, &json!({ "email": null }))
        .await
        .assert_problem(422, "null");
    app.patch(&unknown, &json!({ "email": "a@example.com", "name": null }))
        .await
        .assert_problem(422, "null");
    app.get("/nope").await.assert_problem(404, "no such route");
    app.delete("/users").await.assert_problem(405, "method");

    // Nothing above created a user or published an event.
    let page = app.get("/users").await.assert_status(200).value();
    assert_eq!(page["items"].as_array().unwrap().len(), 0);
    assert!(app.memory_bus().events(events::TOPIC).is_empty());
    app.stop().await;
}

async fn pagination_walks_every_user_once(backend: TestBackend) {
    let app = spawn(backend).await;
    let mut created = Vec::new();
    for i in 0..7 {
        let user = create(&app, &format!("u{i}@example.com"), "U").await;
        created.push(user["id"].as_str().unwrap().to_owned());
    }
    // Suspend one so the status filter has something to find.
    app.put(
        &format!("/users/{}/status", created[3]),
        &json!({ "status": "suspended" }),
    )
    .await
    .assert_status(200);

    let mut seen = Vec::new();
    let mut path = "/users?limit=3".to_owned();
    let mut pages = 0;
    loop {
        let page = app.get(&path).await.assert_status(200).value();
        pages += 1;
        for user in page["items"].as_array().unwrap() {
            seen.push(user["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/users?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, created, "every user once, in creation order");
    assert_eq!(pages, 3);

    let suspended = app.get("/users?status=suspended").await.value();
    let items = suspended["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], created[3].as_str());
    app.stop().await;
}

async fn deleted_users_cannot_change(backend: TestBackend) {
    let app = spawn(backend).await;
    let user = create(&app, "dee@example.com", "Dee").await;
    let path = format!("/users/{}", user["id"].as_str().unwrap());
    app.put(&format!("{path}/status"), &json!({ "status": "deleted" }))
        .await
        .assert_status(200);
    app.put(&format!("{path}/status"), &json!({ "status": "active" }))
        .await
        .assert_problem(409, "deleted");
    app.patch(&path, &json!({ "name": "Zombie" }))
        .await
        .assert_problem(409, "deleted");
    app.stop().await;
}

async fn callers_through_the_gateway_act_only_on_their_own_account(backend: TestBackend) {
    let app = spawn(backend).await;
    let me = create(&app, "me@example.com", "Me").await;
    let other = create(&app, "other@example.com", "Other").await;
    let (mine, theirs) = (
        format!("/users/{}", me["id"].as_str().unwrap()),
        format!("/users/{}", other["id"].as_str().unwrap()),
    );
    let as_me = |method, path: &str| {
        app.request(method, path)
            .header("x-user-id", me["id"].as_str().unwrap())
            .header("x-user-roles", "user")
    };
    as_me(reqwest::Method::GET, &mine)
        .send()
        .await
        .assert_status(200);
    as_me(reqwest::Method::GET, &theirs)
        .send()
        .await
        .assert_problem(403, "your own account");
    as_me(reqwest::Method::PATCH, &theirs)
        .json(&json!({ "name": "Hijacked" }))
        .send()
        .await
        .assert_problem(403, "your own account");
    as_me(reqwest::Method::PUT, &format!("{mine}/status"))
        .json(&json!({ "status": "active" }))
        .send()
        .await
        .assert_problem(403, "admin");
    as_me(reqwest::Method::GET, "/users")
        .send()
        .await
        .assert_problem(403, "admin");
    let admin = app
        .request(reqwest::Method::GET, &theirs)
        .header("x-user-id", "someone")
        .header("x-user-roles", "user,admin")
        .send()
        .await;
    admin.assert_status(200);
    app.stop().await;
}

async fn an_unknown_stored_status_is_an_error_not_active(backend: TestBackend) {
    let app = spawn(backend).await;
    let user = create(&app, "odd@example.com", "Odd").await;
    let id = user["id"].as_str().unwrap();
    // A newer version's status this one does not know; the CHECK constraint must go first.
    let pool = app.db().pool();
    let mut conn = pool.acquire().await.unwrap();
    let lift_check = match app.db().backend() {
        sloop_kit::Backend::Postgres => "ALTER TABLE users DROP CONSTRAINT users_status_check",
        // Per connection, so the update below runs on the same one.
        sloop_kit::Backend::Sqlite => "PRAGMA ignore_check_constraints = ON",
    };
    sqlx::query(lift_check).execute(&mut *conn).await.unwrap();
    sqlx::query("UPDATE users SET status = 'frozen' WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await
        .unwrap();
    if app.db().backend() == sloop_kit::Backend::Sqlite {
        sqlx::query("PRAGMA ignore_check_constraints = OFF")
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    drop(conn);
    let status: (String,) = sqlx::query_as("SELECT status FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(status.0, "frozen", "the test set an unknown status");
    app.get(&format!("/users/{id}"))
        .await
        .assert_problem(500, "retry later");
    app.stop().await;
}

async fn probes_and_openapi(backend: TestBackend) {
    let app = spawn(backend).await;
    let echoed = app
        .request(reqwest::Method::GET, "/users")
        .header("x-request-id", "req-abc-123")
        .send()
        .await;
    assert_eq!(echoed.header("x-request-id"), Some("req-abc-123"));
    let generated = app.get("/users").await;
    assert_eq!(
        generated.header("x-request-id").map(str::len),
        Some(36),
        "a UUID is generated"
    );

    app.get("/healthz").await.assert_status(200);
    let ready = app.get("/readyz").await.assert_status(200).value();
    assert_eq!(ready["checks"]["database"], "ok");

    let doc = app.get("/openapi.json").await.assert_status(200).value();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/users", "/users/{id}", "/users/{id}/status"] {
        assert!(doc["paths"][path].is_object(), "OpenAPI lacks {path}");
    }
    // The constraints the code enforces are in the contract.
    let get = &doc["paths"]["/users/{id}"]["get"];
    assert_eq!(get["parameters"][0]["schema"]["format"], "uuid");
    let list = &doc["paths"]["/users"]["get"];
    let limit = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap();
    assert_eq!(
        (
            limit["schema"]["minimum"].as_i64(),
            limit["schema"]["maximum"].as_i64()
        ),
        (Some(1), Some(100))
    );
    let create = &doc["paths"]["/users"]["post"]["responses"];
    for status in [
        "201", "400", "403", "409", "413", "415", "422", "500", "503",
    ] {
        assert!(create[status].is_object(), "POST /users lacks {status}");
    }
    assert!(create["409"]["content"]["application/problem+json"].is_object());

    // Readiness follows the database: with the pool closed the service is not ready.
    app.db().close().await;
    app.get("/readyz").await.assert_problem(503, "database");
    app.stop().await;
}

async fn concurrent_updates_are_never_server_errors(backend: TestBackend) {
    let app = spawn(backend).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let user = create(&app, &format!("c{i}@example.com"), "C").await;
        ids.push(user["id"].as_str().unwrap().to_owned());
    }
    // Many writers at once: on SQLite a read-then-write transaction used to fail with
    // SQLITE_BUSY (a 500) here.
    let patches = ids
        .iter()
        .chain(std::iter::repeat_n(&ids[0], 10))
        .enumerate()
        .map(|(n, id)| {
            app.request(reqwest::Method::PATCH, &format!("/users/{id}"))
                .json(&json!({ "name": format!("Writer {n}") }))
                .send()
        });
    let statuses: Vec<u16> = futures::future::join_all(patches)
        .await
        .into_iter()
        .map(|r| r.status.as_u16())
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    let first = app.get(&format!("/users/{}", ids[0])).await.value();
    let ok_on_first = statuses[0..1]
        .iter()
        .chain(&statuses[20..])
        .filter(|s| **s == 200)
        .count() as i64;
    assert_eq!(
        first["version"].as_i64().unwrap(),
        1 + ok_on_first,
        "every 200 is one version step"
    );
    // Every successful change was announced exactly once.
    let bus = app.memory_bus();
    let wanted = 20 + statuses.iter().filter(|s| **s == 200).count();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while bus.events(events::TOPIC).len() < wanted && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(bus.events(events::TOPIC).len(), wanted);
    app.stop().await;
}
