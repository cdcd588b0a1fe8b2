//! The shop journey through the gateway, the same against every way the platform runs:
//! an admin stocks the catalogue, a customer browses and searches, orders (confirmed) and
//! orders with a card that is declined (cancelled, stock returned), reads the notifications
//! both produced, and the admin finds the audit chain intact with each event exactly once
//! and both orders in a sales report the batch service builds from the events. Ann and the
//! admin chat in a room over WebSockets through the gateway (on two chat instances when
//! several run), and a mention notifies.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{Account, ApiClient, Socket, next_frame};

/// The email auth gives the admin role to, in every platform these tests start.
pub const ADMIN_EMAIL: &str = "admin@example.com";

/// How long anything asynchronous in the journey (the saga, notifications, audit) may take
/// to show.
const SETTLE: Duration = Duration::from_secs(60);

/// Polls `probe` until it returns `Ok`, for at most `limit`; the failure shows the last
/// `Err`, what was seen instead.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let seen = match probe().await {
            Ok(found) => return found,
            Err(seen) => seen,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}; last seen: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the journey against the gateway `api` talks to, behind which `chat_instances`
/// chat instances run: with more than one, the two chat users' sockets must land on
/// different instances, so the live message crosses between them.
pub async fn shop_journey(api: &ApiClient, chat_instances: usize) {
    let admin = Account::from_login(&api.sign_up(ADMIN_EMAIL).await);
    let ann = Account::from_login(&api.sign_up("ann@example.com").await);
    let (kettle, teapot) = stock_the_catalogue(api, &admin, &ann).await;
    browse_and_search(api, &kettle).await;

    let confirmed = order(api, &ann, &kettle, 2, "card", Some("ann-checkout-1")).await;
    let first = settle(api, &ann, &confirmed).await;
    assert_eq!(first["status"], "confirmed");
    // The retry of the same checkout answers the same order.
    let retried = order(api, &ann, &kettle, 2, "card", Some("ann-checkout-1")).await;
    assert_eq!(retried, confirmed);
    assert_eq!(available(api, &kettle).await, 3);

    let declined = order(api, &ann, &teapot, 1, "test-decline", None).await;
    let cancelled = settle(api, &ann, &declined).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert!(
        cancelled["reason"]
            .as_str()
            .is_some_and(|r| r.contains("declined")),
        "{cancelled}"
    );
    assert_eq!(available(api, &teapot).await, 3, "the stock came back");

    let (status, charge) = api
        .get(
            &format!("/api/payments/charges?order_id={confirmed}"),
            Some(&admin.token),
        )
        .await;
    assert_eq!(
        (status, &charge["status"]),
        (200, &json!("succeeded")),
        "{charge}"
    );

    read_notifications(api, &ann, &confirmed, &declined).await;
    audit_holds_every_event_once(api, &admin, &ann).await;
    chat_live_with_a_mention(api, &ann, &admin, chat_instances).await;
    // The orders' events happened between the first order's creation and the second's
    // cancellation: the report covers those days (one, unless the journey crossed midnight).
    let first_day = day_of(&first["created_at"]);
    let last_day = day_of(&cancelled["updated_at"]);
    sales_report_counts_both_orders(api, &admin, &ann, &first_day, &last_day).await;
}

