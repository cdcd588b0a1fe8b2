//! SQL for credentials and refresh tokens, portable between SQLite and PostgreSQL. Writes
//! that decide a race (rotating a refresh token, activating a registration) are single
//! conditional statements, so the database settles who won.

use sloop_kit::{Database, Tx};
use sqlx::FromRow;

use sloop_kit::db::is_unique_violation;

/// Where an account is. `pending` accounts are registrations not yet confirmed by the user
/// service; they cannot sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    Pending,
    Active,
    Suspended,
    Deleted,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deleted => "deleted",
        }
    }

    fn from_db(value: &str) -> Option<Self> {
        Some(match value {
            "pending" => Self::Pending,
            "active" => Self::Active,
            "suspended" => Self::Suspended,
            "deleted" => Self::Deleted,
            _ => return None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("an account with email {0} already exists")]
    DuplicateEmail(String),
    #[error("account {id} has status {status:?} in the database, which this version does not know")]
    UnknownStatus { id: String, status: String },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// What auth knows of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user_id: String,
    pub email: String,
    pub password_hash: String,
    pub roles: Vec<String>,
    pub status: AccountStatus,
    pub profile_version: i64,
    pub created_at_ms: i64,
}

#[derive(FromRow)]
struct CredentialsRow {
    user_id: String,
    email: String,
    password_hash: String,
    roles: String,
    status: String,
    profile_version: i64,
    created_at_ms: i64,
}

impl TryFrom<CredentialsRow> for Credentials {
    type Error = StoreError;

    fn try_from(row: CredentialsRow) -> Result<Self, StoreError> {
        let status =
            AccountStatus::from_db(&row.status).ok_or_else(|| StoreError::UnknownStatus {
                id: row.user_id.clone(),
                status: row.status.clone(),
            })?;
        Ok(Self {
            user_id: row.user_id,
            email: row.email,
            password_hash: row.password_hash,
            roles: row
                .roles
                .split(',')
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
            status,
            profile_version: row.profile_version,
            created_at_ms: row.created_at_ms,
        })
    }
}

macro_rules! select_credentials {
    ($rest:literal) => {
        concat!(
            "SELECT user_id, email, password_hash, roles, status, profile_version, created_at_ms \
             FROM credentials ",
            $rest
        )
    };
}

pub async fn by_email(db: &Database, email: &str) -> Result<Option<Credentials>, StoreError> {
    sqlx::query_as::<_, CredentialsRow>(select_credentials!("WHERE email = $1"))
        .bind(email)
        .fetch_optional(db.executor())
        .await?
        .map(Credentials::try_from)
        .transpose()
}

pub async fn by_id(db: &Database, user_id: &str) -> Result<Option<Credentials>, StoreError> {
    sqlx::query_as::<_, CredentialsRow>(select_credentials!("WHERE user_id = $1"))
        .bind(user_id)
        .fetch_optional(db.executor())
        .await?
        .map(Credentials::try_from)
        .transpose()
}

/// Records a registration that is not confirmed yet.
pub async fn insert_pending(
    db: &Database,
    account: &Credentials,
    now_ms: i64,
) -> Result<(), StoreError> {
    let result = sqlx::query(
        "INSERT INTO credentials (user_id, email, password_hash, roles, status, \
         profile_version, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5)",
    )
    .bind(&account.user_id)
    .bind(&account.email)
    .bind(&account.password_hash)
    .bind(account.roles.join(","))
    .bind(now_ms)
    .execute(db.executor())
    .await;
    match result {
        Err(err) if is_unique_violation(&err) => {
            Err(StoreError::DuplicateEmail(account.email.clone()))
        }
        other => other.map(|_| ()).map_err(StoreError::from),
    }
}

/// A retried registration of a pending account takes the new password.
pub async fn renew_pending(
    db: &Database,
    user_id: &str,
    password_hash: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE credentials SET password_hash = $1, updated_at_ms = $2 \
         WHERE user_id = $3 AND status = 'pending'",
    )
    .bind(password_hash)
    .bind(now_ms)
    .bind(user_id)
    .execute(db.executor())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The user service confirmed the profile: the account can sign in.
pub async fn activate(
    db: &Database,
    user_id: &str,
    profile_version: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE credentials SET status = 'active', updated_at_ms = $1, \
         profile_version = CASE WHEN profile_version > $2 THEN profile_version ELSE $2 END \
         WHERE user_id = $3 AND status = 'pending'",
    )
    .bind(now_ms)
    .bind(profile_version)
    .bind(user_id)
    .execute(db.executor())
    .await?;
    Ok(())
}

