//! The event bus behind one interface: `memory` (in-process, the embedded default) or
//! `kafka://HOST:PORT` (any Kafka-protocol broker, through librdkafka). Services never
//! publish to it directly: the outbox relay does, and consumers read from it.

mod kafka;
mod memory;

use std::str::FromStr;
use std::time::Duration;

pub use kafka::KafkaBus;
pub use memory::MemoryBus;

use crate::event::Message;

/// Where events go, as `--event-bus` / `EVENT_BUS` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusUrl {
    /// In-process: only services running in the same process see each other's events.
    Memory,
    /// A Kafka-protocol broker; `bootstrap` is a comma-separated `HOST:PORT` list.
    Kafka { bootstrap: String },
}

impl FromStr for BusUrl {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.strip_prefix("kafka://") {
            _ if value == "memory" => Ok(Self::Memory),
            Some(bootstrap) if !bootstrap.is_empty() => Ok(Self::Kafka {
                bootstrap: bootstrap.trim_end_matches('/').to_owned(),
            }),
            _ => Err(format!(
                "`{value}` is not an event bus; use `memory` or `kafka://HOST:PORT`"
            )),
        }
    }
}

impl std::fmt::Display for BusUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Kafka { bootstrap } => write!(f, "kafka://{bootstrap}"),
        }
    }
}

/// What can go wrong talking to the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("Kafka client for {bootstrap}: {source}")]
    Client {
        bootstrap: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot create topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("publishing to {topic} failed: {reason}")]
    Publish { topic: String, reason: String },
    #[error("receiving failed: {0}")]
    Receive(String),
    #[error("committing the offset of {topic}/{partition}@{offset} failed: {reason}")]
    Commit {
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },
}

/// A connection to the event bus. Cheap to clone; services in one process may share one.
#[derive(Clone)]
pub enum EventBus {
    Memory(MemoryBus),
    Kafka(KafkaBus),
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.system())
    }
}

impl EventBus {
    /// Connects to the bus `url` names, as `client_id` (the service's name).
    pub fn connect(url: &BusUrl, client_id: &str) -> Result<Self, BusError> {
        Ok(match url {
            BusUrl::Memory => Self::Memory(MemoryBus::new()),
            BusUrl::Kafka { bootstrap } => Self::Kafka(KafkaBus::connect(bootstrap, client_id)?),
        })
    }

    /// `memory` or `kafka`, as the `messaging.system` attribute names it.
    pub fn system(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Kafka(_) => "kafka",
        }
    }

    /// Creates `topics` where the bus needs that (Kafka brokers may not create topics on
    /// first use); topics that exist already are fine.
    pub async fn ensure_topics(&self, topics: &[String]) -> Result<(), BusError> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Kafka(bus) => bus.ensure_topics(topics).await,
        }
    }

    /// Publishes one message and waits until the bus has it (for Kafka: acknowledged by
    /// the broker).
    pub async fn publish(&self, message: &Message) -> Result<(), BusError> {
        match self {
            Self::Memory(bus) => {
                bus.publish(message.clone());
                Ok(())
            }
            Self::Kafka(bus) => bus.publish(message).await,
        }
    }

    /// Joins consumer group `group` reading `topics`. Each group sees every message once
    /// (at least once, when a consumer stops before committing).
    pub fn subscribe(&self, group: &str, topics: &[String]) -> Result<Subscription, BusError> {
        Ok(match self {
            Self::Memory(bus) => Subscription::Memory(bus.subscribe(group, topics)),
            Self::Kafka(bus) => Subscription::Kafka(bus.subscribe(group, topics)?),
        })
    }

    /// Waits up to `timeout` for messages still buffered in the client to be delivered.
    pub async fn flush(&self, timeout: Duration) {
        if let Self::Kafka(bus) = self {
            bus.flush(timeout).await;
        }
    }
}

/// A message received by a consumer, with where it sits in its topic.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: Message,
    pub partition: i32,
    pub offset: i64,
}

/// One consumer's membership of a group.
pub enum Subscription {
    Memory(memory::Subscription),
    Kafka(kafka::Subscription),
}

impl Subscription {
    /// The next message for this consumer; waits until there is one. Cancel-safe.
    pub async fn next(&mut self) -> Result<Delivery, BusError> {
        match self {
            Self::Memory(sub) => Ok(sub.next().await),
            Self::Kafka(sub) => sub.next().await,
        }
    }

    /// Records that `delivery` is done with, so the group never gets it again.
    pub fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        match self {
            Self::Memory(sub) => {
                sub.commit(delivery);
                Ok(())
            }
            Self::Kafka(sub) => sub.commit(delivery),
        }
    }

    /// Messages published but not yet committed by this group, where known.
    pub fn lag(&self) -> Option<u64> {
        match self {
            Self::Memory(sub) => Some(sub.lag()),
            Self::Kafka(sub) => sub.lag(),
        }
    }

    /// Leaves the group, committing what was committed so far.
    pub async fn close(self) {
        if let Self::Kafka(sub) = self {
            sub.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_urls() {
        assert_eq!("memory".parse::<BusUrl>(), Ok(BusUrl::Memory));
        assert_eq!(
            "kafka://127.0.0.1:9092".parse::<BusUrl>(),
            Ok(BusUrl::Kafka {
                bootstrap: "127.0.0.1:9092".to_owned()
            })
        );
        assert_eq!(
            "kafka://a:1,b:2".parse::<BusUrl>().unwrap().to_string(),
            "kafka://a:1,b:2"
        );
        assert!("kafka://".parse::<BusUrl>().is_err());
        assert!(
            "rabbit://x"
                .parse::<BusUrl>()
                .unwrap_err()
                .contains("kafka://")
        );
    }
}
