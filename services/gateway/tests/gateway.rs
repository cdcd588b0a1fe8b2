//! Through the gateway: tokens of every bad kind refused, roles enforced, identity headers
//! set only by the gateway, rate limits, the circuit breaker, an upstream of several
//! instances, WebSockets, the aggregated OpenAPI document. User and auth run on SQLite and PostgreSQL.

mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use sloop_gateway::config::RateLimit;
use sloop_kit::on_both_backends;
use sloop_kit::testing::{TestApp, TestBackend};
use support::{Platform, claims, mint};

on_both_backends!(
    a_signed_in_user_reaches_their_account_and_nothing_more,
    bad_tokens_of_every_kind_are_refused,
);

async fn a_signed_in_user_reaches_their_account_and_nothing_more(backend: TestBackend) {
    let p = Platform::start(backend).await;
    let (me, token) = p.sign_up("ann@example.com").await;
    let mine = p.get_as(&format!("/api/users/{me}"), &token).await;
    assert_eq!(mine.assert_status(200).value()["email"], "ann@example.com");
    assert!(
        mine.header("ratelimit")
            .unwrap()
            .starts_with("\"client\";r=")
    );
    assert!(mine.header("ratelimit-policy").is_some());

    p.gateway
        .get(&format!("/api/users/{me}"))
        .await
        .assert_problem(401, "sign in");
    // A plain user may not list everyone (a gateway rule) ...
    p.get_as("/api/users", &token)
        .await
        .assert_problem(403, "admin");
    // ... nor read another account (the user service's own check, from the gateway's headers).
    let (other, _) = p.sign_up("bob@example.com").await;
    p.get_as(&format!("/api/users/{other}"), &token)
        .await
        .assert_problem(403, "your own account");
    let (_, admin) = p.sign_up("admin@example.com").await;
    let all = p
        .get_as("/api/users", &admin)
        .await
        .assert_status(200)
        .value();
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    p.stop().await;
}

async fn bad_tokens_of_every_kind_are_refused(backend: TestBackend) {
    let p = Platform::start(backend).await;
    let (me, token) = p.sign_up("eve@example.com").await;
    let path = format!("/api/users/{me}");
    let (kid, pkcs8) = p.signing_key().await;
    // The key works: a fresh token minted with it passes.
    let good = mint(&kid, &pkcs8, &claims(&me, &["user"], 60));
    p.get_as(&path, &good).await.assert_status(200);

    let expired = mint(&kid, &pkcs8, &claims(&me, &["user"], -120));
    let mut tampered = token.clone();
    let payload_start = tampered.find('.').unwrap() + 1;
    let flipped = if &tampered[payload_start..payload_start + 1] == "e" {
        "f"
    } else {
        "e"
    };
    tampered.replace_range(payload_start..payload_start + 1, flipped);
    let other_key =
        aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .unwrap();
    let wrong_key = mint(&kid, other_key.as_ref(), &claims(&me, &["user"], 60));
    let unknown_kid = mint("no-such-key", &pkcs8, &claims(&me, &["user"], 60));
    let header = |h: serde_json::Value| URL_SAFE_NO_PAD.encode(h.to_string());
    let body = URL_SAFE_NO_PAD.encode(claims(&me, &["user"], 60).to_string());
    let alg_none = format!("{}.{body}.", header(json!({ "alg": "none", "typ": "JWT" })));
    // HS256 keyed with the public key, the classic algorithm-confusion attack.
    let jwks = p.auth.get("/.well-known/jwks.json").await.value();
    let public_x = jwks["keys"][0]["x"].as_str().unwrap().to_owned();
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(
        &hs_header,
        &claims(&me, &["admin"], 60),
        &jsonwebtoken::EncodingKey::from_secret(public_x.as_bytes()),
    )
    .unwrap();
    let mut wrong_audience = claims(&me, &["user"], 60);
    wrong_audience["aud"] = json!("someone-else");
    let wrong_audience = mint(&kid, &pkcs8, &wrong_audience);

    for (name, token, needle) in [
        ("expired", expired.as_str(), "expired"),
        ("tampered", tampered.as_str(), "signature"),
        ("wrong key", wrong_key.as_str(), "signature"),
        ("unknown kid", unknown_kid.as_str(), "unknown key"),
        ("alg none", alg_none.as_str(), "malformed"),
        ("HS256 with the public key", hs256.as_str(), "EdDSA"),
        ("wrong audience", wrong_audience.as_str(), "audience"),
        ("garbage", "not-a-jwt", "malformed"),
    ] {
        let response = p.get_as(&path, token).await;
        assert_eq!(response.status, 401, "{name}: {}", response.text());
        response.assert_problem(401, needle);
        assert!(
            response
                .header("www-authenticate")
                .unwrap()
                .starts_with("Bearer error=\"invalid_token\""),
            "{name}"
        );
    }
    p.gateway
        .request(reqwest::Method::GET, &path)
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .assert_problem(401, "Bearer");
    p.stop().await;
}