/// The profile certainly was not made: forget the registration.
pub async fn delete_pending(db: &Database, user_id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM credentials WHERE user_id = $1 AND status = 'pending'")
        .bind(user_id)
        .execute(db.executor())
        .await?;
    Ok(())
}

/// Applies the user service's status for `user_id` if it is newer than what auth has.
/// Returns whether anything changed. A pending registration takes it too: then its
/// activation (which only moves `pending` rows) leaves the newer status in place.
pub async fn apply_status(
    tx: &mut Tx,
    user_id: &str,
    status: AccountStatus,
    version: i64,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE credentials SET status = $1, profile_version = $2, updated_at_ms = $3 \
         WHERE user_id = $4 AND profile_version < $2",
    )
    .bind(status.as_str())
    .bind(version)
    .bind(now_ms)
    .bind(user_id)
    .execute(tx.executor())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Applies a changed email if it is newer than what auth has.
pub async fn apply_email(
    tx: &mut Tx,
    user_id: &str,
    email: &str,
    version: i64,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE credentials SET email = $1, profile_version = $2, updated_at_ms = $3 \
         WHERE user_id = $4 AND profile_version < $2",
    )
    .bind(email)
    .bind(version)
    .bind(now_ms)
    .bind(user_id)
    .execute(tx.executor())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A refresh token as stored.
#[derive(Debug, Clone, FromRow)]
pub struct RefreshRow {
    pub family_id: String,
    pub user_id: String,
    pub rotated_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

pub async fn insert_refresh(
    db: &Database,
    token_hash: &str,
    family_id: &str,
    user_id: &str,
    now_ms: i64,
    expires_at_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, issued_at_ms, expires_at_ms) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(family_id)
    .bind(user_id)
    .bind(now_ms)
    .bind(expires_at_ms)
    .execute(db.executor())
    .await?;
    Ok(())
}

/// Marks a live token rotated. Exactly one of several concurrent refreshes with the same
/// token wins; the others see it rotated, which is reuse.
pub async fn claim_refresh(
    db: &Database,
    token_hash: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE refresh_tokens SET rotated_at_ms = $1 WHERE token_hash = $2 \
         AND rotated_at_ms IS NULL AND revoked_at_ms IS NULL AND expires_at_ms > $1",
    )
    .bind(now_ms)
    .bind(token_hash)
    .execute(db.executor())
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn refresh_row(
    db: &Database,
    token_hash: &str,
) -> Result<Option<RefreshRow>, StoreError> {
    Ok(sqlx::query_as::<_, RefreshRow>(
        "SELECT family_id, user_id, rotated_at_ms, revoked_at_ms \
         FROM refresh_tokens WHERE token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(db.executor())
    .await?)
}

pub async fn revoke_family(db: &Database, family_id: &str, now_ms: i64) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at_ms = $1 WHERE family_id = $2 AND revoked_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(family_id)
    .execute(db.executor())
    .await?;
    Ok(done.rows_affected())
}

/// Families deleted per statement.
const EXPIRED_FAMILIES_BATCH: i64 = 500;

/// Deletes the refresh-token families whose newest token expired before `before_ms`.
/// A family goes whole: while any of its tokens could still be presented, the rotated ones
/// must stay, or their reuse would no longer be recognised (and the family revoked).
pub async fn delete_expired_families(db: &Database, before_ms: i64) -> Result<u64, StoreError> {
    let mut deleted = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM refresh_tokens WHERE family_id IN (SELECT family_id FROM refresh_tokens \
             GROUP BY family_id HAVING MAX(expires_at_ms) < $1 LIMIT $2)",
        )
        .bind(before_ms)
        .bind(EXPIRED_FAMILIES_BATCH)
        .execute(db.executor())
        .await?;
        deleted += done.rows_affected();
        if done.rows_affected() == 0 {
            return Ok(deleted);
        }
    }
}

/// Revokes every refresh token of a user (suspended, deleted).
pub async fn revoke_user(tx: &mut Tx, user_id: &str, now_ms: i64) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at_ms = $1 WHERE user_id = $2 AND revoked_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(user_id)
    .execute(tx.executor())
    .await?;
    Ok(done.rows_affected())
}
