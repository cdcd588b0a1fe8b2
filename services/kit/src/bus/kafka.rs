//! The Kafka bus, through librdkafka (bundled, built from source by rdkafka-sys): a producer
//! that waits for every replica's acknowledgement, and consumers in groups that store an
//! offset only after the message is handled (at least once).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::util::Timeout;

use super::{BusError, Delivery};
use crate::event::Message;

/// Partitions of every topic sloop creates. Keys (subjects) spread over them, and one
/// subject's events stay in one partition, in order.
const PARTITIONS: i32 = 3;

/// How long the producer keeps retrying one message before reporting it failed; the
/// outbox relay then publishes it again later, so a broker restart loses nothing.
const MESSAGE_TIMEOUT: &str = "30000";

/// A connection to Kafka-protocol brokers. Cheap to clone.
#[derive(Clone)]
pub struct KafkaBus {
    bootstrap: String,
    client_id: String,
    producer: FutureProducer<Logged>,
    admin: Arc<AdminClient<Logged>>,
}

impl KafkaBus {
    pub fn connect(bootstrap: &str, client_id: &str) -> Result<Self, BusError> {
        let client_error = |source| BusError::Client {
            bootstrap: bootstrap.to_owned(),
            source,
        };
        let producer = base_config(bootstrap, client_id)
            // Order per subject does not rest on producer idempotence: the relay sends a
            // subject's next event only after the broker acknowledged the previous one.
            // Duplicates a retry may make are dropped by consumers (by event id). Leaving
            // it off also avoids brokers' weakest code path (Tansu 0.6's idempotence check
            // panics after a restart).
            .set("enable.idempotence", "false")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", MESSAGE_TIMEOUT)
            .create_with_context(Logged::new())
            .map_err(client_error)?;
        let admin = base_config(bootstrap, client_id)
            .create_with_context(Logged::new())
            .map_err(client_error)?;
        Ok(Self {
            bootstrap: bootstrap.to_owned(),
            client_id: client_id.to_owned(),
            producer,
            admin: Arc::new(admin),
        })
    }

    pub async fn ensure_topics(&self, topics: &[String]) -> Result<(), BusError> {
        let mut topics = topics.to_vec();
        topics.sort();
        // A broker refuses a request naming a topic twice.
        topics.dedup();
        // Create only what is missing: asking a broker to create a topic it has is an error
        // some brokers handle badly (unpatched Tansu 0.6 stops its storage on any failed
        // request; see third_party/tansu).
        let existing = self.existing_topics().await;
        topics.retain(|t| !existing.contains(t));
        if topics.is_empty() {
            return Ok(());
        }
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = self
            .admin
            .create_topics(&new, &options)
            .await
            .map_err(|e| BusError::CreateTopic {
                topic: topics.join(", "),
                reason: e.to_string(),
            })?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(BusError::CreateTopic {
                        topic,
                        reason: code.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The topics the cluster has; empty when it cannot say (then creation finds out).
    async fn existing_topics(&self) -> Vec<String> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(10))
                .map(|m| m.topics().iter().map(|t| t.name().to_owned()).collect())
                .unwrap_or_default()
        })
        .await
        .unwrap_or_default()
    }

    pub async fn publish(&self, message: &Message) -> Result<(), BusError> {
        let headers = message.headers.iter().fold(
            OwnedHeaders::new_with_capacity(message.headers.len()),
            |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                })
            },
        );
        let record = FutureRecord::to(&message.topic)
            .key(message.key.as_bytes())
            .payload(&message.payload)
            .headers(headers);
        self.producer
            .send(record, Timeout::After(Duration::from_secs(5)))
            .await
            .map(|_| ())
            .map_err(|(err, _)| BusError::Publish {
                topic: message.topic.clone(),
                reason: err.to_string(),
            })
    }

    pub fn subscribe(&self, group: &str, topics: &[String]) -> Result<Subscription, BusError> {
        let context = Logged::new();
        let lag = context.lag.clone();
        let consumer: StreamConsumer<Logged> = base_config(&self.bootstrap, &self.client_id)
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            // Offsets are stored by `commit` once a message is handled, never on receipt.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            // Some brokers (Tansu) hold every fetch for up to this long even when data is
            // ready, so a short wait keeps delivery latency low.
            .set("fetch.wait.max.ms", "50")
            .set("statistics.interval.ms", "5000")
            .create_with_context(context)
            .map_err(|source| BusError::Client {
                bootstrap: self.bootstrap.clone(),
                source,
            })?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(|source| BusError::Client {
                bootstrap: self.bootstrap.clone(),
                source,
            })?;
        Ok(Subscription {
            consumer: Some(consumer),
            lag,
        })
    }

    pub async fn flush(&self, timeout: Duration) {
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
    }
}