/// Ann opens a room and the admin joins; both hold a socket through the gateway (on two
/// instances, when there are several). Ann's message reaches the admin's socket as it is
/// sent, with the admin mentioned, and the mention becomes the admin's notification.
/// Strangers may not read the room.
async fn chat_live_with_a_mention(
    api: &ApiClient,
    ann: &Account,
    admin: &Account,
    chat_instances: usize,
) {
    let (status, room) = api
        .post(
            "/api/chat/rooms",
            Some(&ann.token),
            json!({ "name": "Kettles" }),
        )
        .await;
    assert_eq!(status, 201, "{room}");
    let room_id = room["id"].as_str().expect("room id");
    let (status, body) = api
        .send(
            reqwest::Method::PUT,
            &format!("/api/chat/rooms/{room_id}/members/{}", admin.user_id),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = api
        .get(&format!("/api/chat/rooms/{room_id}/messages"), None)
        .await;
    assert_eq!(status, 401, "chat needs a signed-in user");

    // Ann's client sets `Authorization`; the admin's signs in as a browser must.
    let mut ann_socket = api.websocket("/api/chat/socket", &ann.token).await;
    let ann_instance = welcomed(&mut ann_socket, ann, room_id).await;
    let mut admin_socket = api
        .browser_websocket("/api/chat/socket", &admin.token)
        .await;
    let mut admin_instance = welcomed(&mut admin_socket, admin, room_id).await;
    // The gateway hands sockets to the instances in turn; another request may come between.
    let mut attempts = 1;
    while chat_instances > 1 && admin_instance == ann_instance {
        assert!(
            attempts < 4 * chat_instances,
            "{attempts} sockets through the gateway all landed on Ann's chat instance \
             {ann_instance}, one of {chat_instances}: does it balance /api/chat?"
        );
        admin_socket = api
            .browser_websocket("/api/chat/socket", &admin.token)
            .await;
        admin_instance = welcomed(&mut admin_socket, admin, room_id).await;
        attempts += 1;
    }
    let text = format!("@{} the kettles are in stock", admin.user_id);
    let (status, sent) = api
        .post(
            &format!("/api/chat/rooms/{room_id}/messages"),
            Some(&ann.token),
            json!({ "text": text }),
        )
        .await;
    assert_eq!(status, 201, "{sent}");
    assert_eq!(sent["mentions"], json!([admin.user_id]), "{sent}");
    for socket in [&mut admin_socket, &mut ann_socket] {
        let frame = next_frame(socket, "message").await;
        assert_eq!(
            (&frame["id"], &frame["text"]),
            (&sent["id"], &sent["text"]),
            "{frame}"
        );
    }
    eventually("the admin's mention notification", SETTLE, || async {
        let (status, page) = api
            .get("/api/notifications?limit=50", Some(&admin.token))
            .await;
        assert_eq!(status, 200, "{page}");
        let mentions = page["items"]
            .as_array()
            .map(|items| items.iter().filter(|n| n["kind"] == "mention").count())
            .unwrap_or(0);
        if mentions == 1 {
            Ok(())
        } else {
            Err(page.to_string())
        }
    })
    .await;
    let (status, page) = api
        .get(
            &format!("/api/chat/rooms/{room_id}/messages?order=oldest"),
            Some(&admin.token),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["id"], sent["id"], "{page}");
}

/// Reads a socket's welcome frame: it names `who` and `room`; returns the chat instance
/// holding the socket.
async fn welcomed(socket: &mut Socket, who: &Account, room: &str) -> String {
    let welcome = next_frame(socket, "welcome").await;
    assert_eq!(welcome["user_id"], who.user_id.as_str(), "{welcome}");
    assert!(welcome["rooms"].to_string().contains(room), "{welcome}");
    welcome["instance"]
        .as_str()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| panic!("the welcome names no instance: {welcome}"))
        .to_owned()
}

/// The UTC day of an RFC 3339 time.
fn day_of(time: &Value) -> String {
    let time = time
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {time}"));
    time.get(..10).expect("an RFC 3339 time").to_owned()
}

