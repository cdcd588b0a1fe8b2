//! The notification service end to end, each scenario on SQLite and on PostgreSQL: events
//! published on the in-memory bus become notifications, the signed-in user reads and marks
//! them over HTTP, and the worker sends every delivery through its simulated channel.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use sloop_events::chat as chat_events;
use sloop_events::store as store_events;
use sloop_events::user as user_events;
use sloop_events::{Money, store::OrderCancelled, store::OrderConfirmed, user::UserCreated};
use sloop_kit::testing::{TestApp, TestBackend, TestRequest, TestResponse};
use sloop_kit::{Event, EventType, on_both_backends};
use sloop_notification::NotificationSettings;
use sloop_notification::worker::WorkerSettings;

/// How long anything asynchronous (consumer, worker) may take in these tests.
const PATIENCE: Duration = Duration::from_secs(15);

/// Quick retries, so the retry scenario takes a moment rather than minutes.
fn settings() -> NotificationSettings {
    NotificationSettings {
        worker: WorkerSettings {
            poll: Duration::from_millis(20),
            first_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            ..WorkerSettings::default()
        },
        ..NotificationSettings::default()
    }
}

async fn spawn(backend: TestBackend) -> TestApp {
    TestApp::spawn(sloop_notification::service(settings()), backend).await
}

on_both_backends!(
    a_new_account_gets_a_welcome_by_email,
    orders_confirmed_and_cancelled_are_notified_with_the_reason,
    the_same_event_twice_makes_one_notification,
    pages_filters_and_marking_read,
    someone_elses_notification_is_not_found,
    no_caller_is_unauthorized,
    bad_input_gets_problem_documents,
    failing_sms_is_retried_then_given_up_while_email_and_push_go_out,
    an_unknown_event_version_is_dead_lettered,
    two_instances_never_send_one_delivery_twice,
    chat_mentions_notify_each_mentioned_member,
    probes_and_openapi,
);

/// Publishes an event as service `source` would, and returns it.
fn publish(
    app: &TestApp,
    source: &str,
    kind: EventType,
    subject: &str,
    data: &impl Serialize,
) -> Event {
    let event = Event::new(source, kind, subject, data).unwrap();
    app.memory_bus().publish(event.to_message());
    event
}

fn user_created(app: &TestApp, user_id: &str, name: &str) -> Event {
    let data = UserCreated {
        id: user_id.to_owned(),
        email: format!("{name}@example.com").to_lowercase(),
        name: name.to_owned(),
        status: user_events::UserStatus::Active,
        version: 1,
    };
    publish(app, "user", user_events::CREATED, user_id, &data)
}

fn eur(amount: i64) -> Money {
    Money {
        amount,
        currency: "EUR".to_owned(),
    }
}

fn order_confirmed(app: &TestApp, user_id: &str, order_id: &str) -> Event {
    let data = OrderConfirmed {
        order_id: order_id.to_owned(),
        user_id: user_id.to_owned(),
        total: eur(1999),
        charge_id: format!("ch-{order_id}"),
    };
    publish(app, "store", store_events::ORDER_CONFIRMED, order_id, &data)
}

fn order_cancelled(app: &TestApp, user_id: &str, order_id: &str, reason: &str) -> Event {
    let data = OrderCancelled {
        order_id: order_id.to_owned(),
        user_id: user_id.to_owned(),
        total: eur(4250),
        reason: reason.to_owned(),
    };
    publish(app, "store", store_events::ORDER_CANCELLED, order_id, &data)
}

fn new_user() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A request as the gateway forwards it for signed-in `user`.
fn as_user(app: &TestApp, user: &str, method: reqwest::Method, path: &str) -> TestRequest {
    app.request(method, path)
        .header("x-user-id", user)
        .header("x-user-roles", "user")
}

async fn get_as(app: &TestApp, user: &str, path: &str) -> TestResponse {
    as_user(app, user, reqwest::Method::GET, path).send().await
}

async fn post_as(app: &TestApp, user: &str, path: &str) -> TestResponse {
    as_user(app, user, reqwest::Method::POST, path).send().await
}

