//! What the chat tests share: starting instances, requests as a signed-in user (the
//! headers the gateway sets), and WebSocket clients that read frames as JSON.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use sloop_chat::ChatSettings;
use sloop_kit::testing::{TestApp, TestBackend, TestResponse};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn spawn(backend: TestBackend, settings: ChatSettings) -> TestApp {
    TestApp::spawn(sloop_chat::service(settings), backend).await
}

/// A second instance on `first`'s database and bus.
pub async fn spawn_beside(
    first: &TestApp,
    backend: TestBackend,
    settings: ChatSettings,
) -> TestApp {
    TestApp::builder(sloop_chat::service(settings))
        .backend(backend)
        .database_url(first.database_url.clone())
        .bus(first.bus.clone())
        .spawn()
        .await
}

/// A request as `user`, as the gateway forwards it.
pub async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    user: &str,
    body: Option<Value>,
) -> TestResponse {
    let mut request = app.request(method, path).header("x-user-id", user);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await
}

pub async fn get(app: &TestApp, path: &str, user: &str) -> TestResponse {
    call(app, reqwest::Method::GET, path, user, None).await
}

pub async fn create_room(app: &TestApp, user: &str, name: &str) -> String {
    let response = call(
        app,
        reqwest::Method::POST,
        "/rooms",
        user,
        Some(json!({ "name": name })),
    )
    .await;
    response.assert_status(201);
    response.value()["id"].as_str().unwrap().to_owned()
}

pub async fn join(app: &TestApp, room: &str, user: &str) -> TestResponse {
    let path = format!("/rooms/{room}/members/{user}");
    call(app, reqwest::Method::PUT, &path, user, None).await
}

pub async fn send(app: &TestApp, room: &str, user: &str, text: &str) -> Value {
    let path = format!("/rooms/{room}/messages");
    let response = call(
        app,
        reqwest::Method::POST,
        &path,
        user,
        Some(json!({ "text": text })),
    )
    .await;
    response.assert_status(201);
    response.value()
}

fn socket_request(
    addr: SocketAddr,
    user: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut request = format!("ws://{addr}/socket").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-user-id", user.parse().unwrap());
    request
}

/// A socket of `user`, after its welcome frame (so it is registered for delivery).
pub async fn connect(app: &TestApp, user: &str) -> (Socket, Value) {
    let (mut socket, _) = tokio_tungstenite::connect_async(socket_request(app.addr, user))
        .await
        .unwrap();
    let welcome = next_frame(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (socket, welcome)
}

/// A socket of `user` whose kernel receive buffer is tiny, so that once the test stops
/// reading it, the server's writes back up after a few frames instead of megabytes.
pub async fn connect_small_buffer(app: &TestApp, user: &str) -> Socket {
    let tcp = TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let stream = tcp.connect(app.addr).await.unwrap();
    let (mut socket, _) = tokio_tungstenite::client_async(
        socket_request(app.addr, user),
        MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();
    let welcome = next_frame(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    socket
}

/// What reading a socket gave.
#[derive(Debug)]
pub enum Read {
    Frame(Value),
    /// The server closed it, with this frame if it sent one.
    Closed(Option<CloseFrame>),
    TimedOut,
}

/// The next JSON frame, or the end of the socket, within `within`; pings and pongs skipped.
pub async fn read(socket: &mut Socket, within: Duration) -> Read {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let next = match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(next) => next,
            Err(_) => return Read::TimedOut,
        };
        match next {
            Some(Ok(Message::Text(text))) => {
                return Read::Frame(serde_json::from_str(&text).unwrap());
            }
            Some(Ok(Message::Close(frame))) => return Read::Closed(frame),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Read::Closed(None),
        }
    }
}

/// The next JSON frame; panics on anything else.
pub async fn next_frame(socket: &mut Socket, within: Duration) -> Value {
    match read(socket, within).await {
        Read::Frame(frame) => frame,
        other => panic!("expected a frame within {within:?}, got {other:?}"),
    }
}

/// The next frame of `kind`, skipping others.
pub async fn next_of(socket: &mut Socket, kind: &str, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = next_frame(socket, left).await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

/// Asserts no frame of `kind` comes within `within`.
pub async fn assert_quiet(socket: &mut Socket, kind: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match read(socket, left).await {
            Read::TimedOut => return,
            Read::Frame(frame) if frame["type"] != kind => continue,
            other => panic!("expected no {kind} frame, got {other:?}"),
        }
    }
}
