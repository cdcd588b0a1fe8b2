//! SQL for orders and the store's side of the saga. Placing an order reserves its stock in
//! the same transaction that records it and writes `OrderPlaced`; confirming and cancelling
//! are conditional on the order still pending, so a late payment answer, the timeout sweep
//! and the customer can race without double-releasing stock or announcing twice.

use std::collections::BTreeMap;

use metrics::{counter, histogram};
use sloop_events::{Money, store as events};
use sloop_kit::clock::{now_millis, now_rfc3339};
use sloop_kit::db::is_unique_violation;
use sloop_kit::outbox::OutboxError;
use sloop_kit::{Database, Outbox, Tx};
use sqlx::FromRow;

use crate::model::{NewOrder, Order, OrderLine, OrderStatus, Transition};

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("no order has id {0}")]
    NotFound(String),
    #[error("product {0} does not exist")]
    UnknownProduct(String),
    #[error("out of stock: product {product} has {available} left, the order asks for {wanted}")]
    OutOfStock {
        product: String,
        available: i64,
        wanted: i64,
    },
    #[error("an order is paid in one currency; these products are priced in {0} and {1}")]
    MixedCurrencies(String, String),
    #[error(
        "Idempotency-Key {0:?} was already used for a different order; use a new key for a new order"
    )]
    KeyReused(String),
    #[error("order {0} is {1} and can no longer be cancelled")]
    NotCancellable(String, &'static str),
    #[error("order {id} has status {status:?} in the database, which this version does not know")]
    UnknownStatus { id: String, status: String },
    #[error("the order's total is larger than any amount that can be charged; order fewer")]
    TotalOverflow,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError),
}

/// Whether [`place`] made the order or found it made by an earlier request with the same
/// key.
#[derive(Debug)]
pub enum Placed {
    Created(Order),
    Replayed(Order),
}

/// The same request always normalizes to the same text: lines merged per product and sorted.
pub fn normalize(order: &NewOrder) -> NewOrder {
    let mut quantities: BTreeMap<&str, u32> = BTreeMap::new();
    for line in &order.lines {
        let q = quantities.entry(&line.product_id).or_default();
        *q = q.saturating_add(line.quantity);
    }
    NewOrder {
        lines: quantities
            .into_iter()
            .map(|(product_id, quantity)| crate::model::LineRequest {
                product_id: product_id.to_owned(),
                quantity,
            })
            .collect(),
        payment_method: order.payment_method.clone(),
    }
}

/// Places `order` (already normalized) for `user_id`, due to be paid within `deadline_ms`.
pub async fn place(
    db: &Database,
    outbox: &Outbox,
    user_id: &str,
    order: &NewOrder,
    key: Option<&str>,
    deadline_ms: i64,
) -> Result<Placed, OrderError> {
    let request = serde_json::to_string(order).unwrap_or_default();
    if let Some(key) = key
        && let Some(existing) = replay(db, user_id, key, &request).await?
    {
        return Ok(existing);
    }
    let priced = price(db, order).await?;
    let total = total_of(&priced)?;
    let id = uuid::Uuid::now_v7().to_string();
    let (now, now_ms) = (now_rfc3339(), now_millis());
    let mut tx = db.begin().await?;
    // The order row first: on SQLite a write first takes the write lock at once, and a
    // concurrent request with the same key fails here before touching stock.
    let inserted = sqlx::query(
        "INSERT INTO orders (id, user_id, status, total_amount, currency, payment_method, \
         idempotency_key, request, created_at, created_at_ms, updated_at, deadline_ms) \
         VALUES ($1, $2, 'pending_payment', $3, $4, $5, $6, $7, $8, $9, $8, $10)",
    )
    .bind(&id)
    .bind(user_id)
    .bind(total.amount)
    .bind(&total.currency)
    .bind(&order.payment_method)
    .bind(key)
    .bind(key.map(|_| request.as_str()))
    .bind(&now)
    .bind(now_ms)
    .bind(now_ms + deadline_ms)
    .execute(tx.executor())
    .await;
    match inserted {
        Err(err) if is_unique_violation(&err) => {
            drop(tx);
            let key = key.unwrap_or_default();
            return replay(db, user_id, key, &request)
                .await?
                .ok_or_else(|| OrderError::KeyReused(key.to_owned()));
        }
        other => other?,
    };
    for line in &priced {
        reserve(&mut tx, line).await?;
        sqlx::query(
            "INSERT INTO order_lines (order_id, product_id, quantity, unit_amount, currency) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(&line.product_id)
        .bind(line.quantity)
        .bind(line.unit_price.amount)
        .bind(&line.unit_price.currency)
        .execute(tx.executor())
        .await?;
    }
    record_transition(&mut tx, &id, OrderStatus::PendingPayment, None).await?;
    let placed = events::OrderPlaced {
        order_id: id.clone(),
        user_id: user_id.to_owned(),
        lines: priced
            .iter()
            .map(|l| events::OrderLine {
                product_id: l.product_id.clone(),
                quantity: u32::try_from(l.quantity).unwrap_or(u32::MAX),
                unit_price: l.unit_price.clone(),
            })
            .collect(),
        total,
        payment_method: order.payment_method.clone(),
    };
    outbox
        .append(&mut tx, events::ORDER_PLACED, &id, &placed)
        .await?;
    tx.commit().await?;
    outbox.wake();
    counter!(crate::metrics::ORDERS, "service" => crate::NAME, "outcome" => "placed").increment(1);
    Ok(Placed::Created(get(db, &id).await?))
}

/// The order an earlier request with this key made: the same request answers it again,
/// another is refused.
async fn replay(
    db: &Database,
    user_id: &str,
    key: &str,
    request: &str,
) -> Result<Option<Placed>, OrderError> {
    let found: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT id, request FROM orders WHERE user_id = $1 AND idempotency_key = $2",
    )
    .bind(user_id)
    .bind(key)
    .fetch_optional(db.executor())
    .await?;
    match found {
        None => Ok(None),
        Some((id, stored)) if stored.as_deref() == Some(request) => {
            Ok(Some(Placed::Replayed(get(db, &id).await?)))
        }
        Some(_) => Err(OrderError::KeyReused(key.to_owned())),
    }
}

