//! SQL for the batch service's own tables: run history and the daily read model. One query
//! text serves SQLite and PostgreSQL.

use std::collections::BTreeMap;

use sloop_kit::{Database, Tx};
use sqlx::FromRow;

use crate::error::BatchError;
use crate::model::{Run, RunStatus, Trigger};
use crate::schedule::rfc3339_of_ms;

/// A run as stored, without its report (which can be large; read it with [`report`]).
#[derive(Debug, Clone, FromRow)]
pub struct RunRow {
    pub id: String,
    pub job: String,
    pub triggered_by: String,
    pub scheduled_for_ms: Option<i64>,
    pub attempt: i64,
    pub retry_of: Option<String>,
    pub status: String,
    pub holder: String,
    pub period_from: Option<String>,
    pub period_to: Option<String>,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub log: String,
    pub has_report: i64,
}

impl TryFrom<RunRow> for Run {
    type Error = BatchError;

    fn try_from(row: RunRow) -> Result<Self, BatchError> {
        let unknown = |what: &str, value: &str| {
            BatchError::Data(format!("run {} has an unknown {what} `{value}`", row.id))
        };
        let trigger = Trigger::parse(&row.triggered_by)
            .ok_or_else(|| unknown("trigger", &row.triggered_by))?;
        let status = RunStatus::parse(&row.status).ok_or_else(|| unknown("status", &row.status))?;
        Ok(Self {
            trigger,
            status,
            scheduled_for: row.scheduled_for_ms.map(rfc3339_of_ms),
            started_at: rfc3339_of_ms(row.started_at_ms),
            finished_at: row.finished_at_ms.map(rfc3339_of_ms),
            log: row.log.lines().map(str::to_owned).collect(),
            has_report: row.has_report != 0,
            id: row.id,
            job: row.job,
            attempt: row.attempt,
            retry_of: row.retry_of,
            holder: row.holder,
            period_from: row.period_from,
            period_to: row.period_to,
            duration_ms: row.duration_ms,
        })
    }
}

/// The run columns, as a macro so queries stay `&'static str` (what sqlx accepts unwrapped).
macro_rules! select_runs {
    ($rest:literal) => {
        concat!(
            "SELECT id, job, triggered_by, scheduled_for_ms, attempt, retry_of, status, holder, \
             period_from, period_to, started_at_ms, finished_at_ms, duration_ms, log, \
             CAST(CASE WHEN report IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_report \
             FROM batch_runs ",
            $rest
        )
    };
}

/// A run about to start.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub job: String,
    pub trigger: Trigger,
    pub scheduled_for_ms: Option<i64>,
    pub attempt: i64,
    pub retry_of: Option<String>,
    pub holder: String,
    pub period_from: Option<String>,
    pub period_to: Option<String>,
    pub started_at_ms: i64,
    pub log: String,
}

impl NewRun {
    /// The row as [`get_run`] would read it back right after [`insert_run`].
    pub fn as_row(&self) -> RunRow {
        RunRow {
            id: self.id.clone(),
            job: self.job.clone(),
            triggered_by: self.trigger.as_str().to_owned(),
            scheduled_for_ms: self.scheduled_for_ms,
            attempt: self.attempt,
            retry_of: self.retry_of.clone(),
            status: RunStatus::Running.as_str().to_owned(),
            holder: self.holder.clone(),
            period_from: self.period_from.clone(),
            period_to: self.period_to.clone(),
            started_at_ms: self.started_at_ms,
            finished_at_ms: None,
            duration_ms: None,
            log: self.log.clone(),
            has_report: 0,
        }
    }
}

/// Inserts a run as `running`. For a scheduled slot's first attempt this is the claim: a
/// unique violation means another instance claimed the slot first.
pub async fn insert_run(db: &Database, run: &NewRun) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    insert_run_in(&mut tx, run).await?;
    tx.commit().await
}

