//! A client of the platform's public API, through the gateway: JSON requests with an
//! optional bearer token, and the sign-up and sign-in every journey starts with.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A WebSocket opened through the gateway.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The password every journey's accounts use.
pub const PASSWORD: &str = "correct horse battery";

/// Talks to the gateway at `base`.
#[derive(Debug, Clone)]
pub struct ApiClient {
    pub http: reqwest::Client,
    pub base: String,
}

impl ApiClient {
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.into(),
        }
    }

    /// Sends a request; returns the status and the body as JSON (a string when it is not).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("a response");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    /// Opens a WebSocket to `path` through the gateway, signed in with `token`.
    pub async fn websocket(&self, path: &str, token: &str) -> Socket {
        let url = format!("{}{path}", self.base.replacen("http", "ws", 1));
        let mut request = url.into_client_request().expect("a WebSocket URL");
        let bearer = format!("Bearer {token}").parse().expect("a header value");
        request.headers_mut().insert("authorization", bearer);
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|e| panic!("WebSocket {path}: {e}"));
        assert_eq!(response.status(), 101, "WebSocket {path}");
        socket
    }

    /// Opens a WebSocket to `path` as a browser must, which cannot set `Authorization`: the
    /// token rides in the `bearer` subprotocol, and the service must select `bearer`.
    pub async fn browser_websocket(&self, path: &str, token: &str) -> Socket {
        let url = format!("{}{path}", self.base.replacen("http", "ws", 1));
        let mut request = url.into_client_request().expect("a WebSocket URL");
        let protocols = format!("bearer, {token}").parse().expect("a header value");
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocols);
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|e| panic!("WebSocket {path} with the bearer subprotocol: {e}"));
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some("bearer"),
            "the service selects the bearer subprotocol, as a browser requires"
        );
        socket
    }

    /// Registers `email` and signs in: the login response (`user_id`, `access_token`, …).
    pub async fn sign_up(&self, email: &str) -> Value {
        let account = json!({ "email": email, "password": PASSWORD, "name": "Journey" });
        let (status, body) = self.post("/api/auth/register", None, account).await;
        assert_eq!(status, 201, "{body}");
        self.sign_in(email).await
    }

    pub async fn sign_in(&self, email: &str) -> Value {
        let login = json!({ "email": email, "password": PASSWORD });
        let (status, body) = self.post("/api/auth/login", None, login).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// A signed-in account.
#[derive(Debug, Clone)]
pub struct Account {
    pub user_id: String,
    pub token: String,
}

impl Account {
    pub fn from_login(login: &Value) -> Self {
        Self {
            user_id: login["user_id"].as_str().expect("user_id").to_owned(),
            token: login["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
        }
    }
}

/// The next JSON frame of `kind` (its `type`) on `socket`, skipping others (presence, say);
/// panics after 10 s or when the socket closes first.
pub async fn next_frame(socket: &mut Socket, kind: &str) -> Value {
    let wait = async {
        while let Some(frame) = socket.next().await {
            if let Message::Text(text) = frame.expect("a WebSocket frame") {
                let value: Value = serde_json::from_str(&text).expect("a JSON frame");
                if value["type"] == kind {
                    return value;
                }
            }
        }
        panic!("the socket closed before a {kind} frame");
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("no {kind} frame within 10 s"))
}
