//! The order saga between the real store and payment services: on SQLite with the
//! in-memory bus, and on PostgreSQL with a Tansu broker. Confirmed and declined orders,
//! out-of-stock rejection, 200 concurrent orders for 50 in stock, one Idempotency-Key sent
//! 20 times at once, timeout compensation, and a refund for a charge that lands after its
//! order was cancelled.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};
use sloop_kit::testing::{Broker, TestApp, TestBackend};
use sloop_kit::{BusUrl, EventBus, on_both_backends};
use sloop_payment::PaymentSettings;
use sloop_payment::provider::ProviderSettings;
use sloop_store::StoreSettings;

on_both_backends!(
    a_paid_order_is_confirmed,
    a_declined_payment_cancels_the_order_and_returns_its_stock,
    out_of_stock_is_refused_at_once_and_reserves_nothing,
    two_hundred_orders_for_fifty_in_stock_never_oversell,
    one_idempotency_key_twenty_times_makes_one_order_and_one_charge,
    an_order_never_paid_is_cancelled_after_its_deadline,
    a_charge_that_lands_after_cancellation_is_refunded,
);

/// Store and payment on one backend and one bus.
struct Shop {
    store: TestApp,
    payment: Option<TestApp>,
    bus: EventBus,
    backend: TestBackend,
    _broker: Option<Broker>,
}

fn fast_provider() -> PaymentSettings {
    PaymentSettings {
        provider: ProviderSettings {
            latency_p50_ms: 2.0,
            latency_p99_ms: 10.0,
            ..ProviderSettings::default()
        },
        ..PaymentSettings::default()
    }
}

impl Shop {
    async fn open(backend: TestBackend) -> Self {
        Self::open_with(backend, StoreSettings::default(), true).await
    }

    async fn open_with(backend: TestBackend, settings: StoreSettings, with_payment: bool) -> Self {
        let broker = match backend {
            TestBackend::Sqlite => None,
            TestBackend::Postgres => Some(Broker::start().await),
        };
        let bus = match &broker {
            Some(broker) => EventBus::connect(&broker.url(), "saga-test").unwrap(),
            None => EventBus::connect(&BusUrl::Memory, "saga-test").unwrap(),
        };
        let store = TestApp::builder(sloop_store::service(settings))
            .backend(backend)
            .bus(bus.clone())
            .spawn()
            .await;
        let mut shop = Self {
            store,
            payment: None,
            bus,
            backend,
            _broker: broker,
        };
        if with_payment {
            shop.start_payment().await;
        }
        shop
    }

    async fn start_payment(&mut self) {
        let payment = TestApp::builder(sloop_payment::service(fast_provider()))
            .backend(self.backend)
            .bus(self.bus.clone())
            .spawn()
            .await;
        self.payment = Some(payment);
    }

    fn payment(&self) -> &TestApp {
        self.payment.as_ref().expect("payment is running")
    }

    async fn product(&self, stock: i64) -> String {
        let _ = self
            .store
            .post(
                "/categories",
                &json!({ "slug": "kitchen", "name": "Kitchen" }),
            )
            .await;
        let product = self
            .store
            .post(
                "/products",
                &json!({ "name": "Kettle", "category": "kitchen",
                         "price": { "amount": 2599, "currency": "EUR" }, "available": stock }),
            )
            .await
            .assert_status(201)
            .value();
        product["id"].as_str().unwrap().to_owned()
    }

    async fn order(&self, user: &str, product: &str, quantity: u32, method: &str) -> (u16, Value) {
        self.order_with_key(user, product, quantity, method, None)
            .await
    }

    async fn order_with_key(
        &self,
        user: &str,
        product: &str,
        quantity: u32,
        method: &str,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .store
            .request(reqwest::Method::POST, "/orders")
            .header("x-user-id", user)
            .json(&json!({ "lines": [{ "product_id": product, "quantity": quantity }], "payment_method": method }));
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await;
        (response.status.as_u16(), response.value())
    }

