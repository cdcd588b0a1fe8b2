//! The store service: a catalogue of products in categories with text, category and price
//! search; stock per product; and orders, whose saga it runs with payment over events —
//! stock is reserved when an order is placed, released when payment fails or never comes.

mod catalog;
pub mod cli;
mod events;
pub mod metrics;
pub mod model;
mod orders;

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::{get, post};
use sloop_kit::{
    Caller, Consumer, Context, Database, Json, MaybeCaller, Outbox, Path, Problem, Query, Service,
};
use utoipa::OpenApi;

use catalog::{CatalogError, SearchError};
use model::{
    Category, DEFAULT_PAGE, LineRequest, MAX_PAGE, NewOrder, NewProduct, Order, OrderLine,
    OrderPage, OrderQuery, OrderStatus, Product, ProductPage, ProductPatch, ProductQuery,
    ProductSort, StockChange, Transition,
};
use orders::{OrderError, Placed};

pub const NAME: &str = "store";
pub const PORT: u16 = 8084;

pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The most units a product's stock may hold, so sums of stock never overflow.
pub const MAX_STOCK: i64 = 1_000_000_000;

/// The header a client sends to make `POST /orders` safe to retry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// How long an order may wait for payment, and how often overdue ones are looked for.
#[derive(Debug, Clone, Copy)]
pub struct StoreSettings {
    pub payment_deadline: Duration,
    pub sweep_every: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            payment_deadline: Duration::from_secs(120),
            sweep_every: Duration::from_secs(5),
        }
    }
}

/// The store service, described once.
pub fn service(settings: StoreSettings) -> Service {
    Service::new(NAME, PORT)
        .database(&MIGRATIONS)
        .publishes(&sloop_events::store::ALL)
        .metrics(metrics::describe)
        .consumes(NAME, |ctx| {
            Consumer::new(
                NAME,
                &[sloop_events::payment::TOPIC],
                events::PaymentEvents {
                    outbox: ctx.outbox().clone(),
                },
            )
        })
        .worker("order-timeouts", move |ctx, stop| {
            expire_overdue_orders(ctx, settings, stop)
        })
        .api(move |ctx| router(Store::new(ctx, settings)))
        .openapi(ApiDoc::openapi())
}

/// Timeout compensation: pending orders past their deadline are cancelled, so none waits
/// forever on a payment that never comes.
async fn expire_overdue_orders(
    ctx: Context,
    settings: StoreSettings,
    stop: tokio_util::sync::CancellationToken,
) {
    let reason = format!(
        "payment did not complete within {}",
        sloop_duration::format(settings.payment_deadline)
    );
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(settings.sweep_every) => {}
        }
        if let Err(err) = orders::expire_overdue(ctx.db(), ctx.outbox(), &reason, 100).await {
            tracing::warn!(error = %err, "cannot cancel overdue orders; trying again later");
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct Store {
    db: Database,
    outbox: Outbox,
    settings: StoreSettings,
}

impl Store {
    fn new(ctx: &Context, settings: StoreSettings) -> Self {
        Self {
            db: ctx.db().clone(),
            outbox: ctx.outbox().clone(),
            settings,
        }
    }
}

pub fn router(state: Store) -> Router {
    Router::new()
        .route("/categories", post(create_category).get(list_categories))
        .route("/products", post(create_product).get(search_products))
        .route("/products/{id}", get(get_product).patch(update_product))
        .route("/products/{id}/stock", post(change_stock))
        .route("/orders", post(place_order).get(list_orders))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/cancel", post(cancel_order))
        .with_state(state)
}

impl From<CatalogError> for Problem {
    fn from(err: CatalogError) -> Self {
        match &err {
            CatalogError::NotFound(_) => Problem::not_found(err.to_string()),
            // The request is well formed; the catalogue lacks what it refers to.
            CatalogError::UnknownCategory(_) => {
                Problem::conflict("unknown-category", err.to_string())
            }
            CatalogError::DuplicateCategory(_) => {
                Problem::conflict("duplicate-category", err.to_string())
            }
            CatalogError::NotEnoughStock { .. } => {
                Problem::conflict("not-enough-stock", err.to_string())
            }
            CatalogError::Database(_) => Problem::internal(&err),
        }
    }
}

impl From<OrderError> for Problem {
    fn from(err: OrderError) -> Self {
        match &err {
            OrderError::NotFound(_) => Problem::not_found(err.to_string()),
            // Well-formed requests the catalogue makes impossible, like missing stock.
            OrderError::UnknownProduct(_) => Problem::conflict("unknown-product", err.to_string()),
            OrderError::MixedCurrencies(..) => {
                Problem::conflict("mixed-currencies", err.to_string())
            }
            OrderError::KeyReused(_) => Problem::validation(err.to_string()),
            // The request is fine; the prices it meets make it impossible, like missing stock.
            OrderError::TotalOverflow => Problem::conflict("total-too-large", err.to_string()),
            OrderError::OutOfStock { .. } => Problem::conflict("out-of-stock", err.to_string()),
            OrderError::NotCancellable(..) => Problem::conflict("not-cancellable", err.to_string()),
            OrderError::UnknownStatus { .. } | OrderError::Database(_) | OrderError::Outbox(_) => {
                Problem::internal(&err)
            }
        }
    }
}

fn parse_uuid(raw: &str, what: &str) -> Result<String, Problem> {
    uuid::Uuid::parse_str(raw)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| Problem::bad_request(format!("`{raw}` is not {what}; ids are UUIDs")))
}