/// Takes `line.quantity` from stock, only if that much is there.
async fn reserve(tx: &mut Tx, line: &OrderLine) -> Result<(), OrderError> {
    let done = sqlx::query(
        "UPDATE inventory SET available = available - $1, updated_at = $2 \
         WHERE product_id = $3 AND available >= $1",
    )
    .bind(line.quantity)
    .bind(now_rfc3339())
    .bind(&line.product_id)
    .execute(tx.executor())
    .await?;
    if done.rows_affected() == 1 {
        return Ok(());
    }
    let (available,): (i64,) =
        sqlx::query_as("SELECT available FROM inventory WHERE product_id = $1")
            .bind(&line.product_id)
            .fetch_one(tx.executor())
            .await?;
    Err(OrderError::OutOfStock {
        product: line.product_id.clone(),
        available,
        wanted: line.quantity,
    })
}

/// Prices each line at the product's current price, in one currency.
async fn price(db: &Database, order: &NewOrder) -> Result<Vec<OrderLine>, OrderError> {
    let mut lines = Vec::with_capacity(order.lines.len());
    for line in &order.lines {
        let found: Option<(i64, String)> =
            sqlx::query_as("SELECT price_amount, currency FROM products WHERE id = $1")
                .bind(&line.product_id)
                .fetch_optional(db.executor())
                .await?;
        let (amount, currency) =
            found.ok_or_else(|| OrderError::UnknownProduct(line.product_id.clone()))?;
        lines.push(OrderLine {
            product_id: line.product_id.clone(),
            quantity: i64::from(line.quantity),
            unit_price: Money { amount, currency },
        });
    }
    Ok(lines)
}

fn total_of(lines: &[OrderLine]) -> Result<Money, OrderError> {
    let currency = lines
        .first()
        .map(|l| l.unit_price.currency.clone())
        .unwrap_or_default();
    let mut amount: i64 = 0;
    for line in lines {
        if line.unit_price.currency != currency {
            return Err(OrderError::MixedCurrencies(
                currency,
                line.unit_price.currency.clone(),
            ));
        }
        amount = line
            .unit_price
            .amount
            .checked_mul(line.quantity)
            .and_then(|sub| amount.checked_add(sub))
            .ok_or(OrderError::TotalOverflow)?;
    }
    Ok(Money { amount, currency })
}

async fn record_transition(
    tx: &mut Tx,
    order_id: &str,
    status: OrderStatus,
    reason: Option<&str>,
) -> Result<(), OrderError> {
    sqlx::query(
        "INSERT INTO order_history (order_id, seq, status, reason, at) \
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM order_history WHERE order_id = $1",
    )
    .bind(order_id)
    .bind(status.as_str())
    .bind(reason)
    .bind(now_rfc3339())
    .execute(tx.executor())
    .await?;
    Ok(())
}

#[derive(FromRow)]
struct OrderRow {
    id: String,
    user_id: String,
    status: String,
    total_amount: i64,
    currency: String,
    payment_method: String,
    reason: Option<String>,
    charge_id: Option<String>,
    created_at: String,
    updated_at: String,
}

macro_rules! select_orders {
    ($rest:literal) => {
        concat!(
            "SELECT id, user_id, status, total_amount, currency, payment_method, reason, \
             charge_id, created_at, updated_at FROM orders ",
            $rest
        )
    };
}