#[tokio::test]
async fn identity_headers_come_only_from_the_gateway() {
    let p = Platform::start(TestBackend::Sqlite).await;
    let forged = p
        .gateway
        .request(reqwest::Method::GET, "/api/echo/headers")
        .header("x-user-id", "forged-admin")
        .header("x-user-roles", "admin")
        .header("x-request-id", "trace-me-123")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .send()
        .await
        .assert_status(200)
        .value();
    assert!(forged.get("x-user-id").is_none(), "{forged}");
    assert!(forged.get("x-user-roles").is_none(), "{forged}");
    assert!(
        forged.get("x-hop").is_none(),
        "named in Connection: not forwarded"
    );
    assert_eq!(forged["x-request-id"], "trace-me-123");
    assert_eq!(forged["x-forwarded-for"], "127.0.0.1");
    assert_eq!(forged["x-forwarded-proto"], "http");
    assert!(
        forged["forwarded"]
            .as_str()
            .unwrap()
            .starts_with("for=127.0.0.1;proto=http")
    );

    let (me, token) = p.sign_up("real@example.com").await;
    let signed_in = p
        .gateway
        .request(reqwest::Method::GET, "/api/echo/headers")
        .bearer(&token)
        .header("x-user-id", "forged-admin")
        .send()
        .await
        .value();
    assert_eq!(signed_in["x-user-id"], me.as_str());
    assert_eq!(signed_in["x-user-roles"], "user");
    // A rule on a public route still needs a signed-in caller with the role.
    p.gateway
        .get("/api/echo/private")
        .await
        .assert_problem(401, "sign in");
    p.stop().await;
}

#[tokio::test]
async fn past_the_burst_clients_get_429_with_retry_after() {
    let p = Platform::start_with(TestBackend::Sqlite, |config| {
        config.rate_limit = RateLimit {
            rate: 1.0,
            burst: 5.0,
        };
    })
    .await;
    for _ in 0..5 {
        p.gateway.get("/api/echo/headers").await.assert_status(200);
    }
    let limited = p.gateway.get("/api/echo/headers").await;
    limited.assert_problem(429, "too many requests");
    assert_eq!(limited.header("retry-after"), Some("1"));
    assert_eq!(limited.header("ratelimit"), Some("\"client\";r=0;t=1"));
    assert_eq!(
        limited.header("ratelimit-policy"),
        Some("\"client\";q=5;w=5")
    );
    p.stop().await;
}

#[tokio::test]
async fn a_dead_upstream_opens_its_breaker_and_recovers_by_itself() {
    let p = Platform::start(TestBackend::Sqlite).await;
    let (me, token) = p.sign_up("brk@example.com").await;
    let path = format!("/api/users/{me}");
    let Platform {
        gateway,
        auth,
        user,
        echo,
    } = p;
    let (addr, db) = (user.addr, user.database_url.clone());
    user.stop().await;

    // Refused connections: 502 until the breaker opens, then 503 at once.
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let response = gateway
            .request(reqwest::Method::GET, &path)
            .bearer(&token)
            .send()
            .await;
        statuses.push(response.status.as_u16());
    }
    assert!(statuses.contains(&502), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&503), "{statuses:?}");
    let started = Instant::now();
    let open = gateway
        .request(reqwest::Method::GET, &path)
        .bearer(&token)
        .send()
        .await;
    let took = started.elapsed();
    open.assert_problem(503, "not sending it requests");
    assert!(open.header("retry-after").is_some());
    assert!(
        took < Duration::from_millis(50),
        "an open breaker answers at once: {took:?}"
    );
    // Other routes are unaffected.
    gateway.get("/api/echo/headers").await.assert_status(200);

    // The service comes back: after the cool-down a trial request closes the breaker.
    let user = TestApp::builder(sloop_user::service())
        .database_url(db)
        .listen(addr)
        .spawn()
        .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = gateway
            .request(reqwest::Method::GET, &path)
            .bearer(&token)
            .send()
            .await;
        if response.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never recovered: {}",
            response.text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let metrics = gateway.get("/metrics").await.text();
    assert!(
        metrics.contains("gateway_upstream_errors_total{upstream=\"user\",kind=\"open\"}"),
        "{metrics}"
    );
    for app in [gateway, auth, user, echo] {
        app.stop().await;
    }
}