    async fn available(&self, product: &str) -> i64 {
        let product = self
            .store
            .get(&format!("/products/{product}"))
            .await
            .assert_status(200)
            .value();
        product["available"].as_i64().unwrap()
    }

    /// Waits until the order leaves `pending_payment`, and returns it.
    async fn settled(&self, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let order = self
                .store
                .get(&format!("/orders/{id}"))
                .await
                .assert_status(200)
                .value();
            if order["status"] != "pending_payment" {
                return order;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "order {id} still pending: {order}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn charge_of(&self, order: &str) -> Value {
        self.payment()
            .get(&format!("/charges?order_id={order}"))
            .await
            .assert_status(200)
            .value()
    }

    async fn close(self) {
        if let Some(payment) = self.payment {
            payment.stop().await;
        }
        self.store.stop().await;
    }
}

async fn a_paid_order_is_confirmed(backend: TestBackend) {
    let shop = Shop::open(backend).await;
    let kettle = shop.product(5).await;
    let (status, placed) = shop.order("ada", &kettle, 2, "card").await;
    assert_eq!(status, 201, "{placed}");
    assert_eq!(placed["status"], "pending_payment");
    assert_eq!(
        placed["total"],
        json!({ "amount": 5198, "currency": "EUR" })
    );
    assert_eq!(
        shop.available(&kettle).await,
        3,
        "stock is reserved at once"
    );

    let id = placed["id"].as_str().unwrap();
    let order = shop.settled(id).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    let history: Vec<&str> = order["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["pending_payment", "confirmed"]);
    let charge = shop.charge_of(id).await;
    assert_eq!(charge["status"], "succeeded");
    assert_eq!(
        charge["amount"],
        json!({ "amount": 5198, "currency": "EUR" })
    );
    assert_eq!(order["charge_id"], charge["id"]);
    assert_eq!(shop.available(&kettle).await, 3);

    // Someone else cannot see it; its owner lists it.
    shop.store
        .request(reqwest::Method::GET, &format!("/orders/{id}"))
        .header("x-user-id", "eve")
        .send()
        .await
        .assert_problem(404, "no order");
    let mine = shop
        .store
        .request(reqwest::Method::GET, "/orders")
        .header("x-user-id", "ada")
        .send()
        .await
        .assert_status(200)
        .value();
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    shop.close().await;
}

async fn a_declined_payment_cancels_the_order_and_returns_its_stock(backend: TestBackend) {
    let shop = Shop::open(backend).await;
    let kettle = shop.product(5).await;
    let (status, placed) = shop.order("ada", &kettle, 4, "test-decline").await;
    assert_eq!(status, 201, "{placed}");
    assert_eq!(shop.available(&kettle).await, 1);
    let order = shop.settled(placed["id"].as_str().unwrap()).await;
    assert_eq!(order["status"], "cancelled", "{order}");
    let reason = order["reason"].as_str().unwrap();
    assert!(
        reason.contains("payment failed") && reason.contains("declined"),
        "{reason}"
    );
    assert_eq!(shop.available(&kettle).await, 5, "the stock came back");
    assert_eq!(
        shop.charge_of(placed["id"].as_str().unwrap()).await["status"],
        "failed"
    );
    shop.close().await;
}

async fn out_of_stock_is_refused_at_once_and_reserves_nothing(backend: TestBackend) {
    let shop = Shop::open(backend).await;
    let kettle = shop.product(2).await;
    let (status, problem) = shop.order("ada", &kettle, 3, "card").await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("out of stock"),
        "{problem}"
    );
    assert_eq!(shop.available(&kettle).await, 2);
    let (status, problem) = shop
        .order("ada", &uuid::Uuid::now_v7().to_string(), 1, "card")
        .await;
    assert_eq!(status, 409, "an unknown product: {problem}");
    let (status, problem) = shop.order("ada", &kettle, 0, "card").await;
    assert_eq!(status, 422, "{problem}");
    let orders = shop.store.get("/orders").await.assert_status(200).value();
    assert!(orders["items"].as_array().unwrap().is_empty(), "{orders}");
    shop.close().await;
}

/// 200 customers order one unit each of a product with 50 in stock, at once; every fourth
/// pays with a card that is declined. Stock never goes below zero while it happens; each
/// declined order's unit comes back (and may sell again at once); then the rest sells out
/// to exactly 50 confirmed.
async fn two_hundred_orders_for_fifty_in_stock_never_oversell(backend: TestBackend) {
    let shop = Shop::open(backend).await;
    let kettle = shop.product(50).await;
    let watching = tokio::spawn({
        let db = shop.store.db().clone();
        let kettle = kettle.clone();
        async move {
            let mut lowest = i64::MAX;
            for _ in 0..400 {
                let (available,): (i64,) =
                    sqlx::query_as("SELECT available FROM inventory WHERE product_id = $1")
                        .bind(&kettle)
                        .fetch_one(db.executor())
                        .await
                        .unwrap();
                lowest = lowest.min(available);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            lowest
        }
    });
    let attempts = (0..200).map(|i| {
        let method = if i % 4 == 0 { "test-decline" } else { "card" };
        let (shop, kettle) = (&shop, &kettle);
        async move {
            shop.order(&format!("customer-{i}"), kettle, 1, method)
                .await
        }
    });
    let results = join_all(attempts).await;
    let placed: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, o)| o)
        .collect();
    let refused = results.iter().filter(|(s, _)| *s == 409).count();
    assert_eq!(
        placed.len() + refused,
        200,
        "every order was placed or refused: {:?}",
        results
            .iter()
            .filter(|(s, _)| *s != 201 && *s != 409)
            .collect::<Vec<_>>()
    );
    // Declined orders return their unit while others still arrive, so a few more than 50
    // may be placed; never more than 50 are confirmed.
    assert!(
        placed.len() >= 50,
        "only {} placed while stock lasted",
        placed.len()
    );

