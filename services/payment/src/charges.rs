//! SQL for charges, and carrying a charge through the provider. Every state change is
//! conditional on the state it leaves (`WHERE status = 'pending'`), so a worker, a request
//! and the saga's cancellation racing on one charge never both win.

use sloop_events::{Money, payment as events};
use sloop_kit::clock::{now_millis, now_rfc3339};
use sloop_kit::outbox::OutboxError;
use sloop_kit::{Database, Outbox, Tx};
use sqlx::FromRow;

use crate::model::{Charge, ChargeStatus};
use crate::provider::{Answer, Provider};

/// What can go wrong with charges.
#[derive(Debug, thiserror::Error)]
pub enum ChargeError {
    #[error("no charge has id {0}")]
    NotFound(String),
    #[error("charge {id} has status {status:?} in the database, which this version does not know")]
    UnknownStatus { id: String, status: String },
    #[error("charge {0} is {1}, and only a succeeded charge can be refunded")]
    NotRefundable(String, &'static str),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError),
}

#[derive(FromRow)]
struct ChargeRow {
    id: String,
    order_id: String,
    amount: i64,
    currency: String,
    payment_method: String,
    status: String,
    reason: Option<String>,
    provider_reference: Option<String>,
    attempts: i64,
    created_at: String,
    updated_at: String,
}

impl TryFrom<ChargeRow> for Charge {
    type Error = ChargeError;