/// The admin runs the sales report over the journey's days until batch's read model holds
/// both orders: one confirmed with its revenue, one cancelled. Customers see no jobs.
async fn sales_report_counts_both_orders(
    api: &ApiClient,
    admin: &Account,
    ann: &Account,
    from: &str,
    to: &str,
) {
    let (status, _) = api.get("/api/batch/jobs", Some(&ann.token)).await;
    assert_eq!(status, 403, "only admins see batch jobs");
    let token = Some(admin.token.as_str());
    eventually("both orders in the sales report", SETTLE, || async {
        let trigger = format!("/api/batch/jobs/sales-report/runs?from={from}&to={to}");
        let (status, run) = api.send(reqwest::Method::POST, &trigger, token, None).await;
        assert_eq!(status, 202, "{run}");
        let run_id = run["id"].as_str().expect("run id");
        let run = finished_run(api, admin, run_id).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        let (status, report) = api
            .get(&format!("/api/batch/runs/{run_id}/report"), token)
            .await;
        assert_eq!(status, 200, "{report}");
        let rows = report["rows"].as_array().expect("rows");
        let sum = |column: &str| -> i64 {
            rows.iter()
                .filter(|row| row["currency"] == "EUR")
                .map(|row| row[column].as_i64().unwrap_or(0))
                .sum()
        };
        let seen = (
            sum("orders_confirmed"),
            sum("orders_cancelled"),
            sum("revenue"),
        );
        if seen == (1, 1, 2 * 2599) {
            Ok(())
        } else {
            Err(format!(
                "confirmed, cancelled, revenue: {seen:?} in {report}"
            ))
        }
    })
    .await;
}

/// The run `id` once it has ended.
async fn finished_run(api: &ApiClient, admin: &Account, id: &str) -> Value {
    eventually(&format!("batch run {id} ends"), SETTLE, || async {
        let (status, run) = api
            .get(&format!("/api/batch/runs/{id}"), Some(&admin.token))
            .await;
        assert_eq!(status, 200, "{run}");
        if run["status"] == "running" {
            return Err(run.to_string());
        }
        Ok(run)
    })
    .await
}