fn check_limit(limit: Option<u32>) -> Result<u32, Problem> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}, got {limit}"
        )));
    }
    Ok(limit)
}

fn check_name(field: &str, value: &str, min: usize, max: usize) -> Result<String, Problem> {
    sloop_kit::validate::name(field, value, min, max).map_err(Problem::validation)
}

fn check_text(field: &str, value: &str, min: usize, max: usize) -> Result<String, Problem> {
    sloop_kit::validate::text(field, value, min, max).map_err(Problem::validation)
}

/// A slug (category, payment method): 1 to 50 lower-case letters, digits or dashes.
fn check_slug(field: &str, slug: &str) -> Result<(), String> {
    let ok = !slug.is_empty()
        && slug.len() <= 50
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Err(format!(
            "{field} must be 1 to 50 lower-case letters, digits or dashes, got {slug:?}"
        ));
    }
    Ok(())
}

#[utoipa::path(
    post, path = "/categories", request_body = Category,
    responses(
        (status = 201, description = "Created", body = Category),
        (status = 403, description = "Only an admin may manage the catalogue", body = Problem),
        (status = 409, description = "The slug is taken", body = Problem),
    )
)]
async fn create_category(
    State(state): State<Store>,
    caller: MaybeCaller,
    Json(input): Json<Category>,
) -> Result<(StatusCode, Json<Category>), Problem> {
    caller.require_admin("manage the catalogue")?;
    check_slug("category slug", &input.slug).map_err(Problem::validation)?;
    let category = Category {
        slug: input.slug,
        name: check_name("name", &input.name, 1, 100)?,
    };
    catalog::create_category(&state.db, &category).await?;
    Ok((StatusCode::CREATED, Json(category)))
}

#[utoipa::path(
    get, path = "/categories",
    responses((status = 200, description = "Every category, by slug", body = [Category]))
)]
async fn list_categories(State(state): State<Store>) -> Result<Json<Vec<Category>>, Problem> {
    Ok(Json(catalog::categories(&state.db).await?))
}

#[utoipa::path(
    post, path = "/products", request_body = NewProduct,
    responses(
        (status = 201, description = "Created", body = Product),
        (status = 403, description = "Only an admin may manage the catalogue", body = Problem),
        (status = 409, description = "No such category", body = Problem),
        (status = 422, description = "Bad name, price or stock", body = Problem),
    )
)]
async fn create_product(
    State(state): State<Store>,
    caller: MaybeCaller,
    Json(input): Json<NewProduct>,
) -> Result<(StatusCode, HeaderMap, Json<Product>), Problem> {
    caller.require_admin("manage the catalogue")?;
    check_slug("category", &input.category).map_err(Problem::validation)?;
    let input = NewProduct {
        name: check_name("name", &input.name, 1, 200)?,
        description: check_text("description", &input.description, 0, 2000)?,
        category: input.category,
        price: input.price,
        available: input.available,
    };
    input.price.check_positive().map_err(Problem::validation)?;
    if !(0..=MAX_STOCK).contains(&input.available) {
        return Err(Problem::validation(format!(
            "available must be 0 to {MAX_STOCK}"
        )));
    }
    let product = catalog::create_product(&state.db, &input).await?;
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/products/{}", product.id)) {
        headers.insert(header::LOCATION, location);
    }
    Ok((StatusCode::CREATED, headers, Json(product)))
}