fn status_of(id: &str, status: &str) -> Result<OrderStatus, OrderError> {
    OrderStatus::from_db(status).ok_or_else(|| OrderError::UnknownStatus {
        id: id.to_owned(),
        status: status.to_owned(),
    })
}

/// An order with its lines and history.
pub async fn get(db: &Database, id: &str) -> Result<Order, OrderError> {
    let row = sqlx::query_as::<_, OrderRow>(select_orders!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.executor())
        .await?
        .ok_or_else(|| OrderError::NotFound(id.to_owned()))?;
    complete(db, row).await
}

async fn complete(db: &Database, row: OrderRow) -> Result<Order, OrderError> {
    let lines: Vec<(String, i64, i64, String)> = sqlx::query_as(
        "SELECT product_id, quantity, unit_amount, currency FROM order_lines \
         WHERE order_id = $1 ORDER BY product_id",
    )
    .bind(&row.id)
    .fetch_all(db.executor())
    .await?;
    let history: Vec<(String, Option<String>, String)> = sqlx::query_as(
        "SELECT status, reason, at FROM order_history WHERE order_id = $1 ORDER BY seq",
    )
    .bind(&row.id)
    .fetch_all(db.executor())
    .await?;
    let history = history
        .into_iter()
        .map(|(status, reason, at)| {
            Ok(Transition {
                status: status_of(&row.id, &status)?,
                reason,
                at,
            })
        })
        .collect::<Result<_, OrderError>>()?;
    Ok(Order {
        status: status_of(&row.id, &row.status)?,
        lines: lines
            .into_iter()
            .map(|(product_id, quantity, amount, currency)| OrderLine {
                product_id,
                quantity,
                unit_price: Money { amount, currency },
            })
            .collect(),
        total: Money {
            amount: row.total_amount,
            currency: row.currency,
        },
        id: row.id,
        user_id: row.user_id,
        payment_method: row.payment_method,
        reason: row.reason,
        charge_id: row.charge_id,
        created_at: row.created_at,
        updated_at: row.updated_at,
        history,
    })
}

/// Orders of `user_id` (everyone's when `None`), newest first, with ids before `before`.
pub async fn list(
    db: &Database,
    user_id: Option<&str>,
    status: Option<OrderStatus>,
    before: Option<&str>,
    limit: u32,
) -> Result<Vec<Order>, OrderError> {
    let rows = sqlx::query_as::<_, OrderRow>(select_orders!(
        "WHERE ($1 = '' OR user_id = $1) AND ($2 = '' OR status = $2) AND ($3 = '' OR id < $3) \
         ORDER BY id DESC LIMIT $4"
    ))
    .bind(user_id.unwrap_or(""))
    .bind(status.map(OrderStatus::as_str).unwrap_or(""))
    .bind(before.unwrap_or(""))
    .bind(i64::from(limit))
    .fetch_all(db.executor())
    .await?;
    let mut orders = Vec::with_capacity(rows.len());
    for row in rows {
        orders.push(complete(db, row).await?);
    }
    Ok(orders)
}

/// The facts about an order the saga's events carry.
#[derive(FromRow)]
struct Summary {
    user_id: String,
    total_amount: i64,
    currency: String,
    created_at_ms: i64,
}

async fn summary(tx: &mut Tx, order_id: &str) -> Result<Summary, OrderError> {
    sqlx::query_as::<_, Summary>(
        "SELECT user_id, total_amount, currency, created_at_ms FROM orders WHERE id = $1",
    )
    .bind(order_id)
    .fetch_optional(tx.executor())
    .await?
    .ok_or_else(|| OrderError::NotFound(order_id.to_owned()))
}

fn saga_ended(outcome: &'static str, created_at_ms: i64) {
    counter!(crate::metrics::ORDERS, "service" => crate::NAME, "outcome" => outcome).increment(1);
    let seconds = (now_millis() - created_at_ms).max(0) as f64 / 1000.0;
    histogram!(crate::metrics::SAGA_DURATION, "service" => crate::NAME, "outcome" => outcome)
        .record(seconds);
}