    fn try_from(row: ChargeRow) -> Result<Self, ChargeError> {
        let status =
            ChargeStatus::from_db(&row.status).ok_or_else(|| ChargeError::UnknownStatus {
                id: row.id.clone(),
                status: row.status.clone(),
            })?;
        Ok(Charge {
            id: row.id,
            order_id: row.order_id,
            amount: Money {
                amount: row.amount,
                currency: row.currency,
            },
            payment_method: row.payment_method,
            status,
            reason: row.reason,
            provider_reference: row.provider_reference,
            attempts: row.attempts,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

macro_rules! select_charges {
    ($rest:literal) => {
        concat!(
            "SELECT id, order_id, amount, currency, payment_method, status, reason, \
             provider_reference, attempts, created_at, updated_at FROM charges ",
            $rest
        )
    };
}

/// Who takes a new pending charge to the provider.
#[derive(Debug, Clone, Copy)]
pub enum Taker {
    /// The charge worker, when it next looks.
    Worker,
    /// The caller, at once: the charge starts claimed for this long, one attempt counted.
    Caller { claim_ms: i64 },
}

/// Records a pending charge for `order_id` unless the order has one already. Returns
/// whether this call made it.
pub async fn insert_pending(
    tx: &mut Tx,
    order_id: &str,
    amount: &Money,
    method: &str,
    taker: Taker,
) -> Result<bool, ChargeError> {
    let now = now_rfc3339();
    let (due_ms, attempts) = match taker {
        Taker::Worker => (now_millis(), 0),
        Taker::Caller { claim_ms } => (now_millis() + claim_ms, 1),
    };
    let done = sqlx::query(
        "INSERT INTO charges (id, order_id, amount, currency, payment_method, status, \
         next_attempt_ms, attempts, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'pending', $6, $8, $7, $7) \
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(order_id)
    .bind(amount.amount)
    .bind(&amount.currency)
    .bind(method)
    .bind(due_ms)
    .bind(&now)
    .bind(attempts)
    .execute(tx.executor())
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn get(db: &Database, id: &str) -> Result<Charge, ChargeError> {
    sqlx::query_as::<_, ChargeRow>(select_charges!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.executor())
        .await?
        .map(Charge::try_from)
        .transpose()?
        .ok_or_else(|| ChargeError::NotFound(id.to_owned()))
}

pub async fn by_order(db: &Database, order_id: &str) -> Result<Option<Charge>, ChargeError> {
    sqlx::query_as::<_, ChargeRow>(select_charges!("WHERE order_id = $1"))
        .bind(order_id)
        .fetch_optional(db.executor())
        .await?
        .map(Charge::try_from)
        .transpose()
}

/// Pending charges that are due, oldest first.
pub async fn due(db: &Database, limit: i64) -> Result<Vec<String>, ChargeError> {
    let ids: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM charges WHERE status = 'pending' AND next_attempt_ms <= $1 \
         ORDER BY next_attempt_ms LIMIT $2",
    )
    .bind(now_millis())
    .bind(limit)
    .fetch_all(db.executor())
    .await?;
    Ok(ids.into_iter().map(|(id,)| id).collect())
}

/// Takes a due pending charge for one provider call: pushes it out by `claim_ms` so no one
/// else takes it meanwhile, and counts the attempt. False when someone else has it.
pub async fn claim(db: &Database, id: &str, claim_ms: i64) -> Result<bool, ChargeError> {
    let now = now_millis();
    let done = sqlx::query(
        "UPDATE charges SET next_attempt_ms = $1, attempts = attempts + 1 \
         WHERE id = $2 AND status = 'pending' AND next_attempt_ms <= $3",
    )
    .bind(now + claim_ms)
    .bind(id)
    .bind(now)
    .execute(db.executor())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// How hard the service tries a provider that keeps erroring.
#[derive(Debug, Clone, Copy)]
pub struct Attempts {
    pub max: i64,
    /// How long a claimed charge is held before another worker may try it.
    pub claim_ms: i64,
    pub first_backoff_ms: i64,
}

impl Default for Attempts {
    fn default() -> Self {
        Self {
            max: 5,
            claim_ms: 30_000,
            first_backoff_ms: 200,
        }
    }
}

/// Calls the provider for a claimed charge and records the answer with its event. A
/// transient error leaves it pending with a backoff, or fails it after the last attempt.
pub async fn process(
    db: &Database,
    outbox: &Outbox,
    provider: &Provider,
    attempts: Attempts,
    id: &str,
) -> Result<Charge, ChargeError> {
    let charge = get(db, id).await?;
    if charge.status != ChargeStatus::Pending {
        // Voided (its order was cancelled) between the claim and now: never charge it.
        return Ok(charge);
    }
    let answer = provider.charge(&charge.id, &charge.payment_method).await;
    match answer {
        Ok(Answer::Approved { reference }) => succeed(db, outbox, &charge, &reference).await?,
        Ok(Answer::Declined { reason }) => fail(db, outbox, &charge, &reason).await?,
        Err(err) if charge.attempts >= attempts.max => {
            let reason = format!("{err}, {} attempts", charge.attempts);
            fail(db, outbox, &charge, &reason).await?;
        }
        Err(err) => {
            let backoff = attempts.first_backoff_ms << (charge.attempts - 1).clamp(0, 10);
            tracing::warn!(charge_id = %charge.id, attempt = charge.attempts, error = %err, "provider failed; retrying later");
            sqlx::query(
                "UPDATE charges SET next_attempt_ms = $1 WHERE id = $2 AND status = 'pending'",
            )
            .bind(now_millis() + backoff)
            .bind(&charge.id)
            .execute(db.executor())
            .await?;
        }
    }
    get(db, id).await
}

async fn succeed(
    db: &Database,
    outbox: &Outbox,
    charge: &Charge,
    reference: &str,
) -> Result<(), ChargeError> {
    let mut tx = db.begin().await?;
    let done = sqlx::query(
        "UPDATE charges SET status = 'succeeded', provider_reference = $1, updated_at = $2 \
         WHERE id = $3 AND status = 'pending'",
    )
    .bind(reference)
    .bind(now_rfc3339())
    .bind(&charge.id)
    .execute(tx.executor())
    .await?;
    if done.rows_affected() == 1 {
        let data = events::PaymentSucceeded {
            order_id: charge.order_id.clone(),
            charge_id: charge.id.clone(),
            amount: charge.amount.clone(),
        };
        outbox
            .append(&mut tx, events::SUCCEEDED, &charge.order_id, &data)
            .await?;
        tracing::info!(charge_id = %charge.id, order_id = %charge.order_id, "charge succeeded");
    } else {
        // The order was cancelled while the provider was charging: pay it back, in the
        // same transaction, so the approval is recorded as a refund or not at all.
        sqlx::query("UPDATE charges SET provider_reference = $1 WHERE id = $2")
            .bind(reference)
            .bind(&charge.id)
            .execute(tx.executor())
            .await?;
        let reason = "order cancelled while the charge was in flight";
        refund_in(&mut tx, outbox, charge, reason, ChargeStatus::Voided).await?;
    }
    tx.commit().await?;
    outbox.wake();
    Ok(())
}

async fn fail(
    db: &Database,
    outbox: &Outbox,
    charge: &Charge,
    reason: &str,
) -> Result<(), ChargeError> {
    let mut tx = db.begin().await?;
    let done = sqlx::query(
        "UPDATE charges SET status = 'failed', reason = $1, updated_at = $2 \
         WHERE id = $3 AND status = 'pending'",
    )
    .bind(reason)
    .bind(now_rfc3339())
    .bind(&charge.id)
    .execute(tx.executor())
    .await?;
    if done.rows_affected() == 1 {
        let data = events::PaymentFailed {
            order_id: charge.order_id.clone(),
            charge_id: charge.id.clone(),
            reason: reason.to_owned(),
        };
        outbox
            .append(&mut tx, events::FAILED, &charge.order_id, &data)
            .await?;
        tx.commit().await?;
        outbox.wake();
        tracing::info!(charge_id = %charge.id, order_id = %charge.order_id, %reason, "charge failed");
    }
    Ok(())
}

/// What cancelling an order did to its charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// Not charged yet: it never will be (or, if the provider is mid-call, it is refunded
    /// when the answer comes).
    Voided,
    Refunded,
    Nothing,
}

/// The order was cancelled: void its pending charge or refund its succeeded one, in `tx`.
/// An order with no charge yet gets a voided one, so a charge that arrives later (a
/// replayed `OrderPlaced`, a `POST /charges`) finds it and never charges.
pub async fn cancel_order(
    tx: &mut Tx,
    outbox: &Outbox,
    order_id: &str,
    total: &Money,
    reason: &str,
) -> Result<Cancelled, ChargeError> {
    let now = now_rfc3339();
    let placeholder = sqlx::query(
        "INSERT INTO charges (id, order_id, amount, currency, payment_method, status, reason, \
         next_attempt_ms, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'none', 'voided', $5, $6, $7, $7) \
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(order_id)
    .bind(total.amount)
    .bind(&total.currency)
    .bind(reason)
    .bind(now_millis())
    .bind(&now)
    .execute(tx.executor())
    .await?;
    if placeholder.rows_affected() == 1 {
        return Ok(Cancelled::Voided);
    }
    let voided = sqlx::query(
        "UPDATE charges SET status = 'voided', reason = $1, updated_at = $2 \
         WHERE order_id = $3 AND status = 'pending'",
    )
    .bind(reason)
    .bind(&now)
    .bind(order_id)
    .execute(tx.executor())
    .await?;
    if voided.rows_affected() == 1 {
        return Ok(Cancelled::Voided);
    }
    let row = sqlx::query_as::<_, ChargeRow>(select_charges!("WHERE order_id = $1"))
        .bind(order_id)
        .fetch_optional(tx.executor())
        .await?;
    match row.map(Charge::try_from).transpose()? {
        Some(charge) if charge.status == ChargeStatus::Succeeded => {
            refund_in(tx, outbox, &charge, reason, ChargeStatus::Succeeded).await?;
            Ok(Cancelled::Refunded)
        }
        _ => Ok(Cancelled::Nothing),
    }
}

/// Refunds a charge that is in `from` (succeeded or voided-after-approval), in `tx`.
async fn refund_in(
    tx: &mut Tx,
    outbox: &Outbox,
    charge: &Charge,
    reason: &str,
    from: ChargeStatus,
) -> Result<bool, ChargeError> {
    let done = sqlx::query(
        "UPDATE charges SET status = 'refunded', reason = $1, updated_at = $2 \
         WHERE id = $3 AND status = $4",
    )
    .bind(reason)
    .bind(now_rfc3339())
    .bind(&charge.id)
    .bind(from.as_str())
    .execute(tx.executor())
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO refunds (id, charge_id, amount, reason, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(&charge.id)
    .bind(charge.amount.amount)
    .bind(reason)
    .bind(now_rfc3339())
    .execute(tx.executor())
    .await?;
    let data = events::PaymentRefunded {
        order_id: charge.order_id.clone(),
        charge_id: charge.id.clone(),
        amount: charge.amount.clone(),
        reason: reason.to_owned(),
    };
    outbox
        .append(tx, events::REFUNDED, &charge.order_id, &data)
        .await?;
    tracing::info!(charge_id = %charge.id, order_id = %charge.order_id, %reason, "charge refunded");
    Ok(true)
}

/// Refunds a succeeded charge on request.
pub async fn refund(
    db: &Database,
    outbox: &Outbox,
    id: &str,
    reason: &str,
) -> Result<Charge, ChargeError> {
    let charge = get(db, id).await?;
    match charge.status {
        ChargeStatus::Refunded => return Ok(charge),
        ChargeStatus::Succeeded => {}
        other => return Err(ChargeError::NotRefundable(id.to_owned(), other.as_str())),
    }
    let mut tx = db.begin().await?;
    let refunded = refund_in(&mut tx, outbox, &charge, reason, ChargeStatus::Succeeded).await?;
    tx.commit().await?;
    outbox.wake();
    if !refunded {
        // Changed meanwhile (refunded by the saga, most likely): report what it is now.
        let now = get(db, id).await?;
        if now.status != ChargeStatus::Refunded {
            return Err(ChargeError::NotRefundable(
                id.to_owned(),
                now.status.as_str(),
            ));
        }
    }
    get(db, id).await
}