async fn stock_the_catalogue(api: &ApiClient, admin: &Account, ann: &Account) -> (String, String) {
    let token = Some(admin.token.as_str());
    let (status, body) = api
        .post(
            "/api/categories",
            token,
            json!({ "slug": "kitchen", "name": "Kitchen" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut ids = Vec::new();
    for (name, cents, stock) in [("Kettle", 2599, 5), ("Teapot", 1500, 3)] {
        let product = json!({
            "name": name, "description": format!("A {name} for the journey"), "category": "kitchen",
            "price": { "amount": cents, "currency": "EUR" }, "available": stock
        });
        let (status, body) = api.post("/api/products", token, product).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    // Customers browse the catalogue but do not change it.
    let (status, _) = api
        .post(
            "/api/products",
            Some(&ann.token),
            json!({ "name": "x", "category": "kitchen", "price": { "amount": 1, "currency": "EUR" } }),
        )
        .await;
    assert_eq!(status, 403);
    (ids.remove(0), ids.remove(0))
}

async fn browse_and_search(api: &ApiClient, kettle: &str) {
    let (status, page) = api.get("/api/products?q=kettle", None).await;
    assert_eq!(status, 200, "{page}");
    let found: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(found, [kettle]);
    let (_, page) = api
        .get(
            "/api/products?category=kitchen&sort=price_asc&limit=1",
            None,
        )
        .await;
    assert_eq!(page["items"][0]["name"], "Teapot");
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let (_, next) = api
        .get(
            &format!("/api/products?category=kitchen&sort=price_asc&limit=1&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(next["items"][0]["name"], "Kettle");
    let (_, cheap) = api.get("/api/products?max_price=2000", None).await;
    assert_eq!(cheap["items"].as_array().unwrap().len(), 1);
}

async fn order(
    api: &ApiClient,
    who: &Account,
    product: &str,
    quantity: u32,
    method: &str,
    key: Option<&str>,
) -> String {
    let mut request = api
        .http
        .post(format!("{}/api/orders", api.base))
        .bearer_auth(&who.token)
        .json(&json!({ "lines": [{ "product_id": product, "quantity": quantity }], "payment_method": method }));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.expect("a response");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON");
    assert!(status == 201 || status == 200, "{status}: {body}");
    body["id"].as_str().unwrap().to_owned()
}

/// The order once it has left `pending_payment`.
async fn settle(api: &ApiClient, who: &Account, order: &str) -> Value {
    eventually(&format!("order {order} settles"), SETTLE, || async {
        let (status, body) = api
            .get(&format!("/api/orders/{order}"), Some(&who.token))
            .await;
        assert_eq!(status, 200, "{body}");
        if body["status"] == "pending_payment" {
            return Err(body.to_string());
        }
        Ok(body)
    })
    .await
}

async fn available(api: &ApiClient, product: &str) -> i64 {
    let (_, body) = api.get(&format!("/api/products/{product}"), None).await;
    body["available"].as_i64().expect("available")
}

async fn read_notifications(api: &ApiClient, ann: &Account, confirmed: &str, declined: &str) {
    let token = Some(ann.token.as_str());
    let items = eventually("three notifications for ann", SETTLE, || async {
        let (status, page) = api.get("/api/notifications", token).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.len() < 3 {
            return Err(format!("{items:?}"));
        }
        Ok(items)
    })
    .await;
    let mut kinds: Vec<(&str, Option<&str>)> = items
        .iter()
        .map(|n| (n["kind"].as_str().unwrap(), n["order_id"].as_str()))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("order_cancelled", Some(declined)),
            ("order_confirmed", Some(confirmed)),
            ("welcome", None)
        ],
        "{items:?}"
    );
    let first = items[0]["id"].as_str().unwrap();
    let (status, read) = api
        .post(
            &format!("/api/notifications/{first}/read"),
            token,
            json!({}),
        )
        .await;
    assert_eq!((status, &read["read"]), (200, &json!(true)), "{read}");
    let (_, unread) = api.get("/api/notifications?unread=true", token).await;
    assert_eq!(unread["items"].as_array().unwrap().len(), 2);
    let (status, _) = api.get("/api/notifications", None).await;
    assert_eq!(status, 401);
}

/// Every event of the journey, by type, as the audit log must hold it.
fn expected_events() -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("sloop.user.created", 2),
        ("sloop.store.order_placed", 2),
        ("sloop.payment.succeeded", 1),
        ("sloop.payment.failed", 1),
        ("sloop.store.order_confirmed", 1),
        ("sloop.store.order_cancelled", 1),
    ])
}

async fn audit_holds_every_event_once(api: &ApiClient, admin: &Account, ann: &Account) {
    let (status, _) = api.get("/api/audit/verify", Some(&ann.token)).await;
    assert_eq!(status, 403, "only admins read the audit log");
    let expected = expected_events();
    let total: usize = expected.values().sum();
    let entries = eventually("every journey event in the audit log", SETTLE, || async {
        let entries = audit_entries(api, admin).await;
        if entries.len() < total {
            return Err(format!("{} entries", entries.len()));
        }
        Ok(entries)
    })
    .await;
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    let mut ids: Vec<&str> = Vec::new();
    for entry in &entries {
        *by_type
            .entry(entry["type"].as_str().unwrap().to_owned())
            .or_default() += 1;
        ids.push(entry["event_id"].as_str().unwrap());
    }
    let by_type: BTreeMap<&str, usize> = by_type.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(by_type, expected, "each event exactly once");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), entries.len(), "no event recorded twice");
    let (status, verdict) = api.get("/api/audit/verify", Some(&admin.token)).await;
    assert_eq!(status, 200, "{verdict}");
    assert_eq!(verdict["intact"], true, "{verdict}");
    assert_eq!(verdict["entries"], total, "{verdict}");
}

/// The whole audit log, page by page.
pub async fn audit_entries(api: &ApiClient, admin: &Account) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut cursor: Option<i64> = None;
    loop {
        let path = match cursor {
            None => "/api/audit/events?limit=500".to_owned(),
            Some(c) => format!("/api/audit/events?limit=500&cursor={c}"),
        };
        let (status, page) = api.get(&path, Some(&admin.token)).await;
        assert_eq!(status, 200, "{page}");
        entries.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_i64() {
            Some(next) => cursor = Some(next),
            None => return entries,
        }
    }
}
