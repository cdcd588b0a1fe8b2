//! Delivery over WebSocket, each scenario on SQLite and on PostgreSQL: a message reaches
//! every member's socket and no one else's, presence frames follow connections, a client
//! that stops reading is dropped without delaying anyone else, and a silent socket is closed
//! after two heartbeats.

mod support;

use std::time::Duration;

use serde_json::Value;
use sloop_chat::ChatSettings;
use sloop_kit::on_both_backends;
use sloop_kit::testing::{TestBackend, assert_promtool_accepts};
use support::{
    Read, assert_quiet, connect, connect_small_buffer, create_room, get, join, next_of, read, send,
    spawn,
};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

on_both_backends!(
    messages_reach_members_sockets_only,
    presence_follows_connections,
    a_slow_socket_is_dropped_without_delaying_others,
    a_silent_socket_is_closed_after_two_heartbeats,
);

const WAIT: Duration = Duration::from_secs(10);

async fn messages_reach_members_sockets_only(backend: TestBackend) {
    let app = spawn(backend, ChatSettings::default()).await;
    let room = create_room(&app, "ann", "general").await;
    join(&app, &room, "bob").await.assert_status(201);
    let (mut ann, welcome) = connect(&app, "ann").await;
    assert_eq!(welcome["user_id"], "ann");
    assert_eq!(welcome["rooms"], serde_json::json!([room]));
    let (mut bob, bob_welcome) = connect(&app, "bob").await;
    assert!(
        welcome["instance"].as_str().is_some_and(|i| !i.is_empty())
            && bob_welcome["instance"] == welcome["instance"],
        "one instance names itself in every welcome: {welcome} {bob_welcome}"
    );
    let (mut eve, _) = connect(&app, "eve").await;

    let sent = send(&app, &room, "ann", "hello @bob").await;
    for socket in [&mut ann, &mut bob] {
        let frame = next_of(socket, "message", WAIT).await;
        assert_eq!(frame["id"], sent["id"]);
        assert_eq!(frame["text"], "hello @bob");
        assert_eq!(frame["room_id"], room.as_str());
        assert_eq!(frame["sender_id"], "ann");
        assert_eq!(frame["mentions"], serde_json::json!(["bob"]));
    }
    assert_quiet(&mut eve, "message", Duration::from_millis(300)).await;

    // A room joined while the socket is open is delivered too; one left is not.
    join(&app, &room, "eve").await.assert_status(201);
    send(&app, &room, "bob", "welcome eve").await;
    for socket in [&mut eve, &mut bob] {
        assert_eq!(
            next_of(socket, "message", WAIT).await["text"],
            "welcome eve"
        );
    }
    let leave = format!("/rooms/{room}/members/bob");
    support::call(&app, reqwest::Method::DELETE, &leave, "bob", None)
        .await
        .assert_status(204);
    send(&app, &room, "ann", "bob is gone").await;
    assert_eq!(
        next_of(&mut eve, "message", WAIT).await["text"],
        "bob is gone"
    );
    assert_quiet(&mut bob, "message", Duration::from_millis(300)).await;

    let metrics = app.get("/metrics").await.text();
    assert!(
        metrics.contains("chat_messages_delivered_total{service=\"chat\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("chat_delivery_duration_seconds_bucket{service=\"chat\",le=\"0.2\"}"));
    assert!(metrics.contains("chat_connected_sockets{service=\"chat\"}"));
    assert_promtool_accepts(&metrics);
    app.stop().await;
}

async fn presence_follows_connections(backend: TestBackend) {
    let app = spawn(backend, ChatSettings::default()).await;
    let room = create_room(&app, "ann", "general").await;
    join(&app, &room, "bob").await.assert_status(201);
    let presence = format!("/rooms/{room}/presence");
    let online = |page: Value| page["online"].clone();

    let (mut ann, _) = connect(&app, "ann").await;
    assert_eq!(
        online(get(&app, &presence, "ann").await.value()),
        serde_json::json!(["ann"])
    );
    let (bob, _) = connect(&app, "bob").await;
    let frame = next_of(&mut ann, "presence", WAIT).await;
    assert_eq!(frame["user_id"], "bob");
    assert_eq!(frame["room_id"], room.as_str());
    assert_eq!(frame["online"], true);
    assert_eq!(
        online(get(&app, &presence, "ann").await.value()),
        serde_json::json!(["ann", "bob"])
    );
    let members: Value = get(&app, &format!("/rooms/{room}/members"), "ann")
        .await
        .value();
    assert_eq!(members["items"][1]["online"], true);

    drop(bob);
    let frame = next_of(&mut ann, "presence", WAIT).await;
    assert_eq!(
        (frame["user_id"].as_str(), frame["online"].as_bool()),
        (Some("bob"), Some(false))
    );
    assert_eq!(
        online(get(&app, &presence, "ann").await.value()),
        serde_json::json!(["ann"])
    );
    app.stop().await;
}

async fn a_slow_socket_is_dropped_without_delaying_others(backend: TestBackend) {
    let settings = ChatSettings {
        socket_queue: 8,
        ..ChatSettings::default()
    };
    let app = spawn(backend, settings).await;
    let room = create_room(&app, "ann", "general").await;
    join(&app, &room, "slow").await.assert_status(201);
    let (mut ann, _) = connect(&app, "ann").await;
    // Never read again: its kernel buffer and then its queue fill up.
    let mut slow = connect_small_buffer(&app, "slow").await;

    // Big messages fill the slow client's buffers (kernel, then its queue); each one's delay
    // to the reading client is measured from when it was stored, until and after the drop.
    let filler = "x".repeat(3900);
    let mut delays = Vec::new();
    let mut dropped_after = None;
    for n in 0..2000 {
        let sent = send(&app, &room, "ann", &format!("{n} {filler}")).await;
        let frame = next_of(&mut ann, "message", WAIT).await;
        assert_eq!(frame["id"], sent["id"], "in order, none lost");
        let stored = sloop_kit::clock::parse_rfc3339(frame["sent_at"].as_str().unwrap()).unwrap();
        delays.push((time::OffsetDateTime::now_utc() - stored).as_seconds_f64());
        if dropped_after.is_none()
            && n % 10 == 9
            && !online(&app, &room).await.contains(&"slow".to_owned())
        {
            dropped_after = Some(n + 1);
        }
        if dropped_after.is_some_and(|d| n + 1 >= d + 20) {
            break;
        }
    }
    let dropped_after = dropped_after.expect("the slow socket was never dropped");
    delays.sort_by(f64::total_cmp);
    let median = delays[delays.len() / 2];
    let p90 = delays[delays.len() * 9 / 10];
    eprintln!(
        "slow socket dropped after {dropped_after} messages; median {median:.4}s, p90 {p90:.4}s"
    );
    assert!(
        median < 0.05,
        "median delivery to the reading client took {median:.3}s: {delays:?}"
    );
    assert!(p90 < 0.2, "p90 delivery took {p90:.3}s: {delays:?}");

    // Reading again, the slow client finds the backlog and then the end of the socket.
    let mut frames = 0;
    loop {
        match read(&mut slow, WAIT).await {
            Read::Frame(_) => frames += 1,
            Read::Closed(frame) => {
                if let Some(frame) = frame {
                    assert_eq!(frame.code, CloseCode::Again);
                }
                break;
            }
            Read::TimedOut => panic!("the slow socket is still open after {frames} frames"),
        }
    }
    let metrics = app.get("/metrics").await.text();
    assert!(metrics.contains("chat_sockets_dropped_total{service=\"chat\",reason=\"slow\"}"));
    assert!(
        frames < dropped_after,
        "the slow socket got all {frames} messages; it was never behind"
    );
    app.stop().await;
}

async fn a_silent_socket_is_closed_after_two_heartbeats(backend: TestBackend) {
    let heartbeat = Duration::from_millis(200);
    let app = spawn(
        backend,
        ChatSettings {
            heartbeat,
            ..ChatSettings::default()
        },
    )
    .await;
    let room = create_room(&app, "ann", "general").await;
    join(&app, &room, "mute").await.assert_status(201);
    let (mut ann, _) = connect(&app, "ann").await;
    let (mut mute, _) = connect(&app, "mute").await;

    // ann reads (and so answers pings) throughout; mute reads nothing for 5 heartbeats.
    assert_quiet(&mut ann, "message", 5 * heartbeat).await;
    // The server let it go: it is no longer online.
    assert_eq!(online(&app, &room).await, ["ann"]);
    // Frames queued before it went silent come first (presence of ann, perhaps), then the
    // close frame. Reading the pings queued before it, the client answers them, and that
    // write may fail on the closed connection before the close frame is read: then the
    // socket just ends.
    let mut end = read(&mut mute, WAIT).await;
    while let Read::Frame(_) = end {
        end = read(&mut mute, WAIT).await;
    }
    match end {
        Read::Closed(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::Policy);
            assert!(frame.reason.contains("no pong"), "{}", frame.reason);
        }
        Read::Closed(None) => {}
        Read::TimedOut => panic!("the silent socket is still open"),
        Read::Frame(_) => unreachable!(),
    }
    send(&app, &room, "ann", "still here").await;
    assert_eq!(
        next_of(&mut ann, "message", WAIT).await["text"],
        "still here"
    );
    let metrics = app.get("/metrics").await.text();
    assert!(metrics.contains("chat_sockets_dropped_total{service=\"chat\",reason=\"heartbeat\"}"));
    app.stop().await;
}

/// Who of `room` is connected, as `ann` sees it: a dropped socket leaves at once.
async fn online(app: &sloop_kit::testing::TestApp, room: &str) -> Vec<String> {
    let presence = get(app, &format!("/rooms/{room}/presence"), "ann")
        .await
        .value();
    serde_json::from_value(presence["online"].clone()).unwrap()
}
