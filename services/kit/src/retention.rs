//! The kit's own housekeeping: outbox rows already published, and the ids of events a
//! consumer applied, are deleted once older than their retention, so the tables stay the
//! size of the recent traffic instead of growing for ever.
//!
//! An applied event's id is what makes a redelivery a no-op, so its retention must outlast
//! the longest a bus may redeliver it (Kafka's topic retention; the platform's default is
//! seven days, and so is this).

use std::time::Duration;

use metrics::counter;
use tokio_util::sync::CancellationToken;

use crate::clock::now_millis;
use crate::db::Database;

pub const DELETED_ROWS: &str = "kit_retention_deleted_rows_total";

/// Rows deleted per statement: small enough that one statement never holds the table for
/// long, on SQLite in particular.
const BATCH: i64 = 1000;

/// How long the kit keeps its own rows, and how often it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Outbox rows, from their publication.
    pub outbox: Duration,
    /// Applied-event ids, from their application.
    pub processed_events: Duration,
    /// Between two sweeps.
    pub every: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            outbox: Duration::from_secs(7 * 24 * 3600),
            processed_events: Duration::from_secs(7 * 24 * 3600),
            every: Duration::from_secs(600),
        }
    }
}

/// What one sweep deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub outbox: u64,
    pub processed_events: u64,
}

/// Sweeps every `retention.every` until `stop`; the first sweep right away, so a service
/// that was down a long time catches up at start.
pub async fn run(
    service: &'static str,
    db: Database,
    retention: Retention,
    stop: CancellationToken,
) {
    metrics::describe_counter!(
        DELETED_ROWS,
        "Rows of the kit's own tables deleted once past their retention, by table."
    );
    loop {
        match sweep(&db, &retention, now_millis()).await {
            Ok(swept) => {
                record(service, "kit_outbox", swept.outbox);
                record(service, "kit_processed_events", swept.processed_events);
                if swept != Swept::default() {
                    tracing::info!(
                        outbox = swept.outbox,
                        processed_events = swept.processed_events,
                        "deleted the kit's rows past their retention"
                    );
                }
            }
            // The next sweep retries; nothing is lost by deleting later.
            Err(err) => tracing::warn!(error = %err, "retention sweep failed; retrying later"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(retention.every) => {}
        }
    }
}

fn record(service: &'static str, table: &'static str, rows: u64) {
    counter!(DELETED_ROWS, "service" => service, "table" => table).increment(rows);
}

/// Deletes every row past its retention at `now_ms`, a batch at a time.
pub async fn sweep(
    db: &Database,
    retention: &Retention,
    now_ms: i64,
) -> Result<Swept, sqlx::Error> {
    let outbox_cutoff = now_ms.saturating_sub(millis(retention.outbox));
    let processed_cutoff = now_ms.saturating_sub(millis(retention.processed_events));
    Ok(Swept {
        outbox: delete_in_batches(
            db,
            "DELETE FROM kit_outbox WHERE seq IN (SELECT seq FROM kit_outbox \
             WHERE published_at_ms IS NOT NULL AND published_at_ms < $1 ORDER BY published_at_ms LIMIT $2)",
            outbox_cutoff,
        )
        .await?,
        processed_events: delete_in_batches(
            db,
            "DELETE FROM kit_processed_events WHERE processed_at_ms < $1 AND (consumer, event_id) IN \
             (SELECT consumer, event_id FROM kit_processed_events WHERE processed_at_ms < $1 \
             ORDER BY processed_at_ms LIMIT $2)",
            processed_cutoff,
        )
        .await?,
    })
}

async fn delete_in_batches(
    db: &Database,
    sql: &'static str,
    cutoff: i64,
) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    loop {
        let rows = sqlx::query(sql)
            .bind(cutoff)
            .bind(BATCH)
            .execute(db.executor())
            .await?
            .rows_affected();
        deleted += rows;
        if rows < BATCH as u64 {
            return Ok(deleted);
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
