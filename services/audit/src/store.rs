//! SQL for the audit log. One query text serves SQLite and PostgreSQL. Entries are only
//! ever inserted, at the end of the chain, inside the consumer's transaction.

use sloop_kit::clock::{parse_rfc3339, utc_rfc3339};
use sloop_kit::{Database, Event, Tx};
use sqlx::FromRow;

use crate::chain::{Entry, Link};

/// What can go wrong reading or writing the log, in the caller's terms.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the audit log has no entry {0}")]
    NotFound(i64),
    #[error("event {event_id} has data that cannot be written as JSON: {source}")]
    Data {
        event_id: String,
        source: serde_json::Error,
    },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

#[derive(FromRow)]
struct EntryRow {
    seq: i64,
    event_id: String,
    topic: String,
    #[sqlx(rename = "type")]
    kind: String,
    source: String,
    subject: String,
    schema_version: i64,
    time: String,
    time_utc: Option<String>,
    data: String,
    recorded_at: String,
    prev_hash: String,
    hash: String,
}

impl From<EntryRow> for Entry {
    fn from(row: EntryRow) -> Self {
        Self {
            seq: row.seq,
            event_id: row.event_id,
            topic: row.topic,
            kind: row.kind,
            source: row.source,
            subject: row.subject,
            schema_version: row.schema_version,
            time: row.time,
            time_utc: row.time_utc,
            data: row.data,
            recorded_at: row.recorded_at,
            prev_hash: row.prev_hash,
            hash: row.hash,
        }
    }
}

/// The entry columns, as a macro so queries stay `&'static str` (what sqlx accepts unwrapped).
macro_rules! select_entries {
    ($rest:literal) => {
        concat!(
            "SELECT seq, event_id, topic, type, source, subject, schema_version, time, \
             time_utc, data, recorded_at, prev_hash, hash FROM audit_log ",
            $rest
        )
    };
}

/// Whether [`append`] added the event or found it already in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Appended as entry `seq`.
    Added(i64),
    /// Already in the log as entry `seq`.
    AlreadyThere(i64),
}

/// Appends `event` after the last entry, in `tx`. When another writer appends the same
/// `seq` first, the insert fails with a unique violation (`seq` is the primary key): the
/// caller retries, reading the new last entry, so the chain never forks.
pub async fn append(tx: &mut Tx, event: &Event, recorded_at: &str) -> Result<Appended, StoreError> {
    // The consumer records event ids already; this guards the log itself, should that
    // record ever be lost (a restore, a renamed consumer group).
    let existing: Option<(i64,)> = sqlx::query_as("SELECT seq FROM audit_log WHERE event_id = $1")
        .bind(&event.id)
        .fetch_optional(tx.executor())
        .await?;
    if let Some((seq,)) = existing {
        return Ok(Appended::AlreadyThere(seq));
    }
    let before = last_link(tx).await?;
    let data = serde_json::to_string(&event.data).map_err(|source| StoreError::Data {
        event_id: event.id.clone(),
        source,
    })?;
    let mut entry = Entry {
        seq: before.seq + 1,
        event_id: event.id.clone(),
        topic: event.topic.clone(),
        kind: event.kind.clone(),
        source: event.source.clone(),
        subject: event.subject.clone(),
        schema_version: i64::from(event.schema_version),
        time: event.time.clone(),
        time_utc: parse_rfc3339(&event.time).and_then(utc_rfc3339),
        data,
        recorded_at: recorded_at.to_owned(),
        prev_hash: before.hash,
        hash: String::new(),
    };
    entry.hash = entry.compute_hash();
    insert(tx, &entry).await?;
    Ok(Appended::Added(entry.seq))
}

/// The last entry's number and hash; the genesis link when the log is empty.
async fn last_link(tx: &mut Tx) -> Result<Link, sqlx::Error> {
    let last: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(tx.executor())
            .await?;
    Ok(last
        .map(|(seq, hash)| Link { seq, hash })
        .unwrap_or_else(Link::genesis))
}

async fn insert(tx: &mut Tx, entry: &Entry) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (seq, event_id, topic, type, source, subject, schema_version, \
         time, time_utc, data, recorded_at, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(entry.seq)
    .bind(&entry.event_id)
    .bind(&entry.topic)
    .bind(&entry.kind)
    .bind(&entry.source)
    .bind(&entry.subject)
    .bind(entry.schema_version)
    .bind(&entry.time)
    .bind(&entry.time_utc)
    .bind(&entry.data)
    .bind(&entry.recorded_at)
    .bind(&entry.prev_hash)
    .bind(&entry.hash)
    .execute(tx.executor())
    .await?;
    Ok(())
}

pub async fn get(db: &Database, seq: i64) -> Result<Entry, StoreError> {
    sqlx::query_as::<_, EntryRow>(select_entries!("WHERE seq = $1"))
        .bind(seq)
        .fetch_optional(db.executor())
        .await?
        .map(Entry::from)
        .ok_or(StoreError::NotFound(seq))
}

/// Which entries a query wants; `None` leaves that condition out. Times are fixed-width
/// RFC 3339 UTC text, compared with `time_utc`: `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub subject: Option<String>,
    pub kind: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// Entries after `after` (0: from the start) matching `filter`, in log order, at most
/// `limit`.
///
/// One statement for every combination of conditions: an absent one is a NULL parameter
/// that makes its condition true. The CAST tells PostgreSQL the parameter's type.
pub async fn list(
    db: &Database,
    filter: &Filter,
    after: i64,
    limit: u32,
) -> Result<Vec<Entry>, StoreError> {
    let rows = sqlx::query_as::<_, EntryRow>(select_entries!(
        "WHERE seq > $1 \
         AND (CAST($2 AS TEXT) IS NULL OR subject = $2) \
         AND (CAST($3 AS TEXT) IS NULL OR type = $3) \
         AND (CAST($4 AS TEXT) IS NULL OR time_utc >= $4) \
         AND (CAST($5 AS TEXT) IS NULL OR time_utc < $5) \
         ORDER BY seq LIMIT $6"
    ))
    .bind(after)
    .bind(&filter.subject)
    .bind(&filter.kind)
    .bind(&filter.from)
    .bind(&filter.to)
    .bind(i64::from(limit))
    .fetch_all(db.executor())
    .await?;
    Ok(rows.into_iter().map(Entry::from).collect())
}