#[utoipa::path(
    get, path = "/products/{id}", params(("id" = String, Path, format = "uuid", description = "Product id")),
    responses(
        (status = 200, description = "The product with its stock", body = Product),
        (status = 404, description = "No such product", body = Problem),
    )
)]
async fn get_product(
    State(state): State<Store>,
    Path(id): Path<String>,
) -> Result<Json<Product>, Problem> {
    let id = parse_uuid(&id, "a product id")?;
    Ok(Json(catalog::get_product(&state.db, &id).await?))
}

#[utoipa::path(
    patch, path = "/products/{id}", request_body = ProductPatch,
    params(("id" = String, Path, format = "uuid", description = "Product id")),
    responses(
        (status = 200, description = "The changed product", body = Product),
        (status = 403, description = "Only an admin may manage the catalogue", body = Problem),
        (status = 404, description = "No such product", body = Problem),
        (status = 409, description = "No such category", body = Problem),
    )
)]
/// Changes a product. A new price applies to orders placed from now on; placed orders keep
/// the price they were placed at.
async fn update_product(
    State(state): State<Store>,
    caller: MaybeCaller,
    Path(id): Path<String>,
    Json(patch): Json<ProductPatch>,
) -> Result<Json<Product>, Problem> {
    caller.require_admin("manage the catalogue")?;
    let id = parse_uuid(&id, "a product id")?;
    let mut product = catalog::get_product(&state.db, &id).await?;
    if let Some(name) = &patch.name {
        product.name = check_name("name", name, 1, 200)?;
    }
    if let Some(description) = &patch.description {
        product.description = check_text("description", description, 0, 2000)?;
    }
    if let Some(category) = patch.category {
        check_slug("category", &category).map_err(Problem::validation)?;
        product.category = category;
    }
    if let Some(price) = patch.price {
        price.check_positive().map_err(Problem::validation)?;
        product.price = price;
    }
    Ok(Json(catalog::save_product(&state.db, &product).await?))
}

#[utoipa::path(
    post, path = "/products/{id}/stock", request_body = StockChange,
    params(("id" = String, Path, format = "uuid", description = "Product id")),
    responses(
        (status = 200, description = "The product with its new stock", body = Product),
        (status = 403, description = "Only an admin may manage the catalogue", body = Problem),
        (status = 404, description = "No such product", body = Problem),
        (status = 409, description = "Taking more than is in stock, or more than the most a product may hold", body = Problem),
    )
)]
/// Adds units to stock (or takes them, with a negative `add`), atomically with orders that
/// reserve stock at the same moment.
async fn change_stock(
    State(state): State<Store>,
    caller: MaybeCaller,
    Path(id): Path<String>,
    Json(change): Json<StockChange>,
) -> Result<Json<Product>, Problem> {
    caller.require_admin("manage the catalogue")?;
    let id = parse_uuid(&id, "a product id")?;
    if change.add.unsigned_abs() > MAX_STOCK as u64 {
        return Err(Problem::validation(format!(
            "add must be within ±{MAX_STOCK}"
        )));
    }
    Ok(Json(catalog::add_stock(&state.db, &id, change.add).await?))
}