async fn insert_run_in(tx: &mut Tx, run: &NewRun) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO batch_runs (id, job, triggered_by, scheduled_for_ms, attempt, retry_of, \
         status, holder, period_from, period_to, started_at_ms, log) \
         VALUES ($1, $2, $3, $4, $5, $6, 'running', $7, $8, $9, $10, $11)",
    )
    .bind(&run.id)
    .bind(&run.job)
    .bind(run.trigger.as_str())
    .bind(run.scheduled_for_ms)
    .bind(run.attempt)
    .bind(&run.retry_of)
    .bind(&run.holder)
    .bind(&run.period_from)
    .bind(&run.period_to)
    .bind(run.started_at_ms)
    .bind(&run.log)
    .execute(tx.executor())
    .await?;
    Ok(())
}

/// Whether some instance has claimed `job`'s slot at `slot_ms` already.
pub async fn slot_claimed(db: &Database, job: &str, slot_ms: i64) -> Result<bool, sqlx::Error> {
    let (count,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM batch_runs WHERE job = $1 AND scheduled_for_ms = $2")
            .bind(job)
            .bind(slot_ms)
            .fetch_one(db.executor())
            .await?;
    Ok(count > 0)
}

/// Whether another holder has lease `name` and it has not expired at `now_ms`. A read of
/// the kit's lease table (in this service's own database), so a look costs no write;
/// taking the lease is still only ever done through `sloop_kit::lease::Lease`.
pub async fn lease_held_elsewhere(
    db: &Database,
    name: &str,
    holder: &str,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let (count,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM kit_leases WHERE name = $1 AND holder <> $2 AND expires_at_ms >= $3",
    )
    .bind(name)
    .bind(holder)
    .bind(now_ms)
    .fetch_one(db.executor())
    .await?;
    Ok(count > 0)
}

/// The oldest run of `job` still marked `running`.
pub async fn oldest_running(db: &Database, job: &str) -> Result<Option<RunRow>, sqlx::Error> {
    sqlx::query_as::<_, RunRow>(select_runs!(
        "WHERE job = $1 AND status = 'running' ORDER BY id LIMIT 1"
    ))
    .bind(job)
    .fetch_optional(db.executor())
    .await
}

/// Marks the `running` run `stale` failed with `note` added to its log, and inserts `retry`
/// (its next attempt), in one transaction. Returns false, changing nothing, when `stale` is
/// no longer running.
pub async fn abandon(
    db: &Database,
    stale: &RunRow,
    note: &str,
    finished_at_ms: i64,
    retry: Option<&NewRun>,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let done = sqlx::query(
        "UPDATE batch_runs SET status = 'failed', finished_at_ms = $2, \
         duration_ms = $2 - started_at_ms, log = log || $3 \
         WHERE id = $1 AND status = 'running'",
    )
    .bind(&stale.id)
    .bind(finished_at_ms)
    .bind(format!("\n{note}"))
    .execute(tx.executor())
    .await?;
    if done.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    if let Some(retry) = retry {
        insert_run_in(&mut tx, retry).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// How a run ended.
#[derive(Debug)]
pub struct Finish<'a> {
    pub status: RunStatus,
    pub finished_at_ms: i64,
    pub duration_ms: i64,
    /// Lines to add to the log.
    pub log: &'a [String],
    pub report: Option<String>,
}

/// Records how run `id` ended, if `holder` still runs it. Returns false when it does not
/// (another instance marked it abandoned and took it over): the result is then dropped,
/// so a slot never has two results.
pub async fn finish(
    db: &Database,
    id: &str,
    holder: &str,
    finish: &Finish<'_>,
) -> Result<bool, sqlx::Error> {
    let tail: String = finish.log.iter().map(|line| format!("\n{line}")).collect();
    let done = sqlx::query(
        "UPDATE batch_runs SET status = $3, finished_at_ms = $4, duration_ms = $5, \
         log = log || $6, report = $7 \
         WHERE id = $1 AND holder = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(holder)
    .bind(finish.status.as_str())
    .bind(finish.finished_at_ms)
    .bind(finish.duration_ms)
    .bind(tail)
    .bind(&finish.report)
    .execute(db.executor())
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn get_run(db: &Database, id: &str) -> Result<RunRow, BatchError> {
    sqlx::query_as::<_, RunRow>(select_runs!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.executor())
        .await?
        .ok_or_else(|| BatchError::RunNotFound(id.to_owned()))
}

/// Run `id` and its report's JSON text, if it has one.
pub async fn report(db: &Database, id: &str) -> Result<(RunRow, Option<String>), BatchError> {
    let row = get_run(db, id).await?;
    let (report,): (Option<String>,) =
        sqlx::query_as("SELECT report FROM batch_runs WHERE id = $1")
            .bind(id)
            .fetch_optional(db.executor())
            .await?
            .ok_or_else(|| BatchError::RunNotFound(id.to_owned()))?;
    Ok((row, report))
}

/// `job`'s runs older than `before` (all when `None`), newest first, at most `limit`.
/// The CAST tells PostgreSQL the parameter's type when it is NULL.
pub async fn list_runs(
    db: &Database,
    job: &str,
    before: Option<&str>,
    limit: u32,
) -> Result<Vec<RunRow>, sqlx::Error> {
    sqlx::query_as::<_, RunRow>(select_runs!(
        "WHERE job = $1 AND (CAST($2 AS TEXT) IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
    ))
    .bind(job)
    .bind(before)
    .bind(i64::from(limit))
    .fetch_all(db.executor())
    .await
}

/// `job`'s newest run.
pub async fn last_run(db: &Database, job: &str) -> Result<Option<RunRow>, sqlx::Error> {
    Ok(list_runs(db, job, None, 1).await?.into_iter().next())
}

/// When each job last finished a run successfully (Unix milliseconds), by job name.
pub async fn last_successes(db: &Database) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT job, MAX(finished_at_ms) FROM batch_runs \
         WHERE status = 'succeeded' AND finished_at_ms IS NOT NULL GROUP BY job",
    )
    .fetch_all(db.executor())
    .await
}

/// Counts one account created on `day`, in the consumer's transaction.
pub async fn add_signup(tx: &mut Tx, day: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO batch_daily_signups (day, signups) VALUES ($1, 1) \
         ON CONFLICT (day) DO UPDATE SET signups = batch_daily_signups.signups + 1",
    )
    .bind(day)
    .execute(tx.executor())
    .await?;
    Ok(())
}

/// One day's sales in one currency: what one event adds, or a report row.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct Sales {
    pub day: String,
    pub currency: String,
    pub orders_confirmed: i64,
    pub orders_cancelled: i64,
    pub revenue: i64,
}

