//! SQL for users. One query text serves SQLite and PostgreSQL; every write runs in a
//! transaction so the outbox row announcing it can join the same transaction.

use sqlx::{AnyPool, FromRow};

use crate::model::{Status, User};

/// What can go wrong storing users, in the caller's terms.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no user has id {0}")]
    NotFound(String),
    #[error("a user with email {0} already exists")]
    DuplicateEmail(String),
    #[error("user {0} is deleted and can no longer change")]
    Deleted(String),
    #[error("user {0} was changed by another request meanwhile; fetch it and retry")]
    Concurrent(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
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

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        User {
            id: row.id,
            email: row.email,
            name: row.name,
            // The CHECK constraint admits only the three known values.
            status: Status::from_db(&row.status).unwrap_or(Status::Active),
            created_at: row.created_at,
            updated_at: row.updated_at,
            version: row.version,
        }
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

fn unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.is_unique_violation())
}

pub async fn insert(pool: &AnyPool, user: &User) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
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
    .execute(&mut *tx)
    .await;
    match result {
        Err(err) if unique_violation(&err) => Err(StoreError::DuplicateEmail(user.email.clone())),
        Err(err) => Err(err.into()),
        // The `user.created` outbox row will be written here, inside `tx`.
        Ok(_) => Ok(tx.commit().await?),
    }
}

pub async fn get(pool: &AnyPool, id: &str) -> Result<User, StoreError> {
    sqlx::query_as::<_, UserRow>(select_users!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .map(User::from)
        .ok_or_else(|| StoreError::NotFound(id.to_owned()))
}

/// How often an update re-reads and retries after another writer changed the row first.
const UPDATE_ATTEMPTS: usize = 3;

/// Applies `change` to the stored user and saves it, retrying when a concurrent writer got
/// there first (optimistic concurrency on `version`).
///
/// The read happens outside the write transaction on purpose: on SQLite a transaction that
/// reads and then writes must upgrade its lock, and in WAL mode that upgrade fails at once
/// with SQLITE_BUSY under concurrent writers (busy_timeout does not apply). A transaction
/// whose first statement writes waits for the lock instead.
pub async fn update(
    pool: &AnyPool,
    id: &str,
    now: &str,
    change: impl Fn(&mut User) -> Result<(), StoreError>,
) -> Result<User, StoreError> {
    for _ in 0..UPDATE_ATTEMPTS {
        let before = get(pool, id).await?;
        let mut user = before.clone();
        change(&mut user)?;
        if user == before {
            return Ok(user);
        }
        user.updated_at = now.to_owned();
        user.version += 1;
        let mut tx = pool.begin().await?;
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
        .execute(&mut *tx)
        .await;
        match result {
            Err(err) if unique_violation(&err) => {
                return Err(StoreError::DuplicateEmail(user.email.clone()));
            }
            Err(err) => return Err(err.into()),
            // Someone else changed it since we read it: read again and re-apply.
            Ok(done) if done.rows_affected() == 0 => continue,
            // The `user.updated` / `user.status_changed` outbox row will be written here.
            Ok(_) => {
                tx.commit().await?;
                return Ok(user);
            }
        }
    }
    Err(StoreError::Concurrent(id.to_owned()))
}

/// Users with ids after `after` (all when empty), oldest first, at most `limit`.
pub async fn list(
    pool: &AnyPool,
    after: &str,
    status: Option<Status>,
    limit: u32,
) -> Result<Vec<User>, StoreError> {
    let rows = match status {
        None => {
            sqlx::query_as::<_, UserRow>(select_users!("WHERE id > $1 ORDER BY id LIMIT $2"))
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        }
        Some(status) => {
            sqlx::query_as::<_, UserRow>(select_users!(
                "WHERE id > $1 AND status = $2 ORDER BY id LIMIT $3"
            ))
            .bind(after)
            .bind(status.as_str())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        }
    };
    Ok(rows.into_iter().map(User::from).collect())
}
