//! The platform behind a gateway, in one test process: user and auth on one in-memory bus,
//! an echo upstream that reports what reached it (headers, WebSocket frames), and the
//! gateway routing to all three.

#![allow(dead_code)]

use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::routing::{any, get};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sloop_auth::AuthSettings;
use sloop_auth::passwords::HashCost;
use sloop_gateway::GatewayConfig;
use sloop_gateway::config::{RateLimit, Route, Rule};
use sloop_kit::testing::{TestApp, TestBackend, TestResponse};
use sloop_kit::{EventBus, MemoryBus, Service};

pub const PASSWORD: &str = "correct horse battery";

pub struct Platform {
    pub gateway: TestApp,
    pub auth: TestApp,
    pub user: TestApp,
    pub echo: TestApp,
}

/// An upstream that answers with the headers it received, and echoes WebSocket messages.
pub fn echo() -> Service {
    Service::new("echo", 0).api(|_| {
        Router::new()
            .route(
                "/echo/headers",
                any(|headers: HeaderMap| async move {
                    let seen: serde_json::Map<String, Value> = headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
                        .collect();
                    sloop_kit::Json(Value::Object(seen))
                }),
            )
            .route(
                "/echo/ws",
                get(|ws: WebSocketUpgrade| async move {
                    ws.on_upgrade(|mut socket| async move {
                        while let Some(Ok(message)) = socket.recv().await {
                            if let Message::Text(text) = message {
                                let reply = format!("echo: {}", text.as_str());
                                if socket.send(Message::Text(reply.into())).await.is_err() {
                                    break;
                                }
                            }
                        }
                    })
                }),
            )
            .route(
                "/echo/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    "late"
                }),
            )
    })
}

pub fn auth_settings() -> AuthSettings {
    AuthSettings {
        hash_cost: HashCost {
            memory_kib: 1024,
            iterations: 1,
        },
        admin_emails: vec!["admin@example.com".to_owned()],
        ..AuthSettings::default()
    }
}

impl Platform {
    pub async fn start(backend: TestBackend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts everything; `adjust` may change the gateway's configuration first.
    pub async fn start_with(backend: TestBackend, adjust: impl FnOnce(&mut GatewayConfig)) -> Self {
        let bus = EventBus::Memory(MemoryBus::new());
        let user = TestApp::builder(sloop_user::service())
            .backend(backend)
            .bus(bus.clone())
            .spawn()
            .await;
        let auth = TestApp::builder(sloop_auth::service(auth_settings()))
            .backend(backend)
            .bus(bus)
            .upstream("user", user.url(""))
            .spawn()
            .await;
        let echo = TestApp::spawn(echo(), TestBackend::Sqlite).await;
        let mut config = GatewayConfig::defaults();
        config.set_upstream("user", &user.url(""));
        config.set_upstream("auth", &auth.url(""));
        config.upstreams.insert("echo".into(), vec![echo.url("")]);
        config.routes.push(Route {
            prefix: "/api/echo".into(),
            upstream: "echo".into(),
            strip: "/api".into(),
            public: true,
            timeout: Duration::from_secs(1),
            rules: vec![Rule {
                method: None,
                path: vec!["".into(), "api".into(), "echo".into(), "private".into()],
                roles: vec!["user".into()],
            }],
        });
        config.rate_limit = RateLimit {
            rate: 1000.0,
            burst: 1000.0,
        };
        adjust(&mut config);
        let gateway = TestApp::spawn(sloop_gateway::service(config), TestBackend::Sqlite).await;
        Self {
            gateway,
            auth,
            user,
            echo,
        }
    }

    pub async fn stop(self) {
        self.gateway.stop().await;
        self.auth.stop().await;
        self.user.stop().await;
        self.echo.stop().await;
    }

    /// Registers and signs in through the gateway; returns (user id, access token).
    pub async fn sign_up(&self, email: &str) -> (String, String) {
        self.gateway
            .post(
                "/api/auth/register",
                &json!({ "email": email, "password": PASSWORD, "name": "Test" }),
            )
            .await
            .assert_status(201);
        let tokens = self
            .gateway
            .post(
                "/api/auth/login",
                &json!({ "email": email, "password": PASSWORD }),
            )
            .await
            .assert_status(200)
            .value();
        (
            tokens["user_id"].as_str().unwrap().to_owned(),
            tokens["access_token"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn get_as(&self, path: &str, token: &str) -> TestResponse {
        self.gateway
            .request(reqwest::Method::GET, path)
            .bearer(token)
            .send()
            .await
    }

    /// Auth's current signing key (kid, PKCS#8), read from its database, to mint tokens
    /// the tests need (expired, wrong audience, ...).
    pub async fn signing_key(&self) -> (String, Vec<u8>) {
        let (kid, pkcs8): (String, String) = sqlx::query_as(
            "SELECT kid, private_pkcs8 FROM signing_keys ORDER BY activates_at_ms DESC LIMIT 1",
        )
        .fetch_one(self.auth.db().pool())
        .await
        .unwrap();
        (kid, STANDARD.decode(pkcs8).unwrap())
    }
}

/// A token with these claims, signed EdDSA by `pkcs8` under `kid`.
pub fn mint(kid: &str, pkcs8: &[u8], claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(pkcs8)).unwrap()
}

pub fn claims(sub: &str, roles: &[&str], exp_in_seconds: i64) -> Value {
    let now = time_now();
    json!({
        "iss": "sloop-auth", "aud": "sloop", "sub": sub, "roles": roles,
        "iat": now, "nbf": now, "exp": now + exp_in_seconds, "jti": "t", "email": "x@example.com"
    })
}

pub fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