#[utoipa::path(
    get, path = "/products", params(ProductQuery),
    responses(
        (status = 200, description = "A page of matching products", body = ProductPage),
        (status = 400, description = "Bad cursor, limit or price range", body = Problem),
    )
)]
/// Searches the catalogue by words, category and price range, sorted, one page at a time.
async fn search_products(
    State(state): State<Store>,
    Query(query): Query<ProductQuery>,
) -> Result<Json<ProductPage>, Problem> {
    let limit = check_limit(query.limit)?;
    if let (Some(min), Some(max)) = (query.min_price, query.max_price)
        && min > max
    {
        return Err(Problem::bad_request(format!(
            "min_price ({min}) is above max_price ({max})"
        )));
    }
    if query.q.as_deref().is_some_and(|q| q.chars().count() > 200) {
        return Err(Problem::bad_request("q must be at most 200 characters"));
    }
    if let Some(category) = &query.category {
        check_slug("category", category).map_err(Problem::bad_request)?;
    }
    if let Some(currency) = &query.currency
        && !(currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()))
    {
        return Err(Problem::bad_request(format!(
            "currency must be an ISO 4217 code like EUR, got {currency:?}"
        )));
    }
    let mut items = catalog::search(&state.db, &query, limit + 1)
        .await
        .map_err(|err| match err {
            SearchError::BadCursor => Problem::bad_request(err.to_string()),
            SearchError::Database(_) => Problem::internal(&err),
        })?;
    let sort = query.sort.unwrap_or_default();
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|last| catalog::encode_cursor(sort, last))
    } else {
        None
    };
    Ok(Json(ProductPage { items, next_cursor }))
}

/// The order request, checked: lines present, quantities sane, method named.
fn check_order(order: &NewOrder) -> Result<NewOrder, Problem> {
    if order.lines.is_empty() || order.lines.len() > 50 {
        return Err(Problem::validation("an order has 1 to 50 lines"));
    }
    let mut lines = Vec::with_capacity(order.lines.len());
    for line in &order.lines {
        if !(1..=1000).contains(&line.quantity) {
            return Err(Problem::validation(format!(
                "quantity must be 1 to 1000, got {} for product {}",
                line.quantity, line.product_id
            )));
        }
        let product_id = uuid::Uuid::parse_str(&line.product_id)
            .map_err(|_| {
                Problem::validation(format!(
                    "`{}` is not a product id; ids are UUIDs",
                    line.product_id
                ))
            })?
            .hyphenated()
            .to_string();
        lines.push(LineRequest {
            product_id,
            quantity: line.quantity,
        });
    }
    check_slug("payment_method", &order.payment_method).map_err(Problem::validation)?;
    let payment_method = order.payment_method.clone();
    let normalized = orders::normalize(&NewOrder {
        lines,
        payment_method,
    });
    Ok(normalized)
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 200 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            Problem::bad_request("Idempotency-Key must be 1 to 200 visible ASCII characters")
        })?;
    Ok(Some(key.to_owned()))
}

#[utoipa::path(
    post, path = "/orders", request_body = NewOrder,
    params(("Idempotency-Key" = Option<String>, Header, max_length = 200, pattern = r"^[!-~]+$", description = "Makes the request safe to retry: the same key with the same body answers the same order")),
    responses(
        (status = 201, description = "Placed: stock is reserved and payment is being taken", body = Order),
        (status = 200, description = "Already placed with this Idempotency-Key (a retry)", body = Order),
        (status = 401, description = "Not signed in", body = Problem),
        (status = 409, description = "Out of stock, an unknown product, prices in two currencies, or a total too large to charge; nothing was reserved", body = Problem),
        (status = 422, description = "Bad lines, or the Idempotency-Key reused for another order", body = Problem),
    )
)]
/// Places an order for the signed-in user. Its stock is reserved at once (or the order is
/// refused with 409 when there is not enough); payment follows, and the order becomes
/// `confirmed` or `cancelled` with the reason.
async fn place_order(
    State(state): State<Store>,
    caller: Caller,
    headers: HeaderMap,
    Json(input): Json<NewOrder>,
) -> Result<(StatusCode, HeaderMap, Json<Order>), Problem> {
    let key = idempotency_key(&headers)?;
    let order = check_order(&input)?;
    let deadline = state.settings.payment_deadline.as_millis() as i64;
    let placed = orders::place(
        &state.db,
        &state.outbox,
        &caller.user_id,
        &order,
        key.as_deref(),
        deadline,
    )
    .await
    .inspect_err(|err| {
        if matches!(err, OrderError::OutOfStock { .. }) {
            ::metrics::counter!(metrics::ORDERS, "service" => NAME, "outcome" => "rejected")
                .increment(1);
        }
    })?;
    let (status, order) = match placed {
        Placed::Created(order) => {
            tracing::info!(order_id = %order.id, total = order.total.amount, "order placed");
            (StatusCode::CREATED, order)
        }
        Placed::Replayed(order) => (StatusCode::OK, order),
    };
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/orders/{}", order.id)) {
        headers.insert(header::LOCATION, location);
    }
    Ok((status, headers, Json(order)))
}