fn base_config(bootstrap: &str, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", format!("sloop-{client_id}"))
        // Brokers listen on IPv4 loopback in tests; `localhost` may resolve to ::1 first.
        .set("broker.address.family", "v4")
        // Reconnect quickly after a broker restart.
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000");
    config
}

/// How long closing a consumer (final commit, leaving the group) may take before the
/// service stops without it; the broker then sees the member time out instead.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(15);

/// A consumer in a group.
pub struct Subscription {
    /// Always `Some` until `close` or `drop` hands it to a thread of its own.
    consumer: Option<StreamConsumer<Logged>>,
    lag: Arc<AtomicI64>,
}

impl Subscription {
    fn consumer(&self) -> &StreamConsumer<Logged> {
        self.consumer
            .as_ref()
            .expect("the consumer lives until close or drop")
    }

    pub async fn next(&mut self) -> Result<Delivery, BusError> {
        let message = self
            .consumer()
            .recv()
            .await
            .map_err(|e| BusError::Receive(e.to_string()))?;
        use rdkafka::Message as _;
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|header| {
                        let value = header.value.unwrap_or_default();
                        (
                            header.key.to_owned(),
                            String::from_utf8_lossy(value).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Delivery {
            message: Message {
                topic: message.topic().to_owned(),
                key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                headers,
                payload: message.payload().unwrap_or_default().to_vec(),
            },
            partition: message.partition(),
            offset: message.offset(),
        })
    }

    /// Stores the offset after `delivery`; librdkafka commits stored offsets every 500 ms
    /// and when the consumer closes.
    pub fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        self.consumer()
            .store_offset(
                &delivery.message.topic,
                delivery.partition,
                // librdkafka stores `offset + 1` itself (rd_kafka_offset_store): passing the
                // next offset here committed one past it, and a restarted member skipped a
                // message per partition.
                delivery.offset,
            )
            .map_err(|e| BusError::Commit {
                topic: delivery.message.topic.clone(),
                partition: delivery.partition,
                offset: delivery.offset,
                reason: e.to_string(),
            })
    }

    pub fn lag(&self) -> Option<u64> {
        u64::try_from(self.lag.load(Ordering::Relaxed)).ok()
    }

    /// Commits what was stored, synchronously, then leaves the group — on a thread of its
    /// own, given at most `CLOSE_TIMEOUT`: librdkafka's close waits for the broker without
    /// a limit, and a broker that stopped answering must not stop the service from stopping.
    pub async fn close(mut self) {
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        let (done, finished) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            if let Err(err) = consumer.commit_consumer_state(CommitMode::Sync) {
                // Nothing stored since the last commit is not a failure.
                if err.rdkafka_error_code() != Some(RDKafkaErrorCode::NoOffset) {
                    tracing::warn!(error = %err, "final offset commit failed");
                }
            }
            consumer.unsubscribe();
            drop(consumer);
            let _ = done.send(());
        });
        if tokio::time::timeout(CLOSE_TIMEOUT, finished).await.is_err() {
            tracing::warn!(
                timeout = ?CLOSE_TIMEOUT,
                "the consumer did not leave its group in time; stopping without it"
            );
        }
    }
}

impl Drop for Subscription {
    /// Dropping a librdkafka consumer blocks until the broker confirms it left the group,
    /// however long that takes; that wait must not hold one of the runtime's threads.
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            std::thread::spawn(move || drop(consumer));
        }
    }
}

/// Sends librdkafka's log lines to `tracing` (not the `log` crate, which nothing reads
/// here) and keeps the consumer lag its statistics report.
struct Logged {
    /// Sum over assigned partitions of messages not yet stored; -1 until known.
    lag: Arc<AtomicI64>,
}

impl Logged {
    fn new() -> Self {
        Self {
            lag: Arc::new(AtomicI64::new(-1)),
        }
    }
}

impl ClientContext for Logged {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, "{line}");
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{line}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{line}");
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{line}"),
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        // Transport errors while a broker restarts are expected and retried; they are
        // warnings, not errors that page anyone through Sentry.
        tracing::warn!(target: "librdkafka", %error, "{reason}");
    }

    fn stats(&self, statistics: Statistics) {
        let lag: i64 = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.consumer_lag_stored >= 0)
            .map(|p| p.consumer_lag_stored)
            .sum();
        self.lag.store(lag, Ordering::Relaxed);
    }
}

impl ConsumerContext for Logged {}