/// Waits until `user` has at least `count` notifications; returns them, newest first.
async fn notifications(app: &TestApp, user: &str, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let page = get_as(app, user, "/notifications?limit=100")
            .await
            .assert_status(200)
            .value();
        let items = page["items"].as_array().unwrap().clone();
        if items.len() >= count {
            return items;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{user} has {} notifications, expected {count}",
            items.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until no delivery of notification `id` is pending; returns its detail.
async fn settled(app: &TestApp, user: &str, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let detail = get_as(app, user, &format!("/notifications/{id}"))
            .await
            .assert_status(200)
            .value();
        let pending = detail["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["status"] == "pending");
        if !pending {
            return detail;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries still pending: {detail}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `(channel, status, attempts)` of each delivery, by channel name.
fn deliveries(detail: &Value) -> Vec<(String, String, i64)> {
    let mut all: Vec<(String, String, i64)> = detail["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["channel"].as_str().unwrap().to_owned(),
                d["status"].as_str().unwrap().to_owned(),
                d["attempts"].as_i64().unwrap(),
            )
        })
        .collect();
    all.sort();
    all
}

fn sent_once(channels: &[&str]) -> Vec<(String, String, i64)> {
    channels
        .iter()
        .map(|c| ((*c).to_owned(), "sent".to_owned(), 1))
        .collect()
}

async fn chat_mentions_notify_each_mentioned_member(backend: TestBackend) {
    let app = spawn(backend).await;
    let (ann, bob, cat) = (new_user(), new_user(), new_user());
    let data = chat_events::ChatMessageSent {
        message_id: new_user(),
        room_id: "room-1".to_owned(),
        sender_id: ann.clone(),
        text: format!("@{bob} @{cat} lunch?"),
        mentions: vec![bob.clone(), cat.clone()],
        sent_at: "2026-12-05T10:00:00.000000Z".to_owned(),
    };
    let event = publish(&app, "chat", chat_events::MESSAGE_SENT, "room-1", &data);
    // The same event again (a redelivery) makes nothing new.
    app.memory_bus().publish(event.to_message());
    for user in [&bob, &cat] {
        let items = notifications(&app, user, 1).await;
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0]["kind"], "mention");
        assert_eq!(items[0]["title"], format!("{ann} mentioned you"));
        assert!(
            items[0]["body"].as_str().unwrap().contains("lunch?"),
            "{}",
            items[0]
        );
        let detail = settled(&app, user, items[0]["id"].as_str().unwrap()).await;
        assert_eq!(deliveries(&detail), sent_once(&["email", "push"]));
    }
    // A message without mentions notifies no one, the sender included.
    let quiet = chat_events::ChatMessageSent {
        mentions: Vec::new(),
        message_id: new_user(),
        ..data
    };
    publish(&app, "chat", chat_events::MESSAGE_SENT, "room-1", &quiet);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let page = get_as(&app, &ann, "/notifications")
        .await
        .assert_status(200)
        .value();
    assert!(page["items"].as_array().unwrap().is_empty(), "{page}");
    assert_eq!(notifications(&app, &bob, 1).await.len(), 1);
    app.stop().await;
}

async fn a_new_account_gets_a_welcome_by_email(backend: TestBackend) {
    let app = spawn(backend).await;
    let ada = new_user();
    user_created(&app, &ada, "Ada");
    let items = notifications(&app, &ada, 1).await;
    assert_eq!(items.len(), 1);
    let welcome = &items[0];
    assert_eq!(welcome["kind"], "welcome");
    assert_eq!(welcome["title"], "Welcome to sloop");
    assert!(
        welcome["body"].as_str().unwrap().contains("Ada"),
        "{welcome}"
    );
    assert_eq!(welcome["read"], false);
    assert!(welcome["read_at"].is_null());
    assert!(welcome["order_id"].is_null());

    let detail = settled(&app, &ada, welcome["id"].as_str().unwrap()).await;
    assert_eq!(deliveries(&detail), sent_once(&["email"]));
    let email = &detail["deliveries"][0];
    assert!(email["sent_at"].is_string(), "{email}");
    assert!(email["last_error"].is_null(), "{email}");
    app.stop().await;
}

async fn orders_confirmed_and_cancelled_are_notified_with_the_reason(backend: TestBackend) {
    let app = spawn(backend).await;
    let bob = new_user();
    order_confirmed(&app, &bob, "order-1");
    order_cancelled(
        &app,
        &bob,
        "order-2",
        "payment declined: insufficient funds",
    );
    let items = notifications(&app, &bob, 2).await;
    let kinds: Vec<&str> = items.iter().map(|n| n["kind"].as_str().unwrap()).collect();
    let (cancelled, confirmed) = match kinds[..] {
        ["order_cancelled", "order_confirmed"] => (&items[0], &items[1]),
        // The two topics are consumed side by side, so either may come first.
        ["order_confirmed", "order_cancelled"] => (&items[1], &items[0]),
        _ => panic!("unexpected kinds {kinds:?}"),
    };
    assert_eq!(confirmed["order_id"], "order-1");
    assert_eq!(confirmed["title"], "Order confirmed");
    assert!(
        confirmed["body"].as_str().unwrap().contains("19.99 EUR"),
        "{confirmed}"
    );
    assert_eq!(cancelled["order_id"], "order-2");
    let body = cancelled["body"].as_str().unwrap();
    assert!(
        body.contains("payment declined: insufficient funds"),
        "{body}"
    );
    assert!(body.contains("42.50 EUR"), "{body}");

    let detail = settled(&app, &bob, confirmed["id"].as_str().unwrap()).await;
    assert_eq!(deliveries(&detail), sent_once(&["email", "push"]));
    let detail = settled(&app, &bob, cancelled["id"].as_str().unwrap()).await;
    assert_eq!(deliveries(&detail), sent_once(&["email", "push", "sms"]));
    app.stop().await;
}

async fn the_same_event_twice_makes_one_notification(backend: TestBackend) {
    let app = spawn(backend).await;
    let carol = new_user();
    let event = user_created(&app, &carol, "Carol");
    // At-least-once delivery: the bus hands the same event over again.
    app.memory_bus().publish(event.to_message());
    // A later event on the same topic: once it is applied, so is the duplicate before it.
    let dave = new_user();
    user_created(&app, &dave, "Dave");
    notifications(&app, &dave, 1).await;
    let items = notifications(&app, &carol, 1).await;
    assert_eq!(items.len(), 1, "one event, one notification: {items:?}");

    // The table refuses a second notification for the event even past the consumer.
    let duplicate = sqlx::query(
        "INSERT INTO notifications (id, user_id, kind, title, body, source_event_id, created_at) \
         VALUES ($1, $2, 'welcome', 'Again', 'Again', $3, '2026-01-01T00:00:00.000000Z')",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(&carol)
    .bind(&event.id)
    .execute(app.db().pool())
    .await
    .expect_err("a second notification for one event is refused");
    assert!(
        sloop_kit::db::is_unique_violation(&duplicate),
        "{duplicate}"
    );
    app.stop().await;
}

async fn pages_filters_and_marking_read(backend: TestBackend) {
    let app = spawn(backend).await;
    let erin = new_user();
    let other = new_user();
    for n in 1..=5 {
        order_confirmed(&app, &erin, &format!("order-{n}"));
    }
    order_confirmed(&app, &other, "order-other");
    notifications(&app, &other, 1).await;
    let all = notifications(&app, &erin, 5).await;
    let orders: Vec<&str> = all
        .iter()
        .map(|n| n["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        orders,
        ["order-5", "order-4", "order-3", "order-2", "order-1"],
        "newest first"
    );

    // Pages of two walk every notification once, newest first.
    let mut seen = Vec::new();
    let mut path = "/notifications?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = get_as(&app, &erin, &path).await.assert_status(200).value();
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/notifications?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let ids: Vec<String> = all
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, ids);
    assert_eq!(pages, 3);
    assert_eq!(unread(&app, &erin).await, 5);

    // Marking read is idempotent: the second time changes nothing.
    let third = &ids[2];
    let read = post_as(&app, &erin, &format!("/notifications/{third}/read"))
        .await
        .assert_status(200)
        .value();
    assert_eq!(read["read"], true);
    let read_at = read["read_at"].as_str().unwrap().to_owned();
    let again = post_as(&app, &erin, &format!("/notifications/{third}/read"))
        .await
        .assert_status(200)
        .value();
    assert_eq!(again["read_at"], read_at.as_str());
    assert_eq!(unread(&app, &erin).await, 4);

    let page = get_as(&app, &erin, "/notifications?unread=true")
        .await
        .assert_status(200)
        .value();
    let unread_ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(unread_ids.len(), 4);
    assert!(!unread_ids.contains(&third.as_str()));
    // The unread filter pages too.
    let first = get_as(&app, &erin, "/notifications?unread=true&limit=3")
        .await
        .value();
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = get_as(
        &app,
        &erin,
        &format!("/notifications?unread=true&limit=3&cursor={cursor}"),
    )
    .await
    .value();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert!(rest["next_cursor"].is_null());

    let marked = post_as(&app, &erin, "/notifications/read-all")
        .await
        .assert_status(200)
        .value();
    assert_eq!(marked["marked_read"], 4);
    let marked = post_as(&app, &erin, "/notifications/read-all")
        .await
        .assert_status(200)
        .value();
    assert_eq!(marked["marked_read"], 0);
    assert_eq!(unread(&app, &erin).await, 0);
    let page = get_as(&app, &erin, "/notifications?unread=false")
        .await
        .value();
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["read"] == true)
    );
    let page = get_as(&app, &erin, "/notifications?unread=true")
        .await
        .value();
    assert!(page["items"].as_array().unwrap().is_empty());
    // The marked notification kept the time it was first read.
    let detail = get_as(&app, &erin, &format!("/notifications/{third}"))
        .await
        .value();
    assert_eq!(detail["read_at"], read_at.as_str());
    // Someone else's stay unread.
    assert_eq!(unread(&app, &other).await, 1);
    app.stop().await;
}

