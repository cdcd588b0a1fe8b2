//! SQL for notifications and their deliveries. One query text serves SQLite and
//! PostgreSQL. A notification and its deliveries are written in the consumer's transaction,
//! so they exist exactly when the event is recorded as applied.

use sloop_kit::{Database, Tx};
use sqlx::FromRow;

use crate::model::{Channel, Delivery, DeliveryStatus, Kind, Notification};

/// What can go wrong storing notifications, in the caller's terms.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("you have no notification with id {0}")]
    NotFound(String),
    #[error("{what} {value:?} in the database is not one this version knows")]
    UnknownValue { what: &'static str, value: String },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// A notification about to be made from an event.
#[derive(Debug, Clone)]
pub struct Draft {
    pub user_id: String,
    pub kind: Kind,
    pub title: String,
    pub body: String,
    pub order_id: Option<String>,
    pub source_event_id: String,
}

#[derive(FromRow)]
struct NotificationRow {
    id: String,
    kind: String,
    title: String,
    body: String,
    order_id: Option<String>,
    created_at: String,
    read_at: Option<String>,
}

impl TryFrom<NotificationRow> for Notification {
    type Error = StoreError;

    fn try_from(row: NotificationRow) -> Result<Self, StoreError> {
        let kind = Kind::from_db(&row.kind).ok_or_else(|| StoreError::UnknownValue {
            what: "notification kind",
            value: row.kind.clone(),
        })?;
        Ok(Notification {
            id: row.id,
            kind,
            title: row.title,
            body: row.body,
            order_id: row.order_id,
            read: row.read_at.is_some(),
            created_at: row.created_at,
            read_at: row.read_at,
        })
    }
}

#[derive(FromRow)]
struct DeliveryRow {
    channel: String,
    status: String,
    attempts: i64,
    last_error: Option<String>,
    sent_at: Option<String>,
    updated_at: String,
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = StoreError;

    fn try_from(row: DeliveryRow) -> Result<Self, StoreError> {
        Ok(Delivery {
            channel: channel(&row.channel)?,
            status: DeliveryStatus::from_db(&row.status).ok_or_else(|| {
                StoreError::UnknownValue {
                    what: "delivery status",
                    value: row.status.clone(),
                }
            })?,
            attempts: row.attempts,
            last_error: row.last_error,
            sent_at: row.sent_at,
            updated_at: row.updated_at,
        })
    }
}

fn channel(value: &str) -> Result<Channel, StoreError> {
    Channel::from_db(value).ok_or_else(|| StoreError::UnknownValue {
        what: "channel",
        value: value.to_owned(),
    })
}

/// The notification columns, as a macro so queries stay `&'static str`.
macro_rules! select_notifications {
    ($rest:literal) => {
        concat!(
            "SELECT id, kind, title, body, order_id, created_at, read_at FROM notifications ",
            $rest
        )
    };
}

/// Makes the notification and one pending delivery per channel of its kind, due now.
/// Returns false, writing nothing, when a notification for the same event already exists.
pub async fn insert(
    tx: &mut Tx,
    draft: &Draft,
    now: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let id = uuid::Uuid::now_v7().to_string();
    // ON CONFLICT rather than catching the violation: on PostgreSQL a failed statement
    // aborts the whole transaction, and with it the consumer's record of the event.
    let inserted = sqlx::query(
        "INSERT INTO notifications (id, user_id, kind, title, body, order_id, source_event_id, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (source_event_id) DO NOTHING",
    )
    .bind(&id)
    .bind(&draft.user_id)
    .bind(draft.kind.as_str())
    .bind(&draft.title)
    .bind(&draft.body)
    .bind(draft.order_id.clone())
    .bind(&draft.source_event_id)
    .bind(now)
    .execute(tx.executor())
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    for channel in draft.kind.channels() {
        sqlx::query(
            "INSERT INTO deliveries (id, notification_id, channel, status, attempts, \
             next_attempt_ms, updated_at) VALUES ($1, $2, $3, 'pending', 0, $4, $5)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&id)
        .bind(channel.as_str())
        .bind(now_ms)
        .bind(now)
        .execute(tx.executor())
        .await?;
    }
    Ok(true)
}

/// `user_id`'s notification `id`; someone else's is as missing as one that never existed.
pub async fn get(db: &Database, user_id: &str, id: &str) -> Result<Notification, StoreError> {
    sqlx::query_as::<_, NotificationRow>(select_notifications!("WHERE id = $1 AND user_id = $2"))
        .bind(id)
        .bind(user_id)
        .fetch_optional(db.executor())
        .await?
        .map(Notification::try_from)
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(id.to_owned()))
}

/// The deliveries of notification `id`, in the order of its channels.
pub async fn deliveries(db: &Database, id: &str) -> Result<Vec<Delivery>, StoreError> {
    let rows = sqlx::query_as::<_, DeliveryRow>(
        "SELECT channel, status, attempts, last_error, sent_at, updated_at FROM deliveries \
         WHERE notification_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(db.executor())
    .await?;
    rows.into_iter().map(Delivery::try_from).collect()
}

/// `user_id`'s notifications older than `before` (all when `None`), newest first, at most
/// `limit`; only unread ones when `unread_only`.
pub async fn list(
    db: &Database,
    user_id: &str,
    before: Option<&str>,
    unread_only: bool,
    limit: u32,
) -> Result<Vec<Notification>, StoreError> {
    let limit = i64::from(limit);
    let query = match (before, unread_only) {
        (None, false) => sqlx::query_as::<_, NotificationRow>(select_notifications!(
            "WHERE user_id = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(user_id)
        .bind(limit),
        (None, true) => sqlx::query_as::<_, NotificationRow>(select_notifications!(
            "WHERE user_id = $1 AND read_at IS NULL ORDER BY id DESC LIMIT $2"
        ))
        .bind(user_id)
        .bind(limit),
        (Some(before), false) => sqlx::query_as::<_, NotificationRow>(select_notifications!(
            "WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        ))
        .bind(user_id)
        .bind(before.to_owned())
        .bind(limit),
        (Some(before), true) => sqlx::query_as::<_, NotificationRow>(select_notifications!(
            "WHERE user_id = $1 AND id < $2 AND read_at IS NULL ORDER BY id DESC LIMIT $3"
        ))
        .bind(user_id)
        .bind(before.to_owned())
        .bind(limit),
    };
    let rows = query.fetch_all(db.executor()).await?;
    rows.into_iter().map(Notification::try_from).collect()
}

/// Marks `user_id`'s notification `id` read. Idempotent: an already read one keeps the
/// time it was first read.
pub async fn mark_read(
    db: &Database,
    user_id: &str,
    id: &str,
    now: &str,
) -> Result<Notification, StoreError> {
    sqlx::query(
        "UPDATE notifications SET read_at = $1 \
         WHERE id = $2 AND user_id = $3 AND read_at IS NULL",
    )
    .bind(now)
    .bind(id)
    .bind(user_id)
    .execute(db.executor())
    .await?;
    get(db, user_id, id).await
}

/// Marks every unread notification of `user_id` read; returns how many were unread.
pub async fn mark_all_read(db: &Database, user_id: &str, now: &str) -> Result<u64, StoreError> {
    let done =
        sqlx::query("UPDATE notifications SET read_at = $1 WHERE user_id = $2 AND read_at IS NULL")
            .bind(now)
            .bind(user_id)
            .execute(db.executor())
            .await?;
    Ok(done.rows_affected())
}

pub async fn unread_count(db: &Database, user_id: &str) -> Result<i64, StoreError> {
    let (count,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL")
            .bind(user_id)
            .fetch_one(db.executor())
            .await?;
    Ok(count)
}

// --- The delivery worker's side -------------------------------------------------------

/// Ids of pending deliveries due at `now_ms`, longest waiting first, at most `limit`.
pub async fn due(db: &Database, now_ms: i64, limit: i64) -> Result<Vec<String>, StoreError> {
    let ids: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_ms <= $1 \
         ORDER BY next_attempt_ms LIMIT $2",
    )
    .bind(now_ms)
    .bind(limit)
    .fetch_all(db.executor())
    .await?;
    Ok(ids.into_iter().map(|(id,)| id).collect())
}

/// A delivery this worker holds for one attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub channel: Channel,
    /// The number of this attempt, from 1.
    pub attempt: i64,
}

/// Takes a due pending delivery for one attempt: counts the attempt and pushes it out by
/// `hold_ms`, so no other worker (here or in another instance) takes it meanwhile, and a
/// worker that dies mid-send lets it come due again. `None` when someone else has it.
pub async fn claim(
    db: &Database,
    id: &str,
    now: &str,
    now_ms: i64,
    hold_ms: i64,
) -> Result<Option<Claimed>, StoreError> {
    let done = sqlx::query(
        "UPDATE deliveries SET next_attempt_ms = $1, attempts = attempts + 1, updated_at = $2 \
         WHERE id = $3 AND status = 'pending' AND next_attempt_ms <= $4",
    )
    .bind(now_ms + hold_ms)
    .bind(now)
    .bind(id)
    .bind(now_ms)
    .execute(db.executor())
    .await?;
    if done.rows_affected() != 1 {
        return Ok(None);
    }
    let (channel_name, attempt): (String, i64) =
        sqlx::query_as("SELECT channel, attempts FROM deliveries WHERE id = $1")
            .bind(id)
            .fetch_one(db.executor())
            .await?;
    Ok(Some(Claimed {
        id: id.to_owned(),
        channel: channel(&channel_name)?,
        attempt,
    }))
}

/// Records a delivery as sent. It went out, so this holds even if the claim ran out.
pub async fn mark_sent(db: &Database, id: &str, now: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE deliveries SET status = 'sent', sent_at = $1, updated_at = $1, last_error = NULL \
         WHERE id = $2 AND status = 'pending'",
    )
    .bind(now)
    .bind(id)
    .execute(db.executor())
    .await?;
    Ok(())
}

/// Makes a failed attempt due again at `next_ms`. Only while the attempt is still the
/// latest: a worker whose claim ran out must not move a newer attempt's schedule.
pub async fn retry_at(
    db: &Database,
    claimed: &Claimed,
    error: &str,
    now: &str,
    next_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE deliveries SET next_attempt_ms = $1, last_error = $2, updated_at = $3 \
         WHERE id = $4 AND status = 'pending' AND attempts = $5",
    )
    .bind(next_ms)
    .bind(error)
    .bind(now)
    .bind(&claimed.id)
    .bind(claimed.attempt)
    .execute(db.executor())
    .await?;
    Ok(())
}

/// Gives a delivery up after its last attempt failed.
pub async fn mark_failed(
    db: &Database,
    claimed: &Claimed,
    error: &str,
    now: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE deliveries SET status = 'failed', last_error = $1, updated_at = $2 \
         WHERE id = $3 AND status = 'pending' AND attempts = $4",
    )
    .bind(error)
    .bind(now)
    .bind(&claimed.id)
    .bind(claimed.attempt)
    .execute(db.executor())
    .await?;
    Ok(())
}
