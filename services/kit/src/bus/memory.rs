//! The in-process bus: one append-only log per topic and one cursor per consumer group, so
//! it behaves like a single-partition Kafka topic (every group sees every message, in
//! order, at least once) for services that share a process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use super::Delivery;
use crate::event::{Event, Message};

/// An in-memory bus. Clones share the same topics.
#[derive(Clone, Default)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    /// Woken on every publish, so waiting consumers look again.
    published: Notify,
}

#[derive(Default)]
struct Topic {
    log: RwLock<Vec<Message>>,
    groups: Mutex<HashMap<String, Arc<Mutex<Cursor>>>>,
}

/// Where a group stands in a topic.
#[derive(Debug, Default)]
struct Cursor {
    /// Next message to hand out.
    next: usize,
    /// Messages before this one are done with.
    committed: usize,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    fn topic(&self, name: &str) -> Arc<Topic> {
        let mut topics = self.inner.topics.lock().expect("topic map lock");
        topics.entry(name.to_owned()).or_default().clone()
    }

    pub fn publish(&self, message: Message) {
        let topic = self.topic(&message.topic);
        topic.log.write().expect("topic log lock").push(message);
        self.inner.published.notify_waiters();
    }

    pub fn subscribe(&self, group: &str, topics: &[String]) -> Subscription {
        let members = topics
            .iter()
            .map(|name| {
                let topic = self.topic(name);
                let cursor = {
                    let mut groups = topic.groups.lock().expect("group map lock");
                    let cursor = groups.entry(group.to_owned()).or_default().clone();
                    // A new member starts after what the group committed, like a Kafka
                    // rebalance: anything handed out but not committed comes again.
                    let mut c = cursor.lock().expect("cursor lock");
                    c.next = c.committed;
                    drop(c);
                    cursor
                };
                (topic, cursor)
            })
            .collect();
        Subscription {
            bus: self.inner.clone(),
            members,
            turn: 0,
        }
    }

    /// Every message published on `topic` so far, oldest first.
    pub fn messages(&self, topic: &str) -> Vec<Message> {
        self.topic(topic)
            .log
            .read()
            .expect("topic log lock")
            .clone()
    }

    /// Every event published on `topic` so far, oldest first (messages that are not
    /// events are left out).
    pub fn events(&self, topic: &str) -> Vec<Event> {
        self.messages(topic)
            .iter()
            .filter_map(|m| Event::from_message(m).ok())
            .collect()
    }

    /// Waits up to `timeout` until `topic` holds an event matching `wanted`.
    pub async fn wait_for_event(
        &self,
        topic: &str,
        timeout: Duration,
        wanted: impl Fn(&Event) -> bool,
    ) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.published.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(event) = self.events(topic).into_iter().find(|e| wanted(e)) {
                return Some(event);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

/// One consumer of a group, over one or more topics.
pub struct Subscription {
    bus: Arc<Inner>,
    members: Vec<(Arc<Topic>, Arc<Mutex<Cursor>>)>,
    /// Which topic to look at first, so a busy topic cannot starve the others.
    turn: usize,
}

impl Subscription {
    pub async fn next(&mut self) -> Delivery {
        let bus = self.bus.clone();
        loop {
            let notified = bus.published.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(delivery) = self.take() {
                return delivery;
            }
            notified.await;
        }
    }

    fn take(&mut self) -> Option<Delivery> {
        let count = self.members.len();
        for step in 0..count {
            let index = (self.turn + step) % count;
            let (topic, cursor) = &self.members[index];
            let log = topic.log.read().expect("topic log lock");
            let mut cursor = cursor.lock().expect("cursor lock");
            if let Some(message) = log.get(cursor.next) {
                let offset = cursor.next as i64;
                cursor.next += 1;
                self.turn = index + 1;
                return Some(Delivery {
                    message: message.clone(),
                    partition: index as i32,
                    offset,
                });
            }
        }
        None
    }

    pub fn commit(&mut self, delivery: &Delivery) {
        if let Some((_, cursor)) = self.members.get(delivery.partition as usize) {
            let mut cursor = cursor.lock().expect("cursor lock");
            cursor.committed = cursor.committed.max(delivery.offset as usize + 1);
        }
    }

    pub fn lag(&self) -> u64 {
        self.members
            .iter()
            .map(|(topic, cursor)| {
                let len = topic.log.read().expect("topic log lock").len();
                len.saturating_sub(cursor.lock().expect("cursor lock").committed) as u64
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: &str, n: u8) -> Message {
        Message {
            topic: topic.to_owned(),
            key: "k".to_owned(),
            headers: Vec::new(),
            payload: vec![n],
        }
    }

    #[tokio::test]
    async fn every_group_sees_every_message_in_order() {
        let bus = MemoryBus::new();
        let topics = vec!["a".to_owned()];
        let mut first = bus.subscribe("one", &topics);
        let mut second = bus.subscribe("two", &topics);
        for n in 0..3 {
            bus.publish(message("a", n));
        }
        for sub in [&mut first, &mut second] {
            for n in 0..3 {
                let d = sub.next().await;
                assert_eq!(d.message.payload, vec![n]);
                sub.commit(&d);
            }
            assert_eq!(sub.lag(), 0);
        }
    }

    #[tokio::test]
    async fn uncommitted_messages_come_again_to_the_next_member() {
        let bus = MemoryBus::new();
        let topics = vec!["a".to_owned()];
        bus.publish(message("a", 1));
        bus.publish(message("a", 2));
        let mut sub = bus.subscribe("g", &topics);
        let first = sub.next().await;
        sub.commit(&first);
        let _second_not_committed = sub.next().await;
        assert_eq!(sub.lag(), 1);
        let mut again = bus.subscribe("g", &topics);
        assert_eq!(again.next().await.message.payload, vec![2]);
    }

    #[tokio::test]
    async fn a_waiting_consumer_wakes_on_publish() {
        let bus = MemoryBus::new();
        let mut sub = bus.subscribe("g", &["a".to_owned(), "b".to_owned()]);
        let publisher = bus.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            publisher.publish(message("b", 7));
        });
        let got = tokio::time::timeout(Duration::from_secs(2), sub.next())
            .await
            .expect("woken by the publish");
        assert_eq!(got.message.topic, "b");
    }
}
