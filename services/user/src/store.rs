//! SQL for users. One query text serves SQLite and PostgreSQL; every write runs in a
//! transaction with the outbox row announcing it, so an event exists exactly when the
//! change it describes does.

use sloop_events::user as events;
use sloop_kit::Outbox;
use sloop_kit::db::is_unique_violation;
use sloop_kit::outbox::OutboxError;
use sloop_kit::{Database, Tx};
use sqlx::FromRow;

use crate::model::{Status, User};

/// What can go wrong storing users, in the caller's terms.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no user has id {0}")]
    NotFound(String),
    #[error("a user with email {0} already exists")]
    DuplicateEmail(String),
    #[error("user {0} already exists with a different email or name")]
    IdTaken(String),
    #[error("user {0} is deleted and can no longer change")]
    Deleted(String),
    #[error("user {0} was changed by another request meanwhile; fetch it and retry")]
    Concurrent(String),
    #[error("user {id} has status {status:?} in the database, which this version does not know")]
    UnknownStatus { id: String, status: String },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError),
}

#[derive(FromRow)]
struct UserRow {
    id: String,
    email: String,
    name: String,
    status: String,
    created_at: String,
    updated_at: String,
    version: i64,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    /// A status the CHECK constraint should have kept out is an error, never a guess:
    /// reading it as `active` would quietly let a suspended user back in.
    fn try_from(row: UserRow) -> Result<Self, StoreError> {
        let status = Status::from_db(&row.status).ok_or_else(|| StoreError::UnknownStatus {
            id: row.id.clone(),
            status: row.status.clone(),
        })?;
        Ok(User {
            id: row.id,
            email: row.email,
            name: row.name,
            status,
            created_at: row.created_at,
            updated_at: row.updated_at,
            version: row.version,
        })
    }
}

/// The user columns, as a macro so queries stay `&'static str` (what sqlx accepts unwrapped).
macro_rules! select_users {
    ($rest:literal) => {
        concat!(
            "SELECT id, email, name, status, created_at, updated_at, version FROM users ",
            $rest
        )
    };
}

/// Whether [`insert`] made the user or found it already made (a retried request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Created,
    AlreadyThere,
}

/// Creates `user` and writes `UserCreated`. Creating the same id with the same email and
/// name again is a no-op, so a caller that lost the response can retry safely.
pub async fn insert(db: &Database, outbox: &Outbox, user: &User) -> Result<Inserted, StoreError> {
    let mut tx = db.begin().await?;
    let result = sqlx::query(
        "INSERT INTO users (id, email, name, status, created_at, updated_at, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&user.id)
    .bind(&user.email)
    .bind(&user.name)
    .bind(user.status.as_str())
    .bind(&user.created_at)
    .bind(&user.updated_at)
    .bind(user.version)
    .execute(tx.executor())
    .await;
    match result {
        Ok(_) => {
            let created = events::UserCreated {
                id: user.id.clone(),
                email: user.email.clone(),
                name: user.name.clone(),
                status: user.status.into(),
                version: user.version,
            };
            outbox
                .append(&mut tx, events::CREATED, &user.id, &created)
                .await?;
            tx.commit().await?;
            outbox.wake();
            Ok(Inserted::Created)
        }
        Err(err) if is_unique_violation(&err) => {
            drop(tx);
            match get(db, &user.id).await {
                Ok(existing) if existing.email == user.email && existing.name == user.name => {
                    Ok(Inserted::AlreadyThere)
                }
                Ok(_) => Err(StoreError::IdTaken(user.id.clone())),
                Err(StoreError::NotFound(_)) => Err(StoreError::DuplicateEmail(user.email.clone())),
                Err(other) => Err(other),
            }
        }
        Err(err) => Err(err.into()),
    }
}

pub async fn get(db: &Database, id: &str) -> Result<User, StoreError> {
    sqlx::query_as::<_, UserRow>(select_users!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.executor())
        .await?
        .map(User::try_from)
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(id.to_owned()))
}

/// How often an update re-reads and retries after another writer changed the row first.
const UPDATE_ATTEMPTS: usize = 3;

/// Applies `change` to the stored user and saves it with the events it implies, retrying
/// when a concurrent writer got there first (optimistic concurrency on `version`).
///
/// The read happens outside the write transaction on purpose: on SQLite a transaction that
/// reads and then writes must upgrade its lock, and in WAL mode that upgrade fails at once
/// with SQLITE_BUSY under concurrent writers (busy_timeout does not apply). A transaction
/// whose first statement writes waits for the lock instead.
pub async fn update(
    db: &Database,
    outbox: &Outbox,
    id: &str,
    now: &str,
    change: impl Fn(&mut User) -> Result<(), StoreError>,
) -> Result<User, StoreError> {
    for _ in 0..UPDATE_ATTEMPTS {
        let before = get(db, id).await?;
        let mut user = before.clone();
        change(&mut user)?;
        if user == before {
            return Ok(user);
        }
        user.updated_at = now.to_owned();
        user.version += 1;
        let mut tx = db.begin().await?;
        let result = sqlx::query(
            "UPDATE users SET email = $1, name = $2, status = $3, updated_at = $4, version = $5 \
             WHERE id = $6 AND version = $7",
        )
        .bind(&user.email)
        .bind(&user.name)
        .bind(user.status.as_str())
        .bind(&user.updated_at)
        .bind(user.version)
        .bind(&user.id)
        .bind(before.version)
        .execute(tx.executor())
        .await;
        match result {
            Err(err) if is_unique_violation(&err) => {
                return Err(StoreError::DuplicateEmail(user.email.clone()));
            }
            Err(err) => return Err(err.into()),
            // Someone else changed it since we read it: read again and re-apply.
            Ok(done) if done.rows_affected() == 0 => continue,
            Ok(_) => {
                announce(&mut tx, outbox, &before, &user).await?;
                tx.commit().await?;
                outbox.wake();
                return Ok(user);
            }
        }
    }
    Err(StoreError::Concurrent(id.to_owned()))
}

/// Writes the events a change from `before` to `after` implies.
async fn announce(
    tx: &mut Tx,
    outbox: &Outbox,
    before: &User,
    after: &User,
) -> Result<(), StoreError> {
    if before.email != after.email || before.name != after.name {
        let updated = events::UserUpdated {
            id: after.id.clone(),
            email: after.email.clone(),
            name: after.name.clone(),
            version: after.version,
        };
        outbox
            .append(tx, events::UPDATED, &after.id, &updated)
            .await?;
    }
    if before.status != after.status {
        let changed = events::UserStatusChanged {
            id: after.id.clone(),
            status: after.status.into(),
            previous_status: before.status.into(),
            version: after.version,
        };
        outbox
            .append(tx, events::STATUS_CHANGED, &after.id, &changed)
            .await?;
    }
    Ok(())
}

/// Users with ids after `after` (all when empty), oldest first, at most `limit`.
pub async fn list(
    db: &Database,
    after: &str,
    status: Option<Status>,
    limit: u32,
) -> Result<Vec<User>, StoreError> {
    let rows = match status {
        None => {
            sqlx::query_as::<_, UserRow>(select_users!("WHERE id > $1 ORDER BY id LIMIT $2"))
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(db.executor())
                .await?
        }
        Some(status) => {
            sqlx::query_as::<_, UserRow>(select_users!(
                "WHERE id > $1 AND status = $2 ORDER BY id LIMIT $3"
            ))
            .bind(after)
            .bind(status.as_str())
            .bind(i64::from(limit))
            .fetch_all(db.executor())
            .await?
        }
    };
    rows.into_iter().map(User::try_from).collect()
}
