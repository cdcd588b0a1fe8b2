//! The front door end to end against real processes (PostgreSQL per service, Tansu for
//! events, OTLP for spans): sign up and in through the gateway, tokens and roles, a
//! client's forged identity, suspension reaching auth over Kafka with the trace intact, a
//! user-service outage (breaker, clean registration failure, recovery), and rate limits.

use std::time::{Duration, Instant};

use platform_tests::Platform;
use platform_tests::api::{ApiClient, PASSWORD};
use serde_json::json;
use sloop_kit::testing::{OtlpReceiver, SPAN_KIND_SERVER};

/// OTLP span kind of a consumer.
const SPAN_KIND_CONSUMER: i32 = 5;

#[tokio::test(flavor = "multi_thread")]
async fn the_front_door_holds_against_real_processes() {
    let receiver = OtlpReceiver::start().await;
    let begun = Instant::now();
    let mut platform = Platform::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_platform-service")),
        &receiver.endpoint,
        // A rate limit low enough to reach in a test.
        &platform_tests::gateway_config_file(5, 100),
    )
    .await;
    eprintln!("platform up after {:?}", begun.elapsed());
    let api = ApiClient::new(platform.gateway.url(""));

    // Sign up, sign in, reach the own account; nothing without a token; roles hold.
    let ann = api.sign_up("ann@example.com").await;
    let (ann_id, ann_token) = (
        ann["user_id"].as_str().unwrap(),
        ann["access_token"].as_str().unwrap(),
    );
    let (status, me) = api
        .send(
            reqwest::Method::GET,
            &format!("/api/users/{ann_id}"),
            Some(ann_token),
            None,
        )
        .await;
    assert_eq!(
        (status, me["email"].as_str()),
        (200, Some("ann@example.com"))
    );
    let (status, _) = api
        .send(
            reqwest::Method::GET,
            &format!("/api/users/{ann_id}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = api
        .send(
            reqwest::Method::GET,
            &format!("/api/users/{ann_id}"),
            Some("x.y.z"),
            None,
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = api
        .send(reqwest::Method::GET, "/api/users", Some(ann_token), None)
        .await;
    assert_eq!(status, 403, "listing users needs the admin role");

    // A client's own x-user-id never reaches the service: the gateway states who calls.
    let bob = api.sign_up("bob@example.com").await;
    let bob_id = bob["user_id"].as_str().unwrap();
    let forged = api
        .http
        .get(format!("{}/api/users/{bob_id}", api.base))
        .bearer_auth(ann_token)
        .header("x-user-id", bob_id)
        .header("x-user-roles", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        403,
        "Ann stays Ann whatever headers she sends"
    );

    // An admin suspends Bob; auth hears it over Kafka and Bob's refresh stops working.
    let admin = api.sign_up("admin@example.com").await;
    let admin_token = admin["access_token"].as_str().unwrap();
    let (status, body) = api
        .send(
            reqwest::Method::PUT,
            &format!("/api/users/{bob_id}/status"),
            Some(admin_token),
            Some(json!({ "status": "suspended" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut refresh_token = bob["refresh_token"].clone();
    loop {
        let (status, body) = api
            .send(
                reqwest::Method::POST,
                "/api/auth/refresh",
                None,
                Some(json!({ "refresh_token": refresh_token })),
            )
            .await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200, "{body}");
        refresh_token = body["refresh_token"].clone();
        assert!(
            Instant::now() < deadline,
            "the suspension never reached auth:\n{}",
            platform.auth.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("suspension applied after {:?}", begun.elapsed());
    // The consumer's span in auth is a child of the user service's request, across Kafka.
    let suspend = receiver
        .wait_for(Duration::from_secs(10), |s| {
            s.service == "user" && s.kind == SPAN_KIND_SERVER && s.name == "PUT /users/{id}/status"
        })
        .await
        .expect("the user service's span of the suspension");
    let consumer = receiver
        .wait_for(Duration::from_secs(10), |s| {
            s.service == "auth" && s.kind == SPAN_KIND_CONSUMER && s.trace_id == suspend.trace_id
        })
        .await
        .expect("auth's consumer span");
    assert_eq!(consumer.trace_id, suspend.trace_id);
    assert_eq!(consumer.parent_span_id, suspend.span_id);
    assert_eq!(consumer.attributes["messaging.system"], "kafka");
    let gateway_span = receiver
        .wait_for(Duration::from_secs(10), |s| {
            s.service == "gateway" && s.trace_id == suspend.trace_id && s.kind == SPAN_KIND_SERVER
        })
        .await
        .expect("the trace starts at the gateway");
    assert_eq!(gateway_span.name, "PUT /api/users/{*rest}");

    // The user service goes down: the gateway fails fast once its breaker opens, and
    // registration fails cleanly, leaving no account behind.
    platform.user.stop().await;
    let mut last = 0;
    for _ in 0..10 {
        last = api
            .send(
                reqwest::Method::GET,
                &format!("/api/users/{ann_id}"),
                Some(ann_token),
                None,
            )
            .await
            .0;
    }
    assert_eq!(last, 503, "the breaker opened");
    let started = Instant::now();
    let (status, _) = api
        .send(
            reqwest::Method::GET,
            &format!("/api/users/{ann_id}"),
            Some(ann_token),
            None,
        )
        .await;
    let took = started.elapsed();
    assert_eq!(status, 503);
    assert!(
        took < Duration::from_millis(50),
        "an open breaker answers at once: {took:?}"
    );
    let outage = json!({ "email": "cat@example.com", "password": PASSWORD, "name": "Cat" });
    let (status, body) = api
        .send(
            reqwest::Method::POST,
            "/api/auth/register",
            None,
            Some(outage.clone()),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    let (status, _) = api
        .send(
            reqwest::Method::POST,
            "/api/auth/login",
            None,
            Some(json!({ "email": "cat@example.com", "password": PASSWORD })),
        )
        .await;
    assert_eq!(status, 401, "no account was left behind");

    eprintln!("outage checked after {:?}", begun.elapsed());
    // It comes back: the gateway recovers by itself and registration works again.
    platform.user.start().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = api
            .send(
                reqwest::Method::GET,
                &format!("/api/users/{ann_id}"),
                Some(ann_token),
                None,
            )
            .await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the gateway never recovered");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = api
            .send(
                reqwest::Method::POST,
                "/api/auth/register",
                None,
                Some(outage.clone()),
            )
            .await;
        if status == 201 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "registration never recovered");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    api.sign_in("cat@example.com").await;

    eprintln!("recovered after {:?}", begun.elapsed());
    // Past the burst: 429 with Retry-After.
    let mut limited = None;
    for _ in 0..200 {
        let response = api
            .http
            .get(format!("{}/api/users/{ann_id}", api.base))
            .bearer_auth(ann_token)
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let limited = limited.expect("the burst of 100 ran out");
    assert!(limited.headers().get("retry-after").is_some());
    assert!(limited.headers().get("ratelimit").is_some());

    platform.stop().await;
    eprintln!("stopped after {:?}", begun.elapsed());
}
