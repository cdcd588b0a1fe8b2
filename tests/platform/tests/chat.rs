//! Chat across two instances, each its own process, on one PostgreSQL database with events
//! over a Tansu broker: Ann's socket goes through the gateway to the first instance, the
//! admin's straight to the second (with the identity headers the gateway would set), and
//! each receives what the other posts: the fan-out crosses the broker, each instance
//! reading the chat topic in a consumer group of its own. Presence spans both.

use std::time::Duration;

use futures::StreamExt;
use platform_tests::api::{Account, ApiClient, Socket, next_frame};
use platform_tests::shop::ADMIN_EMAIL;
use platform_tests::{Platform, Process, free_port, gateway_config_file};
use serde_json::{Value, json};
use sloop_kit::testing::OtlpReceiver;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test(flavor = "multi_thread")]
async fn two_chat_instances_deliver_to_members_on_either_through_the_broker() {
    let receiver = OtlpReceiver::start().await;
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_platform-service"));
    let mut platform =
        Platform::start_with_shop(binary, &receiver.endpoint, &gateway_config_file(1000, 1000))
            .await;
    let database = platform
        .service("chat")
        .database_url()
        .expect("chat's database")
        .to_owned();
    let mut second = Process::new(binary, "chat", free_port())
        .env("DATABASE_URL", database)
        .env("EVENT_BUS", platform.broker.url().to_string())
        .env("RUST_LOG", "info,librdkafka=warn");
    second.start().await;

    let api = ApiClient::new(platform.gateway.url(""));
    let ann = Account::from_login(&api.sign_up("ann@example.com").await);
    let admin = Account::from_login(&api.sign_up(ADMIN_EMAIL).await);
    let (status, room) = api
        .post(
            "/api/chat/rooms",
            Some(&ann.token),
            json!({ "name": "Across" }),
        )
        .await;
    assert_eq!(status, 201, "{room}");
    let room_id = room["id"].as_str().expect("room id").to_owned();
    let joined = reqwest::Client::new()
        .put(second.url(&format!("/rooms/{room_id}/members/{}", admin.user_id)))
        .header("x-user-id", &admin.user_id)
        .send()
        .await
        .expect("join on the second instance");
    assert_eq!(joined.status(), 201);

    let mut ann_socket = api.websocket("/api/chat/socket", &ann.token).await;
    let mut admin_socket = direct_socket(&second, &admin.user_id).await;
    next_frame(&mut ann_socket, "welcome").await;
    next_frame(&mut admin_socket, "welcome").await;

    // The second instance's consumer joins its group on the broker in its own time: post
    // until one message crosses, then every later one must, in order.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let probe = post(&api, &ann, &room_id, "is anyone there?").await;
        if arrives_within(&mut admin_socket, &probe["id"], Duration::from_secs(2)).await {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message crossed to the second instance within 60 s:\n{}",
            second.log()
        );
    }
    for n in 0..5 {
        let sent = post(&api, &ann, &room_id, &format!("through the broker {n}")).await;
        let frame = next_frame(&mut admin_socket, "message").await;
        assert_eq!(frame["id"], sent["id"], "in order, each once");
    }
    let reply = reqwest::Client::new()
        .post(second.url(&format!("/rooms/{room_id}/messages")))
        .header("x-user-id", &admin.user_id)
        .json(&json!({ "text": "loud and clear" }))
        .send()
        .await
        .expect("post on the second instance");
    assert_eq!(reply.status(), 201);
    let reply: Value = reply.json().await.expect("message");
    let frame = skip_to(&mut ann_socket, &reply["id"]).await;
    assert_eq!(frame["text"], "loud and clear");

    let (status, presence) = api
        .get(
            &format!("/api/chat/rooms/{room_id}/presence"),
            Some(&ann.token),
        )
        .await;
    assert_eq!(status, 200, "{presence}");
    let online = presence["online"].to_string();
    assert!(
        online.contains(&ann.user_id) && online.contains(&admin.user_id),
        "both online across the instances: {presence}"
    );

    drop((ann_socket, admin_socket));
    second.stop().await;
    platform.stop().await;
}

async fn post(api: &ApiClient, who: &Account, room: &str, text: &str) -> Value {
    let (status, sent) = api
        .post(
            &format!("/api/chat/rooms/{room}/messages"),
            Some(&who.token),
            json!({ "text": text }),
        )
        .await;
    assert_eq!(status, 201, "{sent}");
    sent
}

/// A socket to `instance` directly, as `user`.
async fn direct_socket(instance: &Process, user: &str) -> Socket {
    let url = instance.url("/socket").replacen("http", "ws", 1);
    let mut request = url.into_client_request().expect("a WebSocket URL");
    request
        .headers_mut()
        .insert("x-user-id", user.parse().expect("a header value"));
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("a socket to the second instance");
    socket
}

/// Whether the message frame with `id` arrives within `wait` (earlier ones are passed).
async fn arrives_within(socket: &mut Socket, id: &Value, wait: Duration) -> bool {
    tokio::time::timeout(wait, async {
        while let Some(Ok(frame)) = socket.next().await {
            if let Message::Text(text) = frame {
                let value: Value = serde_json::from_str(&text).unwrap_or_default();
                if value["type"] == "message" && &value["id"] == id {
                    return true;
                }
            }
        }
        false
    })
    .await
    .unwrap_or(false)
}

/// The message frame with `id`, passing the earlier ones (the probes).
async fn skip_to(socket: &mut Socket, id: &Value) -> Value {
    loop {
        let frame = next_frame(socket, "message").await;
        if &frame["id"] == id {
            return frame;
        }
    }
}
