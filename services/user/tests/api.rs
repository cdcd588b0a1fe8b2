//! The user API end to end over HTTP, each scenario on SQLite and on PostgreSQL.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sloop_kit::testing::{TestApp, TestBackend};

async fn spawn(backend: TestBackend) -> TestApp {
    TestApp::spawn(
        sloop_user::SPEC,
        backend,
        &sloop_user::MIGRATIONS,
        sloop_user::router,
    )
    .await
}

/// Runs each scenario once per backend, as `<name>_sqlite` and `<name>_postgres`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::spawn(sloop_kit::testing::TestBackend::Sqlite).await).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name(super::spawn(sloop_kit::testing::TestBackend::Postgres).await).await })*
        }
    };
}

on_both_backends!(
    create_get_update_and_status,
    duplicate_email_is_a_conflict,
    bad_input_gets_problem_documents,
    pagination_walks_every_user_once,
    deleted_users_cannot_change,
    probes_and_openapi,
    concurrent_updates_are_never_server_errors,
);

async fn create(app: &TestApp, email: &str, name: &str) -> reqwest::Response {
    app.client
        .post(app.url("/users"))
        .json(&json!({ "email": email, "name": name }))
        .send()
        .await
        .unwrap()
}

/// Asserts a problem document with `status` whose detail mentions `needle`.
async fn assert_problem(response: reqwest::Response, status: StatusCode, needle: &str) {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:sloop:problem:")
    );
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(needle),
        "detail {detail:?} should mention {needle:?}"
    );
}

async fn create_get_update_and_status(app: TestApp) {
    let response = create(&app, " Ada@Example.com ", "Ada").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["email"], "ada@example.com");
    assert_eq!(created["status"], "active");
    assert_eq!(created["version"], 1);
    assert_eq!(
        location,
        format!("/users/{}", created["id"].as_str().unwrap())
    );

    let fetched: Value = app
        .client
        .get(app.url(&location))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, created);

    let updated = app
        .client
        .patch(app.url(&location))
        .json(&json!({ "name": "Ada Lovelace" }))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), StatusCode::OK);
    let updated: Value = updated.json().await.unwrap();
    assert_eq!(updated["name"], "Ada Lovelace");
    assert_eq!(updated["email"], "ada@example.com");
    assert_eq!(updated["version"], 2);

    let suspended = app
        .client
        .put(app.url(&format!("{location}/status")))
        .json(&json!({ "status": "suspended" }))
        .send()
        .await
        .unwrap();
    assert_eq!(suspended.status(), StatusCode::OK);
    let suspended: Value = suspended.json().await.unwrap();
    assert_eq!(suspended["status"], "suspended");
    assert_eq!(suspended["version"], 3);
    app.stop().await;
}

async fn duplicate_email_is_a_conflict(app: TestApp) {
    assert_eq!(
        create(&app, "bob@example.com", "Bob").await.status(),
        StatusCode::CREATED
    );
    // Case and spaces do not make a different address.
    let again = create(&app, "BOB@example.com ", "Other Bob").await;
    assert_problem(again, StatusCode::CONFLICT, "bob@example.com").await;

    // Taking another user's email on update is a conflict too.
    let carol: Value = create(&app, "carol@example.com", "Carol")
        .await
        .json()
        .await
        .unwrap();
    let steal = app
        .client
        .patch(app.url(&format!("/users/{}", carol["id"].as_str().unwrap())))
        .json(&json!({ "email": "bob@example.com" }))
        .send()
        .await
        .unwrap();
    assert_problem(steal, StatusCode::CONFLICT, "already exists").await;
    app.stop().await;
}