async fn unread(app: &TestApp, user: &str) -> i64 {
    get_as(app, user, "/notifications/unread-count")
        .await
        .assert_status(200)
        .value()["unread"]
        .as_i64()
        .unwrap()
}

async fn someone_elses_notification_is_not_found(backend: TestBackend) {
    let app = spawn(backend).await;
    let owner = new_user();
    let snoop = new_user();
    user_created(&app, &owner, "Owner");
    let id = notifications(&app, &owner, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let missing = uuid::Uuid::now_v7().to_string();
    for path in [
        format!("/notifications/{id}"),
        format!("/notifications/{missing}"),
    ] {
        get_as(&app, &snoop, &path)
            .await
            .assert_problem(404, "no notification");
        post_as(&app, &snoop, &format!("{path}/read"))
            .await
            .assert_problem(404, "no notification");
    }
    let page = get_as(&app, &snoop, "/notifications").await.value();
    assert!(page["items"].as_array().unwrap().is_empty());
    post_as(&app, &snoop, "/notifications/read-all")
        .await
        .assert_status(200);
    // Nothing the snoop did touched the owner's notification.
    let mine = get_as(&app, &owner, &format!("/notifications/{id}"))
        .await
        .assert_status(200)
        .value();
    assert_eq!(mine["read"], false);
    app.stop().await;
}

async fn no_caller_is_unauthorized(backend: TestBackend) {
    let app = spawn(backend).await;
    let id = uuid::Uuid::now_v7();
    for path in [
        "/notifications".to_owned(),
        "/notifications?limit=0".to_owned(),
        "/notifications/unread-count".to_owned(),
        format!("/notifications/{id}"),
    ] {
        app.get(&path).await.assert_problem(401, "sign in");
    }
    for path in [
        "/notifications/read-all".to_owned(),
        format!("/notifications/{id}/read"),
    ] {
        app.request(reqwest::Method::POST, &path)
            .send()
            .await
            .assert_problem(401, "sign in");
    }
    // An empty user id is no caller either.
    app.request(reqwest::Method::GET, "/notifications")
        .header("x-user-id", "")
        .send()
        .await
        .assert_problem(401, "sign in");
    app.stop().await;
}

async fn bad_input_gets_problem_documents(backend: TestBackend) {
    let app = spawn(backend).await;
    let me = new_user();
    for (query, needle) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-1", "limit"),
        ("limit=many", "limit"),
        ("cursor=%%%", "cursor"),
        ("cursor=not-an-id", "cursor"),
        ("unread=maybe", "unread"),
    ] {
        get_as(&app, &me, &format!("/notifications?{query}"))
            .await
            .assert_problem(400, needle);
    }
    get_as(&app, &me, "/notifications?limit=100")
        .await
        .assert_status(200);
    get_as(&app, &me, "/notifications/42")
        .await
        .assert_problem(400, "UUID");
    post_as(&app, &me, "/notifications/42/read")
        .await
        .assert_problem(400, "UUID");
    get_as(&app, &me, "/nope")
        .await
        .assert_problem(404, "no such route");
    as_user(&app, &me, reqwest::Method::DELETE, "/notifications")
        .send()
        .await
        .assert_problem(405, "method");
    app.stop().await;
}