/// Adds `sales` to its day and currency, in the consumer's transaction.
pub async fn add_sales(tx: &mut Tx, sales: &Sales) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO batch_daily_sales \
         (day, currency, orders_confirmed, orders_cancelled, revenue) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (day, currency) DO UPDATE SET \
         orders_confirmed = batch_daily_sales.orders_confirmed + excluded.orders_confirmed, \
         orders_cancelled = batch_daily_sales.orders_cancelled + excluded.orders_cancelled, \
         revenue = batch_daily_sales.revenue + excluded.revenue",
    )
    .bind(&sales.day)
    .bind(&sales.currency)
    .bind(sales.orders_confirmed)
    .bind(sales.orders_cancelled)
    .bind(sales.revenue)
    .execute(tx.executor())
    .await?;
    Ok(())
}

/// One chat message, as the read model counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub day: String,
    pub room_id: String,
    pub sender_id: String,
    pub mentions: i64,
}

/// Counts one message for its day and room, and its sender among the day's active ones.
pub async fn add_chat_message(tx: &mut Tx, message: &ChatMessage) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO batch_daily_chat (day, room_id, messages, mentions) VALUES ($1, $2, 1, $3) \
         ON CONFLICT (day, room_id) DO UPDATE SET \
         messages = batch_daily_chat.messages + 1, \
         mentions = batch_daily_chat.mentions + excluded.mentions",
    )
    .bind(&message.day)
    .bind(&message.room_id)
    .bind(message.mentions)
    .execute(tx.executor())
    .await?;
    sqlx::query(
        "INSERT INTO batch_daily_chat_senders (day, sender_id) VALUES ($1, $2) \
         ON CONFLICT (day, sender_id) DO NOTHING",
    )
    .bind(&message.day)
    .bind(&message.sender_id)
    .execute(tx.executor())
    .await?;
    Ok(())
}