/// Two instances of one upstream take its requests in turn; when one stops, reads keep
/// succeeding on the other (a refused attempt is retried there, then its breaker opens).
#[tokio::test]
async fn an_upstream_of_two_instances_shares_requests_and_outlives_one() {
    let second = TestApp::spawn(support::echo(), TestBackend::Sqlite).await;
    let second_url = second.url("");
    let p = Platform::start_with(TestBackend::Sqlite, |config| {
        let first = config.upstreams["echo"][0].clone();
        config.set_upstream_instances("echo", &[first, second_url.clone()]);
    })
    .await;
    let reached = |response: &sloop_kit::testing::TestResponse| {
        response.assert_status(200);
        response.json::<serde_json::Value>()["host"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let mut hosts = Vec::new();
    for _ in 0..4 {
        hosts.push(reached(&p.gateway.get("/api/echo/headers").await));
    }
    let (first_host, second_host) = (p.echo.addr.to_string(), second.addr.to_string());
    for host in [&first_host, &second_host] {
        assert_eq!(
            hosts.iter().filter(|h| h == &host).count(),
            2,
            "each instance in turn: {hosts:?}"
        );
    }

    second.stop().await;
    for _ in 0..20 {
        assert_eq!(
            reached(&p.gateway.get("/api/echo/headers").await),
            first_host
        );
    }
    let metrics = p.gateway.get("/metrics").await.text();
    let instance = format!("upstream=\"echo@{second_host}\"");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("circuit_breaker_state{")
                && l.contains(&instance)
                && l.ends_with(" 1")),
        "the stopped instance's breaker is open: {metrics}"
    );
    p.stop().await;
}

#[tokio::test]
async fn a_slow_upstream_times_out_with_504() {
    let p = Platform::start(TestBackend::Sqlite).await;
    let started = Instant::now();
    p.gateway
        .get("/api/echo/slow")
        .await
        .assert_problem(504, "did not answer within");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the route's 1 s time-out applied"
    );
    p.stop().await;
}

#[tokio::test]
async fn websockets_pass_through_the_gateway() {
    let p = Platform::start(TestBackend::Sqlite).await;
    let url = format!("ws://{}/api/echo/ws", p.gateway.addr);
    let (mut socket, response) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(response.status(), 101);
    for word in ["hello", "again"] {
        socket
            .send(tokio_tungstenite::tungstenite::Message::Text(word.into()))
            .await
            .unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a reply in time")
            .unwrap()
            .unwrap();
        assert_eq!(reply.into_text().unwrap().as_str(), format!("echo: {word}"));
    }
    socket.close(None).await.unwrap();
    p.stop().await;
}

#[tokio::test]
async fn one_openapi_document_describes_the_api_behind_the_gateway() {
    let p = Platform::start(TestBackend::Sqlite).await;
    let doc = p
        .gateway
        .get("/openapi.json")
        .await
        .assert_status(200)
        .value();
    let get_user = &doc["paths"]["/api/users/{id}"]["get"];
    assert!(get_user["responses"]["200"].is_object(), "{doc}");
    for status in ["401", "403", "429", "502", "504"] {
        assert!(get_user["responses"][status].is_object(), "lacks {status}");
    }
    assert!(doc["paths"]["/api/auth/login"]["post"].is_object());
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    // Upstreams this test does not start are named, not silently left out.
    assert_eq!(
        doc["x-sloop-unavailable-upstreams"],
        json!([
            "audit",
            "batch",
            "chat",
            "echo",
            "notification",
            "payment",
            "store"
        ])
    );
    let ready = p.gateway.get("/readyz").await.assert_status(200).value();
    assert_eq!(ready["checks"]["upstreams"], "ok");
    p.stop().await;
}
