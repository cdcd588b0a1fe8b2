//! Two chat instances on one database and one bus, each scenario on SQLite and on
//! PostgreSQL: a message posted through either reaches members connected to the other
//! (each instance consumes the chat topic in a group of its own), and presence counts
//! sockets on both.

mod support;

use std::time::Duration;

use sloop_chat::ChatSettings;
use sloop_kit::on_both_backends;
use sloop_kit::testing::TestBackend;
use support::{connect, create_room, get, join, next_of, send, spawn, spawn_beside};

on_both_backends!(messages_cross_instances, presence_spans_instances);

const WAIT: Duration = Duration::from_secs(10);

async fn messages_cross_instances(backend: TestBackend) {
    let first = spawn(backend, ChatSettings::default()).await;
    let second = spawn_beside(&first, backend, ChatSettings::default()).await;
    let room = create_room(&first, "ann", "general").await;
    join(&second, &room, "bob").await.assert_status(201);
    let (mut ann, _) = connect(&first, "ann").await;
    let (mut bob, _) = connect(&second, "bob").await;

    let from_ann = send(&first, &room, "ann", "hi from the first instance").await;
    let got = next_of(&mut bob, "message", WAIT).await;
    assert_eq!(got["id"], from_ann["id"]);
    assert_eq!(
        next_of(&mut ann, "message", WAIT).await["id"],
        from_ann["id"]
    );

    let from_bob = send(&second, &room, "bob", "and back from the second").await;
    assert_eq!(
        next_of(&mut ann, "message", WAIT).await["id"],
        from_bob["id"]
    );
    assert_eq!(
        next_of(&mut bob, "message", WAIT).await["id"],
        from_bob["id"]
    );

    // Each instance consumed in its own group, and the event was published once.
    let groups: Vec<(String,)> =
        sqlx::query_as("SELECT DISTINCT consumer FROM kit_processed_events ORDER BY consumer")
            .fetch_all(first.db().pool())
            .await
            .unwrap();
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert!(
        groups.iter().all(|(g,)| g.starts_with("chat-")),
        "{groups:?}"
    );
    let published = first
        .memory_bus()
        .events(sloop_events::chat::TOPIC)
        .into_iter()
        .filter(|e| e.is(sloop_events::chat::MESSAGE_SENT))
        .count();
    assert_eq!(published, 2);
    second.stop().await;
    first.stop().await;
}

async fn presence_spans_instances(backend: TestBackend) {
    let first = spawn(backend, ChatSettings::default()).await;
    let second = spawn_beside(&first, backend, ChatSettings::default()).await;
    let room = create_room(&first, "ann", "general").await;
    join(&first, &room, "bob").await.assert_status(201);
    let (mut ann, _) = connect(&first, "ann").await;
    let (bob, _) = connect(&second, "bob").await;
    let frame = next_of(&mut ann, "presence", WAIT).await;
    assert_eq!(
        (frame["user_id"].as_str(), frame["online"].as_bool()),
        (Some("bob"), Some(true))
    );
    let presence = format!("/rooms/{room}/presence");
    let online = get(&first, &presence, "ann").await.value()["online"].clone();
    assert_eq!(online, serde_json::json!(["ann", "bob"]));

    // bob's second socket, on the other instance: no presence change until both close.
    let (bob_again, _) = connect(&first, "bob").await;
    drop(bob);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let online = get(&second, &presence, "bob").await.value()["online"].clone();
    assert_eq!(online, serde_json::json!(["ann", "bob"]));
    drop(bob_again);
    let frame = next_of(&mut ann, "presence", WAIT).await;
    assert_eq!(
        (frame["user_id"].as_str(), frame["online"].as_bool()),
        (Some("bob"), Some(false))
    );
    second.stop().await;
    first.stop().await;
}