async fn failing_sms_is_retried_then_given_up_while_email_and_push_go_out(backend: TestBackend) {
    let mut settings = settings();
    settings.sms.failure_rate = 1.0;
    settings.sms.max_attempts = 3;
    let app = TestApp::spawn(sloop_notification::service(settings), backend).await;
    let fay = new_user();
    order_cancelled(&app, &fay, "order-9", "out of stock");
    let id = notifications(&app, &fay, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let detail = settled(&app, &fay, &id).await;
    assert_eq!(
        deliveries(&detail),
        [
            ("email".to_owned(), "sent".to_owned(), 1),
            ("push".to_owned(), "sent".to_owned(), 1),
            ("sms".to_owned(), "failed".to_owned(), 3),
        ]
    );
    let sms = detail["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["channel"] == "sms")
        .unwrap();
    assert!(sms["last_error"].as_str().unwrap().contains("sms"), "{sms}");
    assert!(sms["sent_at"].is_null());

    // Failed attempts stay failed: the worker does not pick the delivery up again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let later = get_as(&app, &fay, &format!("/notifications/{id}"))
        .await
        .value();
    assert_eq!(deliveries(&later), deliveries(&detail));

    let body = app.get("/metrics").await.assert_status(200).text();
    for needle in [
        [
            "notification_deliveries_total{",
            "channel=\"sms\"",
            "outcome=\"retried\"",
        ],
        [
            "notification_deliveries_total{",
            "channel=\"sms\"",
            "outcome=\"failed\"",
        ],
        [
            "notification_deliveries_total{",
            "channel=\"email\"",
            "outcome=\"sent\"",
        ],
        [
            "notification_delivery_duration_seconds_bucket{",
            "channel=\"push\"",
            "service=\"notification\"",
        ],
    ] {
        assert!(
            body.lines().any(|l| needle.iter().all(|n| l.contains(n))),
            "no line with {needle:?} in /metrics"
        );
    }
    app.stop().await;
}

async fn an_unknown_event_version_is_dead_lettered(backend: TestBackend) {
    let app = spawn(backend).await;
    let gus = new_user();
    let newer = EventType {
        version: 2,
        ..user_events::CREATED
    };
    let event = publish(&app, "user", newer, &gus, &serde_json::json!({ "id": gus }));
    let dead = app
        .memory_bus()
        .wait_for_event("sloop.user.dlq", PATIENCE, |e| e.id == event.id)
        .await;
    assert!(
        dead.is_some(),
        "a version this code does not know is dead-lettered"
    );
    let page = get_as(&app, &gus, "/notifications").await.value();
    assert!(page["items"].as_array().unwrap().is_empty());
    app.stop().await;
}

async fn two_instances_never_send_one_delivery_twice(backend: TestBackend) {
    let first = spawn(backend).await;
    // A second instance on the same database: its worker competes for the same deliveries.
    let second = TestApp::builder(sloop_notification::service(settings()))
        .backend(backend)
        .database_url(first.database_url.clone())
        .spawn()
        .await;
    let hal = new_user();
    for n in 0..15 {
        order_cancelled(&first, &hal, &format!("order-{n}"), "out of stock");
    }
    let items = notifications(&first, &hal, 15).await;
    for item in &items {
        let detail = settled(&first, &hal, item["id"].as_str().unwrap()).await;
        // A delivery both workers took would show two attempts.
        assert_eq!(
            deliveries(&detail),
            sent_once(&["email", "push", "sms"]),
            "{detail}"
        );
    }
    second.stop().await;
    first.stop().await;
}

async fn probes_and_openapi(backend: TestBackend) {
    let app = spawn(backend).await;
    app.get("/healthz").await.assert_status(200);
    let ready = app.get("/readyz").await.assert_status(200).value();
    assert_eq!(ready["checks"]["database"], "ok");

    let doc = app.get("/openapi.json").await.assert_status(200).value();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/notifications",
        "/notifications/unread-count",
        "/notifications/read-all",
        "/notifications/{id}",
        "/notifications/{id}/read",
    ] {
        assert!(doc["paths"][path].is_object(), "OpenAPI lacks {path}");
    }
    let list = &doc["paths"]["/notifications"]["get"];
    let limit = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap();
    assert_eq!(
        (
            limit["schema"]["minimum"].as_i64(),
            limit["schema"]["maximum"].as_i64()
        ),
        (Some(1), Some(100))
    );
    for status in ["200", "400", "401"] {
        assert!(
            list["responses"][status].is_object(),
            "GET /notifications lacks {status}"
        );
    }
    let read = &doc["paths"]["/notifications/{id}/read"]["post"]["responses"];
    assert!(read["404"]["content"]["application/problem+json"].is_object());
    app.stop().await;
}