/// Payment succeeded: a pending order becomes confirmed. Returns false when the order had
/// already ended (cancelled by the timeout; payment refunds on `OrderCancelled`).
pub async fn confirm(
    tx: &mut Tx,
    outbox: &Outbox,
    order_id: &str,
    charge_id: &str,
) -> Result<bool, OrderError> {
    let done = sqlx::query(
        "UPDATE orders SET status = 'confirmed', charge_id = $1, updated_at = $2 \
         WHERE id = $3 AND status = 'pending_payment'",
    )
    .bind(charge_id)
    .bind(now_rfc3339())
    .bind(order_id)
    .execute(tx.executor())
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    record_transition(tx, order_id, OrderStatus::Confirmed, None).await?;
    let order = summary(tx, order_id).await?;
    let confirmed = events::OrderConfirmed {
        order_id: order_id.to_owned(),
        user_id: order.user_id,
        total: Money {
            amount: order.total_amount,
            currency: order.currency,
        },
        charge_id: charge_id.to_owned(),
    };
    outbox
        .append(tx, events::ORDER_CONFIRMED, order_id, &confirmed)
        .await?;
    saga_ended("confirmed", order.created_at_ms);
    Ok(true)
}

/// A pending order is cancelled: its stock goes back and `OrderCancelled` says why.
/// Returns false when it had already ended.
pub async fn cancel(
    tx: &mut Tx,
    outbox: &Outbox,
    order_id: &str,
    reason: &str,
) -> Result<bool, OrderError> {
    let now = now_rfc3339();
    let done = sqlx::query(
        "UPDATE orders SET status = 'cancelled', reason = $1, updated_at = $2 \
         WHERE id = $3 AND status = 'pending_payment'",
    )
    .bind(reason)
    .bind(&now)
    .bind(order_id)
    .execute(tx.executor())
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    release_stock(tx, order_id, &now).await?;
    record_transition(tx, order_id, OrderStatus::Cancelled, Some(reason)).await?;
    let order = summary(tx, order_id).await?;
    let cancelled = events::OrderCancelled {
        order_id: order_id.to_owned(),
        user_id: order.user_id,
        total: Money {
            amount: order.total_amount,
            currency: order.currency,
        },
        reason: reason.to_owned(),
    };
    outbox
        .append(tx, events::ORDER_CANCELLED, order_id, &cancelled)
        .await?;
    saga_ended("cancelled", order.created_at_ms);
    Ok(true)
}

/// Puts an order's units back, one line at a time in product order: the order placing takes
/// stock rows in, so a placement and a cancellation never wait on each other in a cycle.
async fn release_stock(tx: &mut Tx, order_id: &str, now: &str) -> Result<(), OrderError> {
    let lines: Vec<(String, i64)> = sqlx::query_as(
        "SELECT product_id, quantity FROM order_lines WHERE order_id = $1 ORDER BY product_id",
    )
    .bind(order_id)
    .fetch_all(tx.executor())
    .await?;
    for (product_id, quantity) in lines {
        sqlx::query(
            "UPDATE inventory SET available = available + $1, updated_at = $2 \
             WHERE product_id = $3",
        )
        .bind(quantity)
        .bind(now)
        .bind(&product_id)
        .execute(tx.executor())
        .await?;
    }
    Ok(())
}

/// The customer cancels their pending order.
pub async fn cancel_by_customer(
    db: &Database,
    outbox: &Outbox,
    order_id: &str,
) -> Result<Order, OrderError> {
    let mut tx = db.begin().await?;
    let cancelled = cancel(&mut tx, outbox, order_id, "cancelled by the customer").await?;
    tx.commit().await?;
    outbox.wake();
    let order = get(db, order_id).await?;
    if !cancelled && order.status != OrderStatus::Cancelled {
        return Err(OrderError::NotCancellable(
            order_id.to_owned(),
            order.status.as_str(),
        ));
    }
    Ok(order)
}

async fn cancel_overdue(
    db: &Database,
    outbox: &Outbox,
    id: &str,
    reason: &str,
) -> Result<bool, OrderError> {
    let mut tx = db.begin().await?;
    let cancelled = cancel(&mut tx, outbox, id, reason).await?;
    tx.commit().await?;
    Ok(cancelled)
}

/// Cancels pending orders past their deadline (timeout compensation). Returns how many.
pub async fn expire_overdue(
    db: &Database,
    outbox: &Outbox,
    reason: &str,
    batch: i64,
) -> Result<usize, OrderError> {
    let overdue: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM orders WHERE status = 'pending_payment' AND deadline_ms < $1 \
         ORDER BY deadline_ms LIMIT $2",
    )
    .bind(now_millis())
    .bind(batch)
    .fetch_all(db.executor())
    .await?;
    let mut expired = 0;
    for (id,) in overdue {
        // One order that cannot be cancelled must not hold up the ones behind it.
        match cancel_overdue(db, outbox, &id, reason).await {
            Ok(true) => {
                expired += 1;
                tracing::warn!(order_id = %id, "payment did not complete in time; order cancelled");
            }
            Ok(false) => {}
            Err(err) => {
                tracing::error!(order_id = %id, error = %err, "cannot cancel overdue order")
            }
        }
    }
    if expired > 0 {
        outbox.wake();
    }
    Ok(expired)
}
