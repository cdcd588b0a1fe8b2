//! Consuming events: each message applied at most once per consumer (its id is stored in
//! the same transaction as the consumer's own change), retried with backoff while it fails,
//! and moved to the topic's dead-letter topic, with the reason, when it keeps failing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::db::Tx;
use futures::future::BoxFuture;
use metrics::{counter, gauge, histogram};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bus::{Delivery, EventBus, Subscription};
use crate::clock::{now_millis, parse_rfc3339};
use crate::db::Database;
use crate::event::{Event, Message};
use crate::outbox::Outbox;
use telemetry::metrics::{
    MESSAGING_CONSUMED, MESSAGING_DEAD_LETTERS, MESSAGING_END_TO_END, MESSAGING_LAG,
    MESSAGING_PROCESS_DURATION, MESSAGING_RETRIES,
};

/// Why a handler could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Might work later (a dependency is down): retried with backoff.
    #[error("{0}")]
    Retry(String),
    /// Will never work (data the handler cannot accept): dead-lettered at once.
    #[error("{0}")]
    Reject(String),
}

impl From<sqlx::Error> for HandlerError {
    fn from(err: sqlx::Error) -> Self {
        Self::Retry(format!("database: {err}"))
    }
}

impl From<crate::outbox::OutboxError> for HandlerError {
    fn from(err: crate::outbox::OutboxError) -> Self {
        Self::Retry(err.to_string())
    }
}

impl Event {
    /// The payload of an event of `kind`. A schema version this code does not know, or data
    /// that does not parse, is rejected (and dead-lettered) rather than misread.
    pub fn decode<T: serde::de::DeserializeOwned>(
        &self,
        kind: crate::event::EventType,
    ) -> Result<T, HandlerError> {
        if !self.is(kind) {
            return Err(HandlerError::Reject(format!(
                "{} schema version {} is not {}",
                self.kind, self.schema_version, kind.version
            )));
        }
        self.data_as()
            .map_err(|e| HandlerError::Reject(format!("{} data does not parse: {e}", self.kind)))
    }
}

/// Applies events to a service's state. `tx` is the transaction the event's id is recorded
/// in: write through it, and the change and the record commit together or not at all.
/// Events of kinds the handler does not care about should return `Ok(())`.
pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        event: &'a Event,
        tx: &'a mut Tx,
    ) -> BoxFuture<'a, Result<(), HandlerError>>;
}

/// How hard a consumer tries before giving a message up.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included, before dead-lettering.
    pub max_attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Exponential, with full jitter so consumers that failed together do not retry together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .first_backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_backoff);
        exp.mul_f64(rand::random_range(0.5..=1.0))
    }
}

/// A consumer group of one service: its name, the topics it reads and what it does.
pub struct Consumer {
    pub(crate) group: String,
    pub(crate) topics: Vec<String>,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) retry: RetryPolicy,
    pub(crate) skip_before: Option<time::OffsetDateTime>,
}

