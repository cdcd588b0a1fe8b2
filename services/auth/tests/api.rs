//! The auth service end to end, beside a real user service on the same in-memory bus, on
//! SQLite and on PostgreSQL: registration, login, refresh rotation and reuse detection,
//! logout, throttling, suspension through events, key rotation and the JWKS.

use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use sloop_auth::AuthSettings;
use sloop_auth::passwords::HashCost;
use sloop_auth::tokens::Claims;
use sloop_kit::testing::{TestApp, TestBackend};
use sloop_kit::{EventBus, MemoryBus, on_both_backends};

/// Auth and the user service it creates profiles in, sharing one bus.
struct Platform {
    auth: TestApp,
    user: TestApp,
}

/// Cheap hashing keeps the tests fast; the cost is a setting, the algorithm is not.
fn settings() -> AuthSettings {
    let mut settings = AuthSettings {
        hash_cost: HashCost {
            memory_kib: 1024,
            iterations: 1,
        },
        admin_emails: vec!["root@example.com".to_owned()],
        failures_per_account: 3,
        failures_per_address: 6,
        ..AuthSettings::default()
    };
    settings.keys.publish_ahead = Duration::from_millis(1500);
    settings
}

async fn platform(backend: TestBackend) -> Platform {
    platform_with(backend, settings()).await
}

async fn platform_with(backend: TestBackend, settings: AuthSettings) -> Platform {
    let bus = EventBus::Memory(MemoryBus::new());
    let user = TestApp::builder(sloop_user::service())
        .backend(backend)
        .bus(bus.clone())
        .spawn()
        .await;
    let auth = TestApp::builder(sloop_auth::service(settings))
        .backend(backend)
        .bus(bus)
        .upstream("user", user.url(""))
        .spawn()
        .await;
    Platform { auth, user }
}

impl Platform {
    async fn stop(self) {
        self.auth.stop().await;
        self.user.stop().await;
    }

    async fn register(&self, email: &str) -> Value {
        self.auth
            .post(
                "/auth/register",
                &json!({ "email": email, "password": "correct horse battery", "name": "Test" }),
            )
            .await
            .assert_status(201)
            .value()
    }

    async fn login(&self, email: &str, password: &str) -> sloop_kit::testing::TestResponse {
        self.auth
            .post(
                "/auth/login",
                &json!({ "email": email, "password": password }),
            )
            .await
    }

    async fn tokens(&self, email: &str) -> Value {
        self.login(email, "correct horse battery")
            .await
            .assert_status(200)
            .value()
    }

    async fn refresh(&self, token: &Value) -> sloop_kit::testing::TestResponse {
        self.auth
            .post("/auth/refresh", &json!({ "refresh_token": token }))
            .await
    }

    /// Verifies an access token as the gateway does: the JWKS, EdDSA only, issuer and
    /// audience.
    async fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        let jwks: JwkSet = self.auth.get("/.well-known/jwks.json").await.json();
        let kid = jsonwebtoken::decode_header(token)?.kid.unwrap_or_default();
        let jwk = jwks
            .find(&kid)
            .unwrap_or_else(|| panic!("kid {kid} is not in the JWKS"));
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&["sloop-auth"]);
        validation.set_audience(&["sloop"]);
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_jwk(jwk)?, &validation)
            .map(|data| data.claims)
    }
}

on_both_backends!(
    register_login_and_verify_the_token,
    registration_refuses_bad_input_and_duplicates,
    registration_during_a_user_service_outage_leaves_no_account,
    refresh_rotates_and_reuse_revokes_the_family,
    expired_refresh_token_families_are_deleted,
    logout_revokes_the_sign_in,
    failed_logins_are_throttled_per_account_and_address,
    a_suspended_user_can_no_longer_sign_in_or_refresh,
    key_rotation_logs_nobody_out,
);