/// Chat activity on one day.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ChatDay {
    pub day: String,
    pub messages: i64,
    pub mentions: i64,
    pub active_rooms: i64,
    pub active_senders: i64,
}

/// Chat activity from `from` to `to` (both included), for days with any message.
pub async fn chat_activity(
    db: &Database,
    from: &str,
    to: &str,
) -> Result<Vec<ChatDay>, sqlx::Error> {
    sqlx::query_as::<_, ChatDay>(
        // SUM of a BIGINT is NUMERIC on PostgreSQL: cast back.
        "SELECT c.day, CAST(SUM(c.messages) AS BIGINT) AS messages, \
         CAST(SUM(c.mentions) AS BIGINT) AS mentions, \
         COUNT(*) AS active_rooms, \
         (SELECT COUNT(*) FROM batch_daily_chat_senders s WHERE s.day = c.day) AS active_senders \
         FROM batch_daily_chat c WHERE c.day >= $1 AND c.day <= $2 GROUP BY c.day ORDER BY c.day",
    )
    .bind(from)
    .bind(to)
    .fetch_all(db.executor())
    .await
}

/// Signups per day from `from` to `to` (both included), for days with any.
pub async fn signups(
    db: &Database,
    from: &str,
    to: &str,
) -> Result<BTreeMap<String, i64>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT day, signups FROM batch_daily_signups WHERE day >= $1 AND day <= $2 ORDER BY day",
    )
    .bind(from)
    .bind(to)
    .fetch_all(db.executor())
    .await?;
    Ok(rows.into_iter().collect())
}

/// Sales from `from` to `to` (both included), by day then currency.
pub async fn sales(db: &Database, from: &str, to: &str) -> Result<Vec<Sales>, sqlx::Error> {
    sqlx::query_as::<_, Sales>(
        "SELECT day, currency, orders_confirmed, orders_cancelled, revenue \
         FROM batch_daily_sales WHERE day >= $1 AND day <= $2 ORDER BY day, currency",
    )
    .bind(from)
    .bind(to)
    .fetch_all(db.executor())
    .await
}

/// Rows cleanup deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    pub runs: u64,
    pub signup_days: u64,
    pub sales_rows: u64,
    /// Rows of messages per day and room (each day's senders go with them).
    pub chat_rows: u64,
}

/// Deletes finished runs started before `cutoff_ms` and read-model days before
/// `cutoff_day`. Running runs stay: they are someone's work in progress, or abandoned ones
/// the next lease holder must see to retry.
pub async fn delete_older(
    db: &Database,
    cutoff_ms: i64,
    cutoff_day: &str,
) -> Result<Deleted, sqlx::Error> {
    let mut tx = db.begin().await?;
    let runs =
        sqlx::query("DELETE FROM batch_runs WHERE started_at_ms < $1 AND status <> 'running'")
            .bind(cutoff_ms)
            .execute(tx.executor())
            .await?
            .rows_affected();
    let signup_days = sqlx::query("DELETE FROM batch_daily_signups WHERE day < $1")
        .bind(cutoff_day)
        .execute(tx.executor())
        .await?
        .rows_affected();
    let sales_rows = sqlx::query("DELETE FROM batch_daily_sales WHERE day < $1")
        .bind(cutoff_day)
        .execute(tx.executor())
        .await?
        .rows_affected();
    let chat_rows = sqlx::query("DELETE FROM batch_daily_chat WHERE day < $1")
        .bind(cutoff_day)
        .execute(tx.executor())
        .await?
        .rows_affected();
    sqlx::query("DELETE FROM batch_daily_chat_senders WHERE day < $1")
        .bind(cutoff_day)
        .execute(tx.executor())
        .await?;
    tx.commit().await?;
    Ok(Deleted {
        runs,
        signup_days,
        sales_rows,
        chat_rows,
    })
}
