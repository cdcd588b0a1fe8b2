//! What audit does with the platform's events: appends every one, of every type on every
//! topic, known or not, to the hash-chained log. It does not read the payload, so a new
//! event type or schema version is recorded without a change here.

use futures::future::BoxFuture;
use sloop_kit::clock::now_rfc3339;
use sloop_kit::consumer::RetryPolicy;
use sloop_kit::db::is_unique_violation;
use sloop_kit::{Consumer, Event, Handler, HandlerError, Tx};

use crate::metrics;
use crate::store::{self, Appended, StoreError};

/// The consumer group; keep it stable, the kit keeps offsets and processed ids under it.
pub const GROUP: &str = "audit";

/// The `audit` consumer of every topic the platform publishes on.
pub fn consumer() -> Consumer {
    Consumer::new(GROUP, &sloop_events::TOPICS, AuditEvents).with_retry(RetryPolicy {
        // An event that cannot be appended is dead-lettered, a hole in the record until
        // someone replays it: keep trying far longer than the default (about a minute and
        // a half) to ride out races with other instances and short database outages.
        max_attempts: 25,
        first_backoff: std::time::Duration::from_millis(50),
        max_backoff: std::time::Duration::from_secs(5),
    })
}

/// Appends each event to the log in the consumer's transaction.
pub struct AuditEvents;

impl Handler for AuditEvents {
    fn handle<'a>(
        &'a self,
        event: &'a Event,
        tx: &'a mut Tx,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            match store::append(tx, event, &now_rfc3339()).await {
                Ok(Appended::Added(seq)) => {
                    metrics::entry_appended(&event.kind);
                    tracing::debug!(event_id = %event.id, seq, "event recorded");
                    Ok(())
                }
                Ok(Appended::AlreadyThere(seq)) => {
                    tracing::info!(event_id = %event.id, seq, "event already in the log; skipping");
                    Ok(())
                }
                Err(err) => Err(handler_error(err)),
            }
        })
    }
}

/// A unique violation means another instance appended the same `seq` first (or, rarely,
/// the same event): retrying reads the new last entry and appends after it.
fn handler_error(err: StoreError) -> HandlerError {
    match err {
        StoreError::Database(db) if is_unique_violation(&db) => HandlerError::Retry(format!(
            "another writer appended to the audit log first; appending after it ({db})"
        )),
        StoreError::Data { .. } => HandlerError::Reject(err.to_string()),
        other => HandlerError::Retry(other.to_string()),
    }
}