async fn register_login_and_verify_the_token(backend: TestBackend) {
    let p = platform(backend).await;
    let account = p.register(" Ada@Example.com ").await;
    assert_eq!(account["email"], "ada@example.com");
    assert_eq!(account["roles"], json!(["user"]));
    let user_id = account["user_id"].as_str().unwrap();
    // The profile exists in the user service under the same id.
    let profile = p
        .user
        .get(&format!("/users/{user_id}"))
        .await
        .assert_status(200)
        .value();
    assert_eq!(profile["email"], "ada@example.com");

    let tokens = p.tokens("ada@example.com").await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    let claims = p
        .verify(tokens["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(claims.sub, user_id);
    assert_eq!(claims.roles, ["user"]);
    assert_eq!(claims.exp - claims.iat, 900);

    let admin = p.register("root@example.com").await;
    assert_eq!(admin["roles"], json!(["user", "admin"]));

    p.login("ada@example.com", "wrong password!!")
        .await
        .assert_problem(401, "email or password is wrong");
    p.login("nobody@example.com", "correct horse battery")
        .await
        .assert_problem(401, "email or password is wrong");
    let doc = p.auth.get("/openapi.json").await.assert_status(200).value();
    assert!(doc["paths"]["/auth/login"]["post"]["responses"]["429"].is_object());
    p.stop().await;
}

async fn registration_refuses_bad_input_and_duplicates(backend: TestBackend) {
    let p = platform(backend).await;
    let register = |body: Value| {
        p.auth
            .request(reqwest::Method::POST, "/auth/register")
            .json(&body)
            .send()
    };
    register(json!({ "email": "a@example.com", "password": "short", "name": "A" }))
        .await
        .assert_problem(422, "at least 10");
    register(json!({ "email": "nope", "password": "long enough pass", "name": "A" }))
        .await
        .assert_problem(422, "not an email");
    register(json!({ "email": "a@example.com", "password": "long enough pass", "name": " " }))
        .await
        .assert_problem(422, "name");
    register(json!({ "email": "a@example.com", "password": "long enough pass" }))
        .await
        .assert_problem(422, "name");
    p.register("bo@example.com").await;
    register(json!({ "email": "BO@example.com", "password": "long enough pass", "name": "B" }))
        .await
        .assert_problem(409, "already exists");
    // Nothing half-made: one profile in the user service.
    let users = p.user.get("/users").await.value();
    assert_eq!(users["items"].as_array().unwrap().len(), 1);
    p.stop().await;
}

async fn registration_during_a_user_service_outage_leaves_no_account(backend: TestBackend) {
    let Platform { auth, user } = platform(backend).await;
    let addr = user.addr;
    let user_db = user.database_url.clone();
    user.stop().await;
    let body =
        json!({ "email": "out@example.com", "password": "correct horse battery", "name": "Out" });
    auth.post("/auth/register", &body)
        .await
        .assert_problem(503, "user service");
    let login = json!({ "email": "out@example.com", "password": "correct horse battery" });
    auth.post("/auth/login", &login)
        .await
        .assert_problem(401, "email or password is wrong");

    // The user service comes back on the same address and data: registering works.
    let user = TestApp::builder(sloop_user::service())
        .backend(backend)
        .database_url(user_db)
        .listen(addr)
        .spawn()
        .await;
    let p = Platform { auth, user };
    // The breaker may still be open for a few seconds after the failures.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let response = p.auth.post("/auth/register", &body).await;
        if response.status == 201 {
            break;
        }
        response.assert_status(503);
        assert!(
            tokio::time::Instant::now() < deadline,
            "registration never recovered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    p.tokens("out@example.com").await;
    p.stop().await;
}

async fn refresh_rotates_and_reuse_revokes_the_family(backend: TestBackend) {
    let p = platform(backend).await;
    p.register("rot@example.com").await;
    let first = p.tokens("rot@example.com").await;
    let second = p
        .refresh(&first["refresh_token"])
        .await
        .assert_status(200)
        .value();
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    p.verify(second["access_token"].as_str().unwrap())
        .await
        .unwrap();

    // The first token again: stolen or replayed. The whole family goes.
    p.refresh(&first["refresh_token"])
        .await
        .assert_problem(401, "already used");
    p.refresh(&second["refresh_token"])
        .await
        .assert_problem(401, "revoked");

    // Another sign-in is another family and still works.
    let other = p.tokens("rot@example.com").await;
    p.refresh(&other["refresh_token"]).await.assert_status(200);
    p.refresh(&json!("A".repeat(43)))
        .await
        .assert_problem(401, "unknown");
    p.refresh(&json!("made-up"))
        .await
        .assert_problem(422, "43 characters");

    // Two refreshes with one token at once: exactly one wins.
    let racing = p.tokens("rot@example.com").await;
    let (a, b) = tokio::join!(
        p.refresh(&racing["refresh_token"]),
        p.refresh(&racing["refresh_token"])
    );
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 401]);
    p.stop().await;
}

/// A family goes once its newest token expired, not before: while the newest lives, its
/// rotated tokens stay so their reuse is still recognised.
async fn expired_refresh_token_families_are_deleted(backend: TestBackend) {
    let mut settings = settings();
    settings.tokens.refresh_ttl = Duration::from_secs(2);
    settings.refresh_cleanup_every = Duration::from_millis(200);
    let p = platform_with(backend, settings).await;
    p.register("old@example.com").await;
    let first = p.tokens("old@example.com").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let second = p
        .refresh(&first["refresh_token"])
        .await
        .assert_status(200)
        .value();
    // The first token expired, the second has a second left: both rows stay.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(refresh_rows(&p).await, 2);
    p.refresh(&first["refresh_token"])
        .await
        .assert_problem(401, "already used");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while refresh_rows(&p).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the expired family was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.refresh(&second["refresh_token"])
        .await
        .assert_problem(401, "unknown");
    p.stop().await;
}

async fn refresh_rows(p: &Platform) -> i64 {
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM refresh_tokens")
        .fetch_one(p.auth.db().pool())
        .await
        .unwrap();
    rows
}

async fn logout_revokes_the_sign_in(backend: TestBackend) {
    let p = platform(backend).await;
    p.register("bye@example.com").await;
    let tokens = p.tokens("bye@example.com").await;
    let logout = json!({ "refresh_token": tokens["refresh_token"] });
    p.auth
        .post("/auth/logout", &logout)
        .await
        .assert_status(204);
    p.auth
        .post("/auth/logout", &logout)
        .await
        .assert_status(204);
    p.refresh(&tokens["refresh_token"])
        .await
        .assert_problem(401, "revoked");
    p.stop().await;
}

async fn failed_logins_are_throttled_per_account_and_address(backend: TestBackend) {
    let p = platform(backend).await;
    p.register("slow@example.com").await;
    for _ in 0..3 {
        p.login("slow@example.com", "guess guess guess")
            .await
            .assert_status(401);
    }
    let limited = p.login("slow@example.com", "correct horse battery").await;
    limited.assert_problem(429, "this account");
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=15 * 60).contains(&retry_after), "{retry_after}");

    // Other accounts from the same address until the address's own limit.
    p.register("fast@example.com").await;
    p.tokens("fast@example.com").await;
    for n in 0..3 {
        p.login(&format!("ghost{n}@example.com"), "guess guess guess")
            .await
            .assert_status(401);
    }
    p.login("fast@example.com", "correct horse battery")
        .await
        .assert_problem(429, "your address");
    p.stop().await;
}

