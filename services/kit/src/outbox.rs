//! The transactional outbox: an event is a row written in the same transaction as the
//! change it announces, so it exists exactly when the change does. A relay publishes
//! pending rows to the bus in order per subject and marks them sent; a rolled-back
//! transaction leaves nothing to publish.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::db::Tx;
use metrics::{counter, gauge, histogram};
use serde::Serialize;
use sqlx::FromRow;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bus::EventBus;
use crate::clock::now_millis;
use crate::db::Database;
use crate::event::{Event, EventType};
use crate::lease::Lease;
use chaos::Target;
use telemetry::metrics::{
    MESSAGING_SEND_DURATION, MESSAGING_SENT, OUTBOX_OLDEST_AGE, OUTBOX_PENDING,
};

/// Why an event could not be written to the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("event data does not serialize: {0}")]
    Data(#[from] serde_json::Error),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// A service's handle on its outbox. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    service: &'static str,
    wake: Arc<Notify>,
}

impl Outbox {
    pub(crate) fn new(service: &'static str) -> Self {
        Self {
            service,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Writes an event of `kind` about `subject` inside `tx`; it is published only if `tx`
    /// commits. Call [`Outbox::wake`] after the commit for prompt delivery.
    pub async fn append(
        &self,
        tx: &mut Tx,
        kind: EventType,
        subject: &str,
        data: &impl Serialize,
    ) -> Result<Event, OutboxError> {
        let event = Event::new(self.service, kind, subject, data)?;
        sqlx::query(
            "INSERT INTO kit_outbox (id, topic, subject, type, source, time, schema_version, \
             data, trace, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&event.id)
        .bind(&event.topic)
        .bind(&event.subject)
        .bind(&event.kind)
        .bind(&event.source)
        .bind(&event.time)
        .bind(i64::from(event.schema_version))
        .bind(event.data.to_string())
        .bind(serde_json::to_string(&event.trace)?)
        .bind(now_millis())
        .execute(tx.executor())
        .await?;
        Ok(event)
    }

    /// Tells the relay there is something to publish (otherwise it looks every poll
    /// interval).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

#[derive(FromRow)]
struct Row {
    seq: i64,
    id: String,
    topic: String,
    subject: String,
    #[sqlx(rename = "type")]
    kind: String,
    source: String,
    time: String,
    schema_version: i64,
    data: String,
    trace: String,
}

impl Row {
    fn event(&self) -> Event {
        Event {
            id: self.id.clone(),
            kind: self.kind.clone(),
            source: self.source.clone(),
            subject: self.subject.clone(),
            time: self.time.clone(),
            schema_version: u32::try_from(self.schema_version).unwrap_or_default(),
            topic: self.topic.clone(),
            // Written by `append` from a serialized value, so it parses back.
            data: serde_json::from_str(&self.data).unwrap_or(serde_json::Value::Null),
            trace: serde_json::from_str::<BTreeMap<String, String>>(&self.trace)
                .unwrap_or_default(),
        }
    }
}

/// Tuning of the relay.
#[derive(Debug, Clone, Copy)]
pub struct RelaySettings {
    /// How often to look for rows when nobody woke the relay.
    pub poll: Duration,
    /// Rows read per pass.
    pub batch: i64,
    /// How long a relay keeps the publishing lease without renewing it.
    pub lease_ttl: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(100),
            batch: 256,
            lease_ttl: Duration::from_secs(10),
        }
    }
}

/// Publishes a service's outbox. One per service instance; among instances of one
/// service, only the holder of the `outbox-relay` lease publishes, which keeps order.
pub struct Relay {
    service: &'static str,
    db: Database,
    bus: EventBus,
    outbox: Outbox,
    settings: RelaySettings,
    lease: Lease,
    /// Chaos faults with target `publish`, when chaos is on.
    faults: Option<chaos::Faults>,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub published: usize,
    pub failed: usize,
    /// Rows read; a full batch means more may be waiting.
    pub read: usize,
}

impl Relay {
    pub fn new(
        service: &'static str,
        db: Database,
        bus: EventBus,
        outbox: Outbox,
        settings: RelaySettings,
    ) -> Self {
        let holder = format!("{service}-{}", uuid::Uuid::new_v4().simple());
        let lease = Lease::new(db.clone(), "outbox-relay", holder, settings.lease_ttl);
        Self {
            service,
            db,
            bus,
            outbox,
            settings,
            lease,
            faults: None,
        }
    }

    /// Passes every publish through the active `publish` faults first.
    pub fn with_faults(mut self, faults: Option<chaos::Faults>) -> Self {
        self.faults = faults;
        self
    }

    /// Publishes until `stop` is cancelled, then flushes what is pending (for at most
    /// `drain`) and lets go of the lease.
    pub async fn run(self, stop: CancellationToken, drain: Duration) {
        let mut held_since: Option<Instant> = None;
        let mut last_gauges = Instant::now() - Duration::from_secs(60);
        loop {
            if stop.is_cancelled() {
                break;
            }
            let holding = self.hold_lease(&mut held_since).await;
            if last_gauges.elapsed() >= Duration::from_secs(1) {
                self.record_backlog().await;
                last_gauges = Instant::now();
            }
            let pass = if holding {
                self.pass().await
            } else {
                Pass::default()
            };
            if pass.read as i64 == self.settings.batch && pass.failed == 0 {
                continue;
            }
            // After a failure (broker down) wait a little longer, not in a hot loop.
            let pause = if pass.failed > 0 {
                self.settings.poll * 5
            } else {
                self.settings.poll
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.outbox.wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
        self.drain(drain, held_since.is_some()).await;
    }

    /// Keeps the lease renewed; returns whether this relay may publish.
    async fn hold_lease(&self, held_since: &mut Option<Instant>) -> bool {
        let due = held_since.is_none_or(|since| since.elapsed() >= self.lease.ttl() / 3);
        if !due {
            return true;
        }
        match self.lease.acquire().await {
            Ok(true) => {
                *held_since = Some(Instant::now());
                true
            }
            Ok(false) => {
                *held_since = None;
                false
            }
            Err(err) => {
                tracing::warn!(error = %err, "outbox relay cannot reach its lease");
                *held_since = None;
                false
            }
        }
    }

    async fn drain(&self, limit: Duration, holding: bool) {
        if holding {
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                let pass = self.pass().await;
                if pass.read == 0 || pass.failed > 0 {
                    break;
                }
            }
            self.record_backlog().await;
            let _ = self.lease.release().await;
        }
        self.bus.flush(limit).await;
    }

    /// Reads one batch of pending rows and publishes them: rows of one subject one after
    /// another, stopping at that subject's first failure so a later event never overtakes
    /// an earlier one; different subjects concurrently.
    pub async fn pass(&self) -> Pass {
        let rows = match sqlx::query_as::<_, Row>(
            "SELECT seq, id, topic, subject, type, source, time, schema_version, data, trace \
             FROM kit_outbox WHERE published_at_ms IS NULL ORDER BY seq LIMIT $1",
        )
        .bind(self.settings.batch)
        .fetch_all(self.db.executor())
        .await
        {
            Ok(rows) => rows,
            Err(err) => {
                tracing::warn!(error = %err, "outbox relay cannot read pending events");
                return Pass::default();
            }
        };
        let read = rows.len();
        if read == 0 {
            return Pass::default();
        }
        let mut by_subject: HashMap<&str, Vec<&Row>> = HashMap::new();
        for row in &rows {
            by_subject.entry(&row.subject).or_default().push(row);
        }
        let outcomes = futures::future::join_all(
            by_subject
                .into_values()
                .map(|rows| self.publish_in_order(rows)),
        )
        .await;
        let mut sent = Vec::new();
        let mut failures = Vec::new();
        for (ok, failed) in outcomes {
            sent.extend(ok);
            failures.extend(failed);
        }
        let pass = Pass {
            published: sent.len(),
            failed: failures.len(),
            read,
        };
        if let Err(err) = self.mark_sent(&sent).await {
            // They will be sent again; consumers drop the duplicates by event id.
            tracing::warn!(error = %err, "outbox relay cannot mark events sent");
        }
        for (seq, reason) in failures {
            let _ = sqlx::query(
                "UPDATE kit_outbox SET attempts = attempts + 1, last_error = $1 WHERE seq = $2",
            )
            .bind(reason)
            .bind(seq)
            .execute(self.db.executor())
            .await;
        }
        pass
    }

    /// Publishes `rows` (one subject, oldest first) until one fails. Returns the sequence
    /// numbers sent and the failure, if any.
    async fn publish_in_order(&self, rows: Vec<&Row>) -> (Vec<i64>, Option<(i64, String)>) {
        let mut sent = Vec::with_capacity(rows.len());
        for row in rows {
            match self.publish(row).await {
                Ok(()) => sent.push(row.seq),
                Err(reason) => return (sent, Some((row.seq, reason))),
            }
        }
        (sent, None)
    }

    async fn publish(&self, row: &Row) -> Result<(), String> {
        let event = row.event();
        let span = tracing::info_span!(
            "send",
            otel.name = format!("send {}", event.topic),
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            messaging.system = self.bus.system(),
            messaging.operation.name = "send",
            messaging.operation.type = "send",
            messaging.destination.name = %event.topic,
            messaging.message.id = %event.id,
            cloudevents.event_type = %event.kind,
        );
        event.continue_trace(&span);
        let started = Instant::now();
        let injected = match &self.faults {
            Some(faults) => {
                faults
                    .inject_dependency(Target::Publish, &event.topic)
                    .await
            }
            None => Ok(()),
        };
        let result = match injected {
            Ok(()) => self
                .bus
                .publish(&event.to_message())
                .instrument(span.clone())
                .await
                .map_err(|err| err.to_string()),
            Err(reason) => Err(reason),
        };
        let outcome = if result.is_ok() { "ok" } else { "error" };
        let labels = [
            ("service", self.service.to_owned()),
            ("system", self.bus.system().to_owned()),
            ("destination", event.topic.clone()),
            ("outcome", outcome.to_owned()),
        ];
        histogram!(MESSAGING_SEND_DURATION, &labels).record(started.elapsed().as_secs_f64());
        counter!(MESSAGING_SENT, &labels).increment(1);
        result.map_err(|err| {
            span.record("otel.status_code", "ERROR");
            span.in_scope(
                || tracing::warn!(error = %err, event_id = %event.id, "publish failed; will retry"),
            );
            err
        })
    }

    async fn mark_sent(&self, seqs: &[i64]) -> Result<(), sqlx::Error> {
        for chunk in seqs.chunks(500) {
            // Numbered placeholders: the Any driver's query builder writes `?`, which
            // PostgreSQL does not take.
            let list: Vec<String> = (2..chunk.len() + 2).map(|n| format!("${n}")).collect();
            let sql = format!(
                "UPDATE kit_outbox SET published_at_ms = $1 WHERE seq IN ({})",
                list.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now_millis());
            for seq in chunk {
                query = query.bind(*seq);
            }
            query.execute(self.db.executor()).await?;
        }
        Ok(())
    }

    async fn record_backlog(&self) {
        let row: Result<(i64, Option<i64>), _> = sqlx::query_as(
            "SELECT COUNT(*), MIN(created_at_ms) FROM kit_outbox WHERE published_at_ms IS NULL",
        )
        .fetch_one(self.db.executor())
        .await;
        if let Ok((pending, oldest)) = row {
            gauge!(OUTBOX_PENDING, "service" => self.service).set(pending as f64);
            let age = oldest.map_or(0.0, |at| (now_millis() - at).max(0) as f64 / 1000.0);
            gauge!(OUTBOX_OLDEST_AGE, "service" => self.service).set(age);
        }
    }
}

/// Pending rows, for tests and the readiness report.
pub async fn pending(db: &Database) -> Result<i64, sqlx::Error> {
    let (count,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM kit_outbox WHERE published_at_ms IS NULL")
            .fetch_one(db.executor())
            .await?;
    Ok(count)
}
