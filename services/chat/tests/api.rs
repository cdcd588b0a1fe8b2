//! The chat service's HTTP API, each scenario on SQLite and on PostgreSQL: rooms, members,
//! messages paged both ways by cursor, the event a message publishes (with its mentions),
//! membership rules and problem documents for bad input.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use sloop_chat::ChatSettings;
use sloop_events::chat as chat_events;
use sloop_kit::on_both_backends;
use sloop_kit::testing::{TestApp, TestBackend};
use support::{call, create_room, get, join, send, spawn};

on_both_backends!(
    rooms_members_and_leaving,
    messages_page_both_ways,
    a_message_publishes_its_event_with_mentions,
    non_members_may_not_read_or_post,
    bad_input_gets_problem_documents,
    probes_metrics_and_openapi,
);

async fn app(backend: TestBackend) -> TestApp {
    spawn(backend, ChatSettings::default()).await
}

async fn rooms_members_and_leaving(backend: TestBackend) {
    let app = app(backend).await;
    let general = create_room(&app, "ann", "general").await;
    let random = create_room(&app, "bob", "random").await;

    let room = get(&app, &format!("/rooms/{general}"), "bob").await;
    room.assert_status(200);
    assert_eq!(room.value()["name"], "general");
    assert_eq!(room.value()["created_by"], "ann");
    assert_eq!(room.value()["member_count"], 1);

    let all: Value = get(&app, "/rooms", "carl").await.value();
    let ids: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [random.as_str(), general.as_str()], "newest first");
    let mine: Value = get(&app, "/rooms?mine=true", "ann").await.value();
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    assert_eq!(mine["items"][0]["id"], general.as_str());

    // Joining is idempotent: 201 the first time, 200 after.
    join(&app, &general, "bob").await.assert_status(201);
    let again = join(&app, &general, "bob").await;
    again.assert_status(200);
    assert_eq!(again.value()["user_id"], "bob");
    let members: Value = get(&app, &format!("/rooms/{general}/members"), "bob")
        .await
        .value();
    let names: Vec<&str> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ann", "bob"]);
    assert_eq!(members["items"][0]["online"], false);

    // Pages of one room at a time: the cursor leads on.
    let first: Value = get(&app, "/rooms?limit=1", "ann").await.value();
    assert_eq!(first["items"][0]["id"], random.as_str());
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: Value = get(&app, &format!("/rooms?limit=1&cursor={cursor}"), "ann")
        .await
        .value();
    assert_eq!(second["items"][0]["id"], general.as_str());
    assert!(second["next_cursor"].is_null());

    let leave = format!("/rooms/{general}/members/bob");
    call(&app, reqwest::Method::DELETE, &leave, "bob", None)
        .await
        .assert_status(204);
    call(&app, reqwest::Method::DELETE, &leave, "bob", None)
        .await
        .assert_problem(404, "not a member");
    get(&app, &format!("/rooms/{general}/messages"), "bob")
        .await
        .assert_problem(403, "not a member");
    // An admin may add or remove anyone; others only themselves.
    let add_carl = format!("/rooms/{general}/members/carl");
    call(&app, reqwest::Method::PUT, &add_carl, "bob", None)
        .await
        .assert_problem(403, "only for yourself");
    app.request(reqwest::Method::PUT, &add_carl)
        .header("x-user-id", "root")
        .header("x-user-roles", "admin")
        .send()
        .await
        .assert_status(201);
    app.stop().await;
}

async fn messages_page_both_ways(backend: TestBackend) {
    let app = app(backend).await;
    let room = create_room(&app, "ann", "general").await;
    join(&app, &room, "bob").await.assert_status(201);
    let mut sent = Vec::new();
    for n in 0..5 {
        let who = if n % 2 == 0 { "ann" } else { "bob" };
        let message = send(&app, &room, who, &format!("  message {n}  ")).await;
        assert_eq!(message["text"], format!("message {n}"), "text is trimmed");
        assert_eq!(message["sender_id"], who);
        assert_eq!(message["room_id"], room.as_str());
        sent.push(message["id"].as_str().unwrap().to_owned());
    }
    let path = format!("/rooms/{room}/messages");
    let texts = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    };

    let newest: Value = get(&app, &format!("{path}?limit=2"), "bob").await.value();
    assert_eq!(texts(&newest), ["message 4", "message 3"]);
    let cursor = newest["next_cursor"].as_str().unwrap();
    assert_eq!(cursor, sent[3]);
    let older: Value = get(&app, &format!("{path}?limit=2&cursor={cursor}"), "bob")
        .await
        .value();
    assert_eq!(texts(&older), ["message 2", "message 1"]);
    let last: Value = get(
        &app,
        &format!(
            "{path}?limit=2&cursor={}",
            older["next_cursor"].as_str().unwrap()
        ),
        "bob",
    )
    .await
    .value();
    assert_eq!(texts(&last), ["message 0"]);
    assert!(last["next_cursor"].is_null());

    // Oldest first from the last message a client saw: what it missed.
    let missed: Value = get(
        &app,
        &format!("{path}?order=oldest&cursor={}", sent[1]),
        "ann",
    )
    .await
    .value();
    assert_eq!(texts(&missed), ["message 2", "message 3", "message 4"]);
    assert!(missed["next_cursor"].is_null());
    let oldest: Value = get(&app, &format!("{path}?order=oldest&limit=3"), "ann")
        .await
        .value();
    assert_eq!(texts(&oldest), ["message 0", "message 1", "message 2"]);
    assert_eq!(oldest["next_cursor"], sent[2].as_str());
    app.stop().await;
}