async fn a_suspended_user_can_no_longer_sign_in_or_refresh(backend: TestBackend) {
    let p = platform(backend).await;
    let account = p.register("sus@example.com").await;
    let tokens = p.tokens("sus@example.com").await;
    let user_id = account["user_id"].as_str().unwrap();
    p.user
        .put(
            &format!("/users/{user_id}/status"),
            &json!({ "status": "suspended" }),
        )
        .await
        .assert_status(200);
    // Auth hears of it through the bus; until then a refresh still works (and rotates).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut current = tokens["refresh_token"].clone();
    loop {
        let refreshed = p.refresh(&current).await;
        if refreshed.status == 401 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the suspension never reached auth"
        );
        current = refreshed.assert_status(200).value()["refresh_token"].clone();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.login("sus@example.com", "correct horse battery")
        .await
        .assert_problem(403, "suspended");
    p.stop().await;
}

async fn key_rotation_logs_nobody_out(backend: TestBackend) {
    let p = platform(backend).await;
    p.register("keys@example.com").await;
    let before = p.tokens("keys@example.com").await;
    let old_kid = jsonwebtoken::decode_header(before["access_token"].as_str().unwrap())
        .unwrap()
        .kid
        .unwrap();

    p.auth
        .request(reqwest::Method::POST, "/auth/keys/rotate")
        .send()
        .await
        .assert_problem(401, "sign in");
    let rotation = p
        .auth
        .request(reqwest::Method::POST, "/auth/keys/rotate")
        .header("x-user-id", "root")
        .header("x-user-roles", "user,admin")
        .send()
        .await;
    let rotation = rotation.assert_status(202).value();
    let new_kid = rotation["kid"].as_str().unwrap().to_owned();
    // Published at once, before it signs anything.
    let jwks: JwkSet = p.auth.get("/.well-known/jwks.json").await.json();
    assert!(jwks.find(&new_kid).is_some() && jwks.find(&old_kid).is_some());
    let meanwhile = p.tokens("keys@example.com").await;
    let kid = |t: &Value| {
        jsonwebtoken::decode_header(t["access_token"].as_str().unwrap())
            .unwrap()
            .kid
            .unwrap()
    };
    assert_eq!(
        kid(&meanwhile),
        old_kid,
        "the new key does not sign before its time"
    );

    tokio::time::sleep(Duration::from_millis(1600)).await;
    let after = p.tokens("keys@example.com").await;
    assert_eq!(kid(&after), new_kid);
    // Tokens of the old key still verify: it stays published until they expire.
    p.verify(before["access_token"].as_str().unwrap())
        .await
        .unwrap();
    p.verify(after["access_token"].as_str().unwrap())
        .await
        .unwrap();

    // Only admins may rotate through the gateway.
    p.auth
        .request(reqwest::Method::POST, "/auth/keys/rotate")
        .header("x-user-id", "someone")
        .header("x-user-roles", "user")
        .send()
        .await
        .assert_problem(403, "admin");
    p.stop().await;
}
