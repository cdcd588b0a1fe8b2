//! The catalogue over HTTP on SQLite and PostgreSQL: categories, products, stock, and
//! search by words, category and price with every sort and cursor pagination.

use serde_json::{Value, json};
use sloop_kit::on_both_backends;
use sloop_kit::testing::{TestApp, TestBackend};

on_both_backends!(
    products_and_categories,
    search_filters_and_sorts_every_page_once,
    stock_never_goes_below_zero,
    bad_input_gets_problem_documents,
    only_admins_manage_the_catalogue,
    probes_and_openapi,
);

async fn spawn(backend: TestBackend) -> TestApp {
    TestApp::spawn(sloop_store::service(Default::default()), backend).await
}

async fn category(app: &TestApp, slug: &str) {
    app.post(
        "/categories",
        &json!({ "slug": slug, "name": slug.to_uppercase() }),
    )
    .await
    .assert_status(201);
}

async fn product(app: &TestApp, name: &str, category: &str, cents: i64, stock: i64) -> Value {
    app.post(
        "/products",
        &json!({
            "name": name, "description": format!("A fine {name}"), "category": category,
            "price": { "amount": cents, "currency": "EUR" }, "available": stock
        }),
    )
    .await
    .assert_status(201)
    .value()
}

async fn products_and_categories(backend: TestBackend) {
    let app = spawn(backend).await;
    category(&app, "kitchen").await;
    category(&app, "garden").await;
    let categories = app.get("/categories").await.assert_status(200).value();
    assert_eq!(categories[0]["slug"], "garden");
    assert_eq!(categories[1]["slug"], "kitchen");

    let kettle = product(&app, "Kettle", "kitchen", 2599, 10).await;
    assert_eq!(
        kettle["price"],
        json!({ "amount": 2599, "currency": "EUR" })
    );
    assert_eq!(kettle["available"], 10);
    let path = format!("/products/{}", kettle["id"].as_str().unwrap());
    assert_eq!(app.get(&path).await.assert_status(200).value(), kettle);

    let changed = app
        .patch(
            &path,
            &json!({ "price": { "amount": 2999, "currency": "EUR" }, "category": "garden" }),
        )
        .await
        .assert_status(200)
        .value();
    assert_eq!(changed["price"]["amount"], 2999);
    assert_eq!(changed["category"], "garden");
    assert_eq!(changed["name"], "Kettle");
    app.post(
        "/categories",
        &json!({ "slug": "kitchen", "name": "Again" }),
    )
    .await
    .assert_problem(409, "already exists");
    app.stop().await;
}

