//! Named leases in the service's own database: at most one holder at a time, until it lets
//! go or stops renewing. The outbox relay holds one so two instances of a service never
//! publish side by side; scheduled jobs hold one so a job never runs twice at once.

use std::time::Duration;

use crate::clock::now_millis;
use crate::db::Database;

/// One named lease as seen by one would-be holder.
#[derive(Debug, Clone)]
pub struct Lease {
    db: Database,
    name: String,
    holder: String,
    ttl: Duration,
}

impl Lease {
    /// `holder` must be unique per process (e.g. service name plus a random id).
    pub fn new(
        db: Database,
        name: impl Into<String>,
        holder: impl Into<String>,
        ttl: Duration,
    ) -> Self {
        Self {
            db,
            name: name.into(),
            holder: holder.into(),
            ttl,
        }
    }

    /// Takes the lease if it is free, expired or already ours (then it is renewed).
    /// Returns whether we hold it now.
    pub async fn acquire(&self) -> Result<bool, sqlx::Error> {
        let now = now_millis();
        let expires = now + self.ttl.as_millis() as i64;
        // One statement on both backends: insert, or take over an expired or own lease.
        let done = sqlx::query(
            "INSERT INTO kit_leases (name, holder, expires_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at_ms = excluded.expires_at_ms \
             WHERE kit_leases.expires_at_ms < $4 OR kit_leases.holder = excluded.holder",
        )
        .bind(&self.name)
        .bind(&self.holder)
        .bind(expires)
        .bind(now)
        .execute(self.db.executor())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Lets go, so another holder need not wait for the expiry.
    pub async fn release(&self) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM kit_leases WHERE name = $1 AND holder = $2")
            .bind(&self.name)
            .bind(&self.holder)
            .execute(self.db.executor())
            .await?;
        Ok(())
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}