#[utoipa::path(
    get, path = "/orders/{id}", params(("id" = String, Path, format = "uuid", description = "Order id")),
    responses(
        (status = 200, description = "The order with its lines and history", body = Order),
        (status = 404, description = "No such order (or not yours)", body = Problem),
    )
)]
async fn get_order(
    State(state): State<Store>,
    caller: MaybeCaller,
    Path(id): Path<String>,
) -> Result<Json<Order>, Problem> {
    let id = parse_uuid(&id, "an order id")?;
    let order = orders::get(&state.db, &id).await?;
    visible_to(&caller, &order)?;
    Ok(Json(order))
}

/// Someone else's order is "not found", so ids cannot be probed.
fn visible_to(caller: &MaybeCaller, order: &Order) -> Result<(), Problem> {
    match &caller.0 {
        Some(caller) if !caller.may_act_for(&order.user_id) => {
            Err(Problem::not_found(format!("no order has id {}", order.id)))
        }
        _ => Ok(()),
    }
}

#[utoipa::path(
    post, path = "/orders/{id}/cancel", params(("id" = String, Path, format = "uuid", description = "Order id")),
    responses(
        (status = 200, description = "Cancelled; its stock is back and any payment is refunded", body = Order),
        (status = 404, description = "No such order (or not yours)", body = Problem),
        (status = 409, description = "Already confirmed", body = Problem),
    )
)]
async fn cancel_order(
    State(state): State<Store>,
    caller: MaybeCaller,
    Path(id): Path<String>,
) -> Result<Json<Order>, Problem> {
    let id = parse_uuid(&id, "an order id")?;
    let order = orders::get(&state.db, &id).await?;
    visible_to(&caller, &order)?;
    Ok(Json(
        orders::cancel_by_customer(&state.db, &state.outbox, &id).await?,
    ))
}

#[utoipa::path(
    get, path = "/orders", params(OrderQuery),
    responses(
        (status = 200, description = "A page of orders, newest first", body = OrderPage),
        (status = 400, description = "Bad cursor or limit", body = Problem),
        (status = 403, description = "Only an admin may list another user's orders", body = Problem),
    )
)]
/// The signed-in user's orders; an admin may name a `user_id`, or list everyone's by
/// leaving it out.
async fn list_orders(
    State(state): State<Store>,
    caller: MaybeCaller,
    Query(query): Query<OrderQuery>,
) -> Result<Json<OrderPage>, Problem> {
    let limit = check_limit(query.limit)?;
    if let Some(user) = &query.user_id {
        sloop_kit::validate::id("user_id", user, 100).map_err(Problem::bad_request)?;
    }
    let user = match (&caller.0, &query.user_id) {
        (Some(caller), Some(user)) if user != &caller.user_id && !caller.is_admin() => {
            return Err(Problem::forbidden(
                "only an admin may list another user's orders",
            ));
        }
        (Some(caller), None) if !caller.is_admin() => Some(caller.user_id.clone()),
        (_, user) => user.clone(),
    };
    let before = query
        .cursor
        .as_deref()
        .map(|c| {
            parse_uuid(c, "a cursor").map_err(|_| {
                Problem::bad_request(
                    "cursor must be an order id (UUID); pass `next_cursor` from the previous page",
                )
            })
        })
        .transpose()?;
    let mut items = orders::list(
        &state.db,
        user.as_deref(),
        query.status,
        before.as_deref(),
        limit + 1,
    )
    .await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|o| o.id.clone())
    } else {
        None
    };
    Ok(Json(OrderPage { items, next_cursor }))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sloop store service",
        description = "Catalogue, stock, search, and orders paid for through the order saga."
    ),
    paths(
        create_category,
        list_categories,
        create_product,
        get_product,
        update_product,
        change_stock,
        search_products,
        place_order,
        get_order,
        cancel_order,
        list_orders
    ),
    components(schemas(
        Category,
        Product,
        NewProduct,
        ProductPatch,
        StockChange,
        ProductPage,
        ProductSort,
        NewOrder,
        LineRequest,
        Order,
        OrderLine,
        OrderStatus,
        Transition,
        OrderPage,
        sloop_events::Money
    ))
)]
struct ApiDoc;