/// Every sort, walked page by page with a small limit, visits each match exactly once in
/// the right order.
async fn search_filters_and_sorts_every_page_once(backend: TestBackend) {
    let app = spawn(backend).await;
    category(&app, "kitchen").await;
    category(&app, "garden").await;
    let names = [
        "Kettle",
        "Teapot",
        "Blue Kettle",
        "Spade",
        "Rake",
        "Red kettle",
        "Toaster",
    ];
    for (i, name) in names.iter().enumerate() {
        let cat = if ["Spade", "Rake"].contains(name) {
            "garden"
        } else {
            "kitchen"
        };
        // Two products share a price, so ties on the sort key are exercised.
        let cents = [1500, 900, 1500, 2000, 700, 3000, 4500][i];
        product(&app, name, cat, cents, 1).await;
    }

    let kettles = all_pages(&app, "q=KETTLE&sort=name").await;
    let found: Vec<&str> = kettles
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(found, ["Blue Kettle", "Kettle", "Red kettle"]);

    let two_words = all_pages(&app, "q=red%20kettle").await;
    assert_eq!(two_words.len(), 1);

    let garden = all_pages(&app, "category=garden&sort=price_asc").await;
    let found: Vec<&str> = garden.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(found, ["Rake", "Spade"]);

    let range = all_pages(&app, "min_price=900&max_price=2000&sort=price_desc").await;
    let prices: Vec<i64> = range
        .iter()
        .map(|p| p["price"]["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(prices, [2000, 1500, 1500, 900]);

    for sort in ["created", "newest", "name", "price_asc", "price_desc"] {
        let every = all_pages(&app, &format!("sort={sort}")).await;
        let mut ids: Vec<&str> = every.iter().map(|p| p["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), names.len(), "sort {sort}");
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), names.len(), "sort {sort} repeated an item");
    }
    let newest = all_pages(&app, "sort=newest").await;
    assert_eq!(newest[0]["name"], "Toaster");

    // Wildcards in the words match literally.
    assert!(all_pages(&app, "q=%25").await.is_empty());
    app.stop().await;
}

async fn all_pages(app: &TestApp, query: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..50 {
        let path = match &cursor {
            None => format!("/products?{query}&limit=2"),
            Some(c) => format!("/products?{query}&limit=2&cursor={c}"),
        };
        let page = app.get(&path).await.assert_status(200).value();
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
    panic!("pagination did not end");
}

async fn stock_never_goes_below_zero(backend: TestBackend) {
    let app = spawn(backend).await;
    category(&app, "kitchen").await;
    let kettle = product(&app, "Kettle", "kitchen", 2599, 3).await;
    let path = format!("/products/{}/stock", kettle["id"].as_str().unwrap());
    let added = app
        .post(&path, &json!({ "add": 7 }))
        .await
        .assert_status(200)
        .value();
    assert_eq!(added["available"], 10);
    app.post(&path, &json!({ "add": -11 }))
        .await
        .assert_problem(409, "has 10 in stock");
    let taken = app
        .post(&path, &json!({ "add": -10 }))
        .await
        .assert_status(200)
        .value();
    assert_eq!(taken["available"], 0);
    app.stop().await;
}

async fn bad_input_gets_problem_documents(backend: TestBackend) {
    let app = spawn(backend).await;
    category(&app, "kitchen").await;
    let cases = [
        (
            json!({ "name": "", "category": "kitchen", "price": { "amount": 1, "currency": "EUR" } }),
            "name",
        ),
        (
            json!({ "name": "A", "category": "kitchen", "price": { "amount": 0, "currency": "EUR" } }),
            "positive",
        ),
        (
            json!({ "name": "A", "category": "kitchen", "price": { "amount": 5, "currency": "euro" } }),
            "ISO 4217",
        ),
        (
            json!({ "name": "A", "category": "kitchen", "price": { "amount": 5, "currency": "EUR" }, "available": -1 }),
            "available",
        ),
    ];
    for (body, needle) in cases {
        app.post("/products", &body)
            .await
            .assert_problem(422, needle);
    }
    app.post(
        "/products",
        &json!({ "name": "A", "category": "nope", "price": { "amount": 5, "currency": "EUR" } }),
    )
    .await
    .assert_problem(409, "no category");
    app.post(
        "/products",
        &json!({ "name": "A\u{7}", "category": "kitchen", "price": { "amount": 5, "currency": "EUR" } }),
    )
    .await
    .assert_problem(422, "control characters");
    app.post("/categories", &json!({ "slug": "Not A Slug", "name": "x" }))
        .await
        .assert_problem(422, "slug");
    app.get("/products?limit=0")
        .await
        .assert_problem(400, "limit");
    app.get("/products?cursor=garbage")
        .await
        .assert_problem(400, "cursor");
    app.get("/products?min_price=10&max_price=5")
        .await
        .assert_problem(400, "min_price");
    let page = app
        .get("/products?sort=name&limit=1")
        .await
        .assert_status(200)
        .value();
    assert!(page["next_cursor"].is_null());
    app.get("/products/not-an-id")
        .await
        .assert_problem(400, "not a product id");
    app.get(&format!("/products/{}", uuid::Uuid::now_v7()))
        .await
        .assert_problem(404, "no product");
    app.stop().await;
}

async fn only_admins_manage_the_catalogue(backend: TestBackend) {
    let app = spawn(backend).await;
    category(&app, "kitchen").await;
    let body =
        json!({ "name": "A", "category": "kitchen", "price": { "amount": 5, "currency": "EUR" } });
    app.request(reqwest::Method::POST, "/products")
        .header("x-user-id", "someone")
        .json(&body)
        .send()
        .await
        .assert_problem(403, "admin");
    app.request(reqwest::Method::POST, "/products")
        .header("x-user-id", "boss")
        .header("x-user-roles", "admin")
        .json(&body)
        .send()
        .await
        .assert_status(201);
    app.stop().await;
}

async fn probes_and_openapi(backend: TestBackend) {
    let app = spawn(backend).await;
    app.get("/readyz").await.assert_status(200);
    let doc = app.get("/openapi.json").await.assert_status(200).value();
    for path in [
        "/products",
        "/products/{id}/stock",
        "/orders",
        "/orders/{id}/cancel",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    app.stop().await;
}