async fn a_message_publishes_its_event_with_mentions(backend: TestBackend) {
    let app = app(backend).await;
    let room = create_room(&app, "ann", "general").await;
    join(&app, &room, "bob").await.assert_status(201);
    join(&app, &room, "cat").await.assert_status(201);
    let message = send(
        &app,
        &room,
        "ann",
        "@bob, @cat: lunch? (@ann @stranger @bob)",
    )
    .await;
    assert_eq!(message["mentions"], json!(["bob", "cat"]));

    let id = message["id"].as_str().unwrap().to_owned();
    let event = app
        .memory_bus()
        .wait_for_event(chat_events::TOPIC, Duration::from_secs(10), |e| {
            e.is(chat_events::MESSAGE_SENT) && e.data["message_id"] == id.as_str()
        })
        .await
        .expect("the message's event is published");
    assert_eq!(event.subject, room);
    let data: chat_events::ChatMessageSent = event.data_as().unwrap();
    assert_eq!(data.mentions, ["bob", "cat"]);
    assert_eq!(data.sender_id, "ann");
    assert_eq!(data.room_id, room);
    assert_eq!(data.sent_at, message["sent_at"].as_str().unwrap());

    let plain = send(&app, &room, "bob", "no one in particular").await;
    assert_eq!(plain["mentions"], json!([]));
    app.stop().await;
}

async fn non_members_may_not_read_or_post(backend: TestBackend) {
    let app = app(backend).await;
    let room = create_room(&app, "ann", "private-ish").await;
    let path = format!("/rooms/{room}/messages");
    call(
        &app,
        reqwest::Method::POST,
        &path,
        "eve",
        Some(json!({ "text": "hi" })),
    )
    .await
    .assert_problem(403, "not a member");
    get(&app, &path, "eve")
        .await
        .assert_problem(403, "join it first");
    get(&app, &format!("/rooms/{room}/members"), "eve")
        .await
        .assert_problem(403, "not a member");
    get(&app, &format!("/rooms/{room}/presence"), "eve")
        .await
        .assert_problem(403, "not a member");
    // Nothing was stored or published for the refused post.
    let page: Value = get(&app, &path, "ann").await.value();
    assert!(page["items"].as_array().unwrap().is_empty());
    app.stop().await;
}

async fn bad_input_gets_problem_documents(backend: TestBackend) {
    let app = app(backend).await;
    let room = create_room(&app, "ann", "general").await;
    let messages = format!("/rooms/{room}/messages");

    app.get("/rooms").await.assert_problem(401, "sign in");
    app.get("/socket").await.assert_problem(401, "sign in");
    get(&app, "/rooms/not-a-uuid", "ann")
        .await
        .assert_problem(400, "not a room id");
    let missing = uuid::Uuid::now_v7();
    get(&app, &format!("/rooms/{missing}"), "ann")
        .await
        .assert_problem(404, "no room");
    get(&app, &format!("/rooms/{missing}/messages"), "ann")
        .await
        .assert_problem(404, "no room");
    support::join(&app, &missing.to_string(), "ann")
        .await
        .assert_problem(404, "no room");

    let post = |body: Value| call(&app, reqwest::Method::POST, &messages, "ann", Some(body));
    post(json!({ "text": "   " }))
        .await
        .assert_problem(422, "text must be 1 to 4000");
    post(json!({ "text": "x".repeat(4001) }))
        .await
        .assert_problem(422, "4000");
    post(json!({ "text": "a\u{0}b" }))
        .await
        .assert_problem(422, "control characters");
    post(json!({ "txt": "hi" }))
        .await
        .assert_problem(422, "expected fields");
    post(json!({ "text": 5 }))
        .await
        .assert_problem(422, "expected fields");
    app.request(reqwest::Method::POST, &messages)
        .header("x-user-id", "ann")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .assert_problem(400, "not valid JSON");
    call(
        &app,
        reqwest::Method::POST,
        "/rooms",
        "ann",
        Some(json!({ "name": "" })),
    )
    .await
    .assert_problem(422, "name must be 1 to 100");
    call(
        &app,
        reqwest::Method::POST,
        "/rooms",
        "ann",
        Some(json!({ "name": "a\nb" })),
    )
    .await
    .assert_problem(422, "control characters");

    get(&app, &format!("{messages}?limit=0"), "ann")
        .await
        .assert_problem(400, "limit");
    get(&app, &format!("{messages}?limit=many"), "ann")
        .await
        .assert_problem(400, "limit");
    get(&app, &format!("{messages}?order=sideways"), "ann")
        .await
        .assert_problem(400, "`newest` or `oldest`");
    get(&app, &format!("{messages}?cursor=yesterday"), "ann")
        .await
        .assert_problem(400, "cursor");
    get(&app, "/rooms?mine=perhaps", "ann")
        .await
        .assert_problem(400, "query");
    // A plain GET of the socket, signed in, is not a handshake.
    get(&app, "/socket", "ann")
        .await
        .assert_problem(400, "WebSocket handshake");
    app.stop().await;
}

async fn probes_metrics_and_openapi(backend: TestBackend) {
    let app = app(backend).await;
    app.get("/healthz").await.assert_status(200);
    app.get("/readyz").await.assert_status(200);
    let doc: Value = app.get("/openapi.json").await.value();
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/rooms",
        "/rooms/{id}",
        "/rooms/{id}/members/{user_id}",
        "/rooms/{id}/messages",
        "/rooms/{id}/presence",
        "/socket",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }
    assert!(
        doc["paths"]["/socket"]["get"]["responses"]["101"].is_object(),
        "the socket is a 101"
    );
    assert!(doc["components"]["schemas"]["Frame"].is_object());
    app.stop().await;
}