async fn bad_input_gets_problem_documents(app: TestApp) {
    let malformed = app
        .client
        .post(app.url("/users"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_problem(malformed, StatusCode::BAD_REQUEST, "not valid JSON").await;

    let wrong_type = app
        .client
        .post(app.url("/users"))
        .json(&json!({ "email": 42, "name": "x" }))
        .send()
        .await
        .unwrap();
    assert_problem(wrong_type, StatusCode::UNPROCESSABLE_ENTITY, "invalid type").await;

    let unknown_field = app
        .client
        .post(app.url("/users"))
        .json(&json!({ "email": "a@b.io", "name": "x", "admin": true }))
        .send()
        .await
        .unwrap();
    assert_problem(unknown_field, StatusCode::UNPROCESSABLE_ENTITY, "admin").await;

    let invalid_email = create(&app, "not-an-email", "x").await;
    assert_problem(
        invalid_email,
        StatusCode::UNPROCESSABLE_ENTITY,
        "not an email",
    )
    .await;

    let oversized = create(&app, "big@example.com", &"x".repeat(100 * 1024)).await;
    assert_problem(oversized, StatusCode::PAYLOAD_TOO_LARGE, "larger").await;

    let no_content_type = app
        .client
        .post(app.url("/users"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(
        no_content_type,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "application/json",
    )
    .await;

    let unknown_id = app
        .client
        .get(app.url(&format!("/users/{}", uuid::Uuid::now_v7())))
        .send()
        .await
        .unwrap();
    assert_problem(unknown_id, StatusCode::NOT_FOUND, "no user").await;

    let not_a_uuid = app.client.get(app.url("/users/42")).send().await.unwrap();
    assert_problem(not_a_uuid, StatusCode::BAD_REQUEST, "UUID").await;

    let bad_status = app
        .client
        .put(app.url(&format!("/users/{}/status", uuid::Uuid::now_v7())))
        .json(&json!({ "status": "banned" }))
        .send()
        .await
        .unwrap();
    assert_problem(
        bad_status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown variant",
    )
    .await;

    let bad_limit = app
        .client
        .get(app.url("/users?limit=0"))
        .send()
        .await
        .unwrap();
    assert_problem(bad_limit, StatusCode::BAD_REQUEST, "limit").await;
    let bad_limit_type = app
        .client
        .get(app.url("/users?limit=many"))
        .send()
        .await
        .unwrap();
    assert_problem(bad_limit_type, StatusCode::BAD_REQUEST, "limit").await;
    let bad_cursor = app
        .client
        .get(app.url("/users?cursor=%%%"))
        .send()
        .await
        .unwrap();
    assert_problem(bad_cursor, StatusCode::BAD_REQUEST, "cursor").await;

    let empty_patch = app
        .client
        .patch(app.url(&format!("/users/{}", uuid::Uuid::now_v7())))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_problem(
        empty_patch,
        StatusCode::UNPROCESSABLE_ENTITY,
        "nothing to change",
    )
    .await;

    let no_route = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_problem(no_route, StatusCode::NOT_FOUND, "no such route").await;

    // Nothing above created a user.
    let page: Value = app
        .client
        .get(app.url("/users"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 0);
    app.stop().await;
}

async fn pagination_walks_every_user_once(app: TestApp) {
    let mut created = Vec::new();
    for i in 0..7 {
        let user: Value = create(&app, &format!("u{i}@example.com"), "U")
            .await
            .json()
            .await
            .unwrap();
        created.push(user["id"].as_str().unwrap().to_owned());
    }
    // Suspend one so the status filter has something to find.
    app.client
        .put(app.url(&format!("/users/{}/status", created[3])))
        .json(&json!({ "status": "suspended" }))
        .send()
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut url = app.url("/users?limit=3");
    let mut pages = 0;
    loop {
        let page: Value = app
            .client
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        for user in page["items"].as_array().unwrap() {
            seen.push(user["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => url = app.url(&format!("/users?limit=3&cursor={cursor}")),
            None => break,
        }
    }
    assert_eq!(seen, created, "every user once, in creation order");
    assert_eq!(pages, 3);

    let suspended: Value = app
        .client
        .get(app.url("/users?status=suspended"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = suspended["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], created[3].as_str());
    app.stop().await;
}

async fn deleted_users_cannot_change(app: TestApp) {
    let user: Value = create(&app, "dee@example.com", "Dee")
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/users/{}", user["id"].as_str().unwrap());
    let deleted = app
        .client
        .put(app.url(&format!("{path}/status")))
        .json(&json!({ "status": "deleted" }))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let revive = app
        .client
        .put(app.url(&format!("{path}/status")))
        .json(&json!({ "status": "active" }))
        .send()
        .await
        .unwrap();
    assert_problem(revive, StatusCode::CONFLICT, "deleted").await;
    let rename = app
        .client
        .patch(app.url(&path))
        .json(&json!({ "name": "Zombie" }))
        .send()
        .await
        .unwrap();
    assert_problem(rename, StatusCode::CONFLICT, "deleted").await;
    app.stop().await;
}

async fn probes_and_openapi(app: TestApp) {
    let echoed = app
        .client
        .get(app.url("/users"))
        .header("x-request-id", "req-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "req-abc-123");
    let generated = app.client.get(app.url("/users")).send().await.unwrap();
    assert_eq!(
        generated.headers()["x-request-id"].len(),
        36,
        "a UUID is generated"
    );

    let alive = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(alive.status(), StatusCode::OK);
    let ready: Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["database"], "ok");

    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/users", "/users/{id}", "/users/{id}/status"] {
        assert!(doc["paths"][path].is_object(), "OpenAPI lacks {path}");
    }

    // Readiness follows the database: with the pool closed the service is not ready.
    app.db.close().await;
    let not_ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_problem(not_ready, StatusCode::SERVICE_UNAVAILABLE, "database").await;
    app.stop().await;
}

async fn concurrent_updates_are_never_server_errors(app: TestApp) {
    let mut ids = Vec::new();
    for i in 0..20 {
        let user: Value = create(&app, &format!("c{i}@example.com"), "C")
            .await
            .json()
            .await
            .unwrap();
        ids.push(user["id"].as_str().unwrap().to_owned());
    }
    // Many writers at once: on SQLite a read-then-write transaction used to fail with
    // SQLITE_BUSY (a 500) here.
    let patches = ids
        .iter()
        .chain(std::iter::repeat_n(&ids[0], 10))
        .enumerate()
        .map(|(n, id)| {
            app.client
                .patch(app.url(&format!("/users/{id}")))
                .json(&json!({ "name": format!("Writer {n}") }))
                .send()
        });
    let statuses: Vec<u16> = futures::future::join_all(patches)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    let first: Value = app
        .client
        .get(app.url(&format!("/users/{}", ids[0])))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    app.stop().await;
}
