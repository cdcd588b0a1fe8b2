//! Exactly once under failure, against real processes on PostgreSQL with Tansu: 1000
//! orders flow through the gateway while the notification service is killed with SIGKILL
//! and restarted, or while the broker restarts. Every order settles, every confirmation
//! becomes exactly one notification with its deliveries sent, and the audit log holds
//! every event exactly once in an intact chain.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use platform_tests::api::{Account, ApiClient};
use platform_tests::shop::{ADMIN_EMAIL, audit_entries, eventually};
use platform_tests::{Platform, gateway_config_file};
use serde_json::json;
use sloop_kit::testing::OtlpReceiver;

const ORDERS: usize = 1000;
const CUSTOMERS: usize = 10;
/// Orders in flight at once.
const CONCURRENCY: usize = 16;

/// What to break while the orders flow.
#[derive(Debug, Clone, Copy)]
enum Fault {
    KillNotification,
    RestartBroker,
}

/// How long the platform may take to catch up after the last order.
const CATCH_UP: Duration = Duration::from_secs(180);

/// One platform at a time: two at once on a two-core machine measure the machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread")]
async fn notification_killed_mid_stream_loses_and_duplicates_nothing() {
    let _turn = ONE_AT_A_TIME.lock().await;
    orders_survive(Fault::KillNotification).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_restarted_mid_stream_loses_and_duplicates_nothing() {
    let _turn = ONE_AT_A_TIME.lock().await;
    orders_survive(Fault::RestartBroker).await;
}

async fn orders_survive(fault: Fault) {
    let receiver = OtlpReceiver::start().await;
    let mut platform = Platform::start_with_shop(
        std::path::Path::new(env!("CARGO_BIN_EXE_platform-service")),
        &receiver.endpoint,
        &gateway_config_file(100_000, 100_000),
    )
    .await;
    let api = ApiClient::new(platform.gateway.url(""));
    let admin = Account::from_login(&api.sign_up(ADMIN_EMAIL).await);
    let product = stock(&api, &admin).await;
    let mut customers = Vec::new();
    for i in 0..CUSTOMERS {
        customers.push(Account::from_login(
            &api.sign_up(&format!("c{i}@example.com")).await,
        ));
    }

    let placed = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(place_orders(
        api.clone(),
        customers,
        product,
        placed.clone(),
    ));
    while placed.load(Ordering::Relaxed) < ORDERS * 3 / 10 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let broke_at = placed.load(Ordering::Relaxed);
    match fault {
        Fault::KillNotification => {
            let notification = platform.service("notification");
            notification.kill().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            notification.start().await;
        }
        Fault::RestartBroker => platform.broker.restart().await,
    }
    let order_ids = load.await.expect("the load finished");
    eprintln!("{fault:?} after {broke_at} of {ORDERS} orders were placed");
    assert_eq!(order_ids.len(), ORDERS);

    let store = database(platform.service("store")).await;
    let started = Instant::now();
    eventually("every order confirmed", CATCH_UP, || async {
        let statuses: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM orders GROUP BY status ORDER BY status")
                .fetch_all(&store)
                .await
                .unwrap();
        if statuses != [("confirmed".to_owned(), ORDERS as i64)] {
            return Err(format!("{statuses:?}"));
        }
        Ok(())
    })
    .await;
    eprintln!(
        "every order confirmed {:?} after the last was placed",
        started.elapsed()
    );

    let notification = database(platform.service("notification")).await;
    eventually(
        "a notification per confirmed order, all delivered",
        CATCH_UP,
        || async {
            let (notes, orders, undelivered): (i64, i64, i64) = sqlx::query_as(
                "SELECT COUNT(*), COUNT(DISTINCT order_id), \
             (SELECT COUNT(*) FROM deliveries WHERE status <> 'sent') \
             FROM notifications WHERE kind = 'order_confirmed'",
            )
            .fetch_one(&notification)
            .await
            .unwrap();
            assert_eq!(notes, orders, "an order got two confirmations");
            if notes != ORDERS as i64 || undelivered != 0 {
                return Err(format!(
                    "{notes} notifications, {undelivered} deliveries not sent"
                ));
            }
            Ok(())
        },
    )
    .await;
    let (deliveries,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM deliveries")
        .fetch_one(&notification)
        .await
        .unwrap();
    // Welcome (email) for each account, email and push per confirmation.
    assert_eq!(deliveries, (CUSTOMERS + 1 + 2 * ORDERS) as i64);

    // Each account created, and each order placed, paid and confirmed.
    let expected = CUSTOMERS + 1 + 3 * ORDERS;
    let entries = eventually("every event in the audit log", CATCH_UP, || async {
        let entries = audit_entries(&api, &admin).await;
        if entries.len() < expected {
            let mut by_type = std::collections::BTreeMap::<&str, usize>::new();
            for entry in &entries {
                *by_type
                    .entry(entry["type"].as_str().unwrap_or("?"))
                    .or_default() += 1;
            }
            return Err(format!("{} entries: {by_type:?}", entries.len()));
        }
        Ok(entries)
    })
    .await;
    let mut ids: Vec<&str> = entries
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), expected, "an event was recorded twice");
    assert_eq!(entries.len(), expected);
    let (_, verdict) = api.get("/api/audit/verify", Some(&admin.token)).await;
    assert_eq!(verdict["intact"], true, "{verdict}");
    platform.stop().await;
}

async fn stock(api: &ApiClient, admin: &Account) -> String {
    let token = Some(admin.token.as_str());
    api.post(
        "/api/categories",
        token,
        json!({ "slug": "bulk", "name": "Bulk" }),
    )
    .await;
    let (status, product) = api
        .post(
            "/api/products",
            token,
            json!({ "name": "Widget", "category": "bulk",
                    "price": { "amount": 100, "currency": "EUR" }, "available": ORDERS * 2 }),
        )
        .await;
    assert_eq!(status, 201, "{product}");
    product["id"].as_str().unwrap().to_owned()
}

/// Places [`ORDERS`] orders, [`CONCURRENCY`] at a time, counting them in `placed`.
async fn place_orders(
    api: ApiClient,
    customers: Vec<Account>,
    product: String,
    placed: Arc<AtomicUsize>,
) -> Vec<String> {
    futures::stream::iter(0..ORDERS)
        .map(|i| {
            let (api, customer, product, placed) =
                (&api, &customers[i % CUSTOMERS], &product, &placed);
            async move {
                let body = json!({ "lines": [{ "product_id": product, "quantity": 1 }] });
                let (status, order) = api.post("/api/orders", Some(&customer.token), body).await;
                assert_eq!(status, 201, "order {i}: {order}");
                placed.fetch_add(1, Ordering::Relaxed);
                order["id"].as_str().unwrap().to_owned()
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

async fn database(process: &mut platform_tests::Process) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let url = process.database_url().expect("a database").to_owned();
    sqlx::AnyPool::connect(&url)
        .await
        .expect("reach the database")
}