    let mut confirmed = 0;
    for order in &placed {
        let order = shop.settled(order["id"].as_str().unwrap()).await;
        match order["status"].as_str().unwrap() {
            "confirmed" => confirmed += 1,
            "cancelled" => assert_eq!(order["payment_method"], "test-decline", "{order}"),
            other => panic!("order ended {other}"),
        }
    }
    assert!(confirmed <= 50, "{confirmed} confirmed: oversold");
    assert!(watching.await.unwrap() >= 0);
    assert_eq!(
        shop.available(&kettle).await,
        50 - confirmed,
        "every cancelled order's unit came back"
    );

    // The returned units sell to the next customers, and no further.
    let mut more = 0;
    loop {
        let (status, order) = shop
            .order(&format!("late-{more}"), &kettle, 1, "card")
            .await;
        if status == 409 {
            break;
        }
        assert_eq!(status, 201, "{order}");
        assert_eq!(
            shop.settled(order["id"].as_str().unwrap()).await["status"],
            "confirmed"
        );
        more += 1;
    }
    assert_eq!(confirmed + more, 50, "exactly 50 confirmed in the end");
    assert_eq!(shop.available(&kettle).await, 0);
    shop.close().await;
}

async fn one_idempotency_key_twenty_times_makes_one_order_and_one_charge(backend: TestBackend) {
    let shop = Shop::open(backend).await;
    let kettle = shop.product(10).await;
    let key = "checkout-7f3a";
    let sends = (0..20).map(|_| shop.order_with_key("ada", &kettle, 2, "card", Some(key)));
    let results = join_all(sends).await;
    let ids: std::collections::BTreeSet<&str> = results
        .iter()
        .map(|(s, o)| {
            assert!(*s == 201 || *s == 200, "{s}: {o}");
            o["id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one order: {ids:?}");
    assert_eq!(
        results.iter().filter(|(s, _)| *s == 201).count(),
        1,
        "created once, replayed 19 times"
    );
    let id = *ids.iter().next().unwrap();
    assert_eq!(shop.settled(id).await["status"], "confirmed");
    assert_eq!(shop.available(&kettle).await, 8, "stock taken once");
    let (charges,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM charges")
        .fetch_one(shop.payment().db().executor())
        .await
        .unwrap();
    assert_eq!(charges, 1, "one charge");

    // The same key with another body is refused; nothing is reserved for it.
    let (status, problem) = shop
        .order_with_key("ada", &kettle, 3, "card", Some(key))
        .await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key"),
        "{problem}"
    );
    // Keys are per user: another user's same key is a new order.
    let (status, _) = shop
        .order_with_key("bob", &kettle, 1, "card", Some(key))
        .await;
    assert_eq!(status, 201);
    assert_eq!(shop.available(&kettle).await, 7);
    shop.close().await;
}

/// With payment down, the order's deadline passes: it is cancelled with the reason and its
/// stock returned. When payment comes back it reads the placement and the cancellation in
/// order, and never charges.
async fn an_order_never_paid_is_cancelled_after_its_deadline(backend: TestBackend) {
    let settings = StoreSettings {
        payment_deadline: Duration::from_secs(1),
        sweep_every: Duration::from_millis(200),
    };
    let mut shop = Shop::open_with(backend, settings, false).await;
    let kettle = shop.product(3).await;
    let (status, placed) = shop.order("ada", &kettle, 3, "card").await;
    assert_eq!(status, 201, "{placed}");
    let id = placed["id"].as_str().unwrap().to_owned();
    let order = shop.settled(&id).await;
    assert_eq!(order["status"], "cancelled");
    assert!(
        order["reason"]
            .as_str()
            .unwrap()
            .contains("did not complete within 1s"),
        "{order}"
    );
    assert_eq!(shop.available(&kettle).await, 3);

    shop.start_payment().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let charge = shop.payment().get(&format!("/charges?order_id={id}")).await;
        if charge.status == 200 && charge.value()["status"] == "voided" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "charge not voided: {}",
            charge.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        shop.charge_of(&id).await["status"],
        "voided",
        "never charged"
    );
    shop.close().await;
}

/// The customer cancels while the provider is still charging: the charge is voided, and
/// when the provider approves anyway it is refunded.
async fn a_charge_that_lands_after_cancellation_is_refunded(backend: TestBackend) {
    let shop = Shop::open(backend).await;
    shop.payment()
        .put("/provider", &json!({ "latency_p50_ms": 1500.0, "latency_p99_ms": 1500.0, "decline_rate": 0.0, "error_rate": 0.0 }))
        .await
        .assert_status(200);
    let kettle = shop.product(3).await;
    let (_, placed) = shop.order("ada", &kettle, 1, "card").await;
    let id = placed["id"].as_str().unwrap().to_owned();
    // Wait until the provider call is in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let charge = shop.payment().get(&format!("/charges?order_id={id}")).await;
        if charge.status == 200 && charge.value()["attempts"] == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no provider call: {}",
            charge.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled = shop
        .store
        .request(reqwest::Method::POST, &format!("/orders/{id}/cancel"))
        .header("x-user-id", "ada")
        .send()
        .await
        .assert_status(200)
        .value();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(shop.available(&kettle).await, 3);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let charge = shop.charge_of(&id).await;
        if charge["status"] == "refunded" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not refunded: {charge}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A confirmed order cannot be cancelled by the customer.
    shop.payment()
        .put("/provider", &json!({ "latency_p50_ms": 1.0, "latency_p99_ms": 2.0, "decline_rate": 0.0, "error_rate": 0.0 }))
        .await
        .assert_status(200);
    let (_, placed) = shop.order("ada", &kettle, 1, "card").await;
    let id = placed["id"].as_str().unwrap();
    assert_eq!(shop.settled(id).await["status"], "confirmed");
    shop.store
        .request(reqwest::Method::POST, &format!("/orders/{id}/cancel"))
        .header("x-user-id", "ada")
        .send()
        .await
        .assert_problem(409, "confirmed");
    shop.close().await;
}