impl Consumer {
    /// `group` names the consumer group (keep it stable: offsets and processed ids are
    /// kept under it).
    pub fn new(group: impl Into<String>, topics: &[&str], handler: impl Handler) -> Self {
        Self {
            group: group.into(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            handler: Arc::new(handler),
            retry: RetryPolicy::default(),
            skip_before: None,
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Events whose `time` is before `at` are passed over: committed, counted as
    /// `skipped`, and never handed to the handler nor recorded as applied. For a group that
    /// only cares about news (a chat instance pushing to its sockets): a new group on Kafka
    /// starts at the topic's earliest offset, so no event after its start can be missed,
    /// and history then costs a read from the broker, not a transaction per event.
    pub fn skipping_events_before(mut self, at: time::OffsetDateTime) -> Self {
        self.skip_before = Some(at);
        self
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn topics(&self) -> &[String] {
        &self.topics
    }
}

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Applied,
    Duplicate,
    /// Older than the consumer cares for (see [`Consumer::skipping_events_before`]).
    Skipped,
    DeadLettered,
    /// Shutdown came while it was still failing: leave it uncommitted for next time.
    Interrupted,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Skipped => "skipped",
            Self::DeadLettered => "dead_lettered",
            Self::Interrupted => "interrupted",
        }
    }
}

/// A consumer at work in one service instance.
pub(crate) struct Running {
    pub service: &'static str,
    pub consumer: Consumer,
    pub db: Database,
    pub bus: EventBus,
    pub outbox: Outbox,
    /// Chaos faults with target `consume`, when chaos is on.
    pub faults: Option<chaos::Faults>,
}

impl Running {
    /// Consumes until `stop` is cancelled; the message in hand is finished first.
    pub async fn run(self, stop: CancellationToken) {
        let Some(mut subscription) = self.subscribe(&stop).await else {
            return;
        };
        loop {
            let delivery = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                delivery = subscription.next() => delivery,
            };
            let delivery = match delivery {
                Ok(delivery) => delivery,
                Err(err) => {
                    tracing::warn!(group = %self.consumer.group, error = %err, "receive failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let outcome = self.process(&delivery, &stop).await;
            if outcome == Outcome::Interrupted {
                break;
            }
            if let Err(err) = subscription.commit(&delivery) {
                tracing::warn!(error = %err, "offset not stored; the message may come again");
            }
            self.record_lag(&subscription);
        }
        subscription.close().await;
    }

    async fn subscribe(&self, stop: &CancellationToken) -> Option<Subscription> {
        loop {
            match self
                .bus
                .subscribe(&self.consumer.group, &self.consumer.topics)
            {
                Ok(subscription) => return Some(subscription),
                Err(err) => {
                    tracing::error!(group = %self.consumer.group, error = %err, "cannot subscribe; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return None,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    fn record_lag(&self, subscription: &Subscription) {
        if let Some(lag) = subscription.lag() {
            gauge!(MESSAGING_LAG, "service" => self.service, "consumer_group" => self.consumer.group.clone())
                .set(lag as f64);
        }
    }

    async fn process(&self, delivery: &Delivery, stop: &CancellationToken) -> Outcome {
        let started = Instant::now();
        let message = &delivery.message;
        let outcome = match Event::from_message(message) {
            Ok(event) if self.is_history(&event) => Outcome::Skipped,
            Ok(event) => {
                let span = self.span(&event);
                let outcome = self
                    .apply_with_retries(&event, message, stop)
                    .instrument(span.clone())
                    .await;
                if outcome == Outcome::DeadLettered {
                    span.record("otel.status_code", "ERROR");
                }
                if outcome == Outcome::Applied
                    && let Some(at) = parse_rfc3339(&event.time)
                {
                    let age = (time::OffsetDateTime::now_utc() - at)
                        .as_seconds_f64()
                        .max(0.0);
                    histogram!(MESSAGING_END_TO_END, "service" => self.service, "consumer_group" => self.consumer.group.clone())
                        .record(age);
                }
                outcome
            }
            Err(err) => {
                tracing::error!(topic = %message.topic, offset = delivery.offset, error = %err, "not a sloop event; dead-lettering it");
                self.dead_letter(message, 0, &format!("malformed envelope: {err}"), stop)
                    .await
            }
        };
        let labels = [
            ("service", self.service.to_owned()),
            ("consumer_group", self.consumer.group.clone()),
            ("destination", message.topic.clone()),
            ("outcome", outcome.label().to_owned()),
        ];
        counter!(MESSAGING_CONSUMED, &labels).increment(1);
        histogram!(MESSAGING_PROCESS_DURATION, &labels).record(started.elapsed().as_secs_f64());
        outcome
    }

    /// Whether `event` comes from before what this consumer cares for.
    fn is_history(&self, event: &Event) -> bool {
        self.consumer
            .skip_before
            .is_some_and(|before| parse_rfc3339(&event.time).is_some_and(|at| at < before))
    }

    fn span(&self, event: &Event) -> tracing::Span {
        let span = tracing::info_span!(
            "process",
            otel.name = format!("process {}", event.topic),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            messaging.system = self.bus.system(),
            messaging.operation.name = "process",
            messaging.operation.type = "process",
            messaging.destination.name = %event.topic,
            messaging.consumer.group.name = %self.consumer.group,
            messaging.message.id = %event.id,
            cloudevents.event_type = %event.kind,
            cloudevents.event_subject = %event.subject,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        event.continue_trace(&span);
        telemetry::propagation::record_ids(&span);
        span
    }

    async fn apply_with_retries(
        &self,
        event: &Event,
        message: &Message,
        stop: &CancellationToken,
    ) -> Outcome {
        let policy = self.consumer.retry;
        let mut attempt = 1;
        loop {
            let reason = match self.apply(event).await {
                Ok(outcome) => return outcome,
                Err(HandlerError::Reject(reason)) => {
                    tracing::error!(event_id = %event.id, %reason, "event rejected; dead-lettering it");
                    return self.dead_letter(message, attempt, &reason, stop).await;
                }
                Err(HandlerError::Retry(reason)) => reason,
            };
            if attempt >= policy.max_attempts {
                tracing::error!(event_id = %event.id, attempts = attempt, %reason, "event keeps failing; dead-lettering it");
                return self.dead_letter(message, attempt, &reason, stop).await;
            }
            tracing::warn!(event_id = %event.id, attempt, %reason, "event failed; retrying");
            counter!(MESSAGING_RETRIES, "service" => self.service, "consumer_group" => self.consumer.group.clone())
                .increment(1);
            tokio::select! {
                _ = stop.cancelled() => return Outcome::Interrupted,
                _ = tokio::time::sleep(policy.backoff(attempt)) => {}
            }
            attempt += 1;
        }
    }

    /// One attempt: record the id and apply the event in one transaction.
    async fn apply(&self, event: &Event) -> Result<Outcome, HandlerError> {
        if let Some(faults) = &self.faults {
            faults
                .inject_dependency(chaos::Target::Consume, &event.topic)
                .await
                .map_err(HandlerError::Retry)?;
        }
        let mut tx = self.db.begin().await?;
        // Writing first also takes SQLite's write lock up front (see the user store).
        let recorded = sqlx::query(
            "INSERT INTO kit_processed_events (consumer, event_id, processed_at_ms) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(&self.consumer.group)
        .bind(&event.id)
        .bind(now_millis())
        .execute(tx.executor())
        .await?;
        if recorded.rows_affected() == 0 {
            tx.rollback().await?;
            tracing::debug!(event_id = %event.id, "already applied; skipping");
            return Ok(Outcome::Duplicate);
        }
        self.consumer.handler.handle(event, &mut tx).await?;
        tx.commit().await?;
        // The handler may have written events of its own.
        self.outbox.wake();
        Ok(Outcome::Applied)
    }

    /// Publishes `message` to its dead-letter topic, retrying until the bus takes it or
    /// shutdown comes (then the message stays uncommitted and comes back later).
    async fn dead_letter(
        &self,
        message: &Message,
        attempts: u32,
        reason: &str,
        stop: &CancellationToken,
    ) -> Outcome {
        let dead = message.dead_letter(&self.consumer.group, attempts, reason);
        let mut tries = 1;
        loop {
            match self.bus.publish(&dead).await {
                Ok(()) => {
                    counter!(MESSAGING_DEAD_LETTERS, "service" => self.service, "consumer_group" => self.consumer.group.clone(), "destination" => message.topic.clone())
                        .increment(1);
                    return Outcome::DeadLettered;
                }
                Err(err) => {
                    tracing::error!(error = %err, topic = %dead.topic, "cannot dead-letter; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return Outcome::Interrupted,
                        _ = tokio::time::sleep(self.consumer.retry.backoff(tries)) => {}
                    }
                    tries += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap_with_jitter() {
        let policy = RetryPolicy {
            max_attempts: 5,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!((50..=100).contains(&first.as_millis()), "{first:?}");
            let third = policy.backoff(3);
            assert!((200..=400).contains(&third.as_millis()), "{third:?}");
            let late = policy.backoff(30);
            assert!((500..=1000).contains(&late.as_millis()), "{late:?}");
        }
    }
}
