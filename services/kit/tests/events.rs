//! Events through the outbox, on the in-memory bus and on a real Kafka-protocol broker
//! (Tansu): published in order per subject, nothing for a rolled-back transaction, each
//! applied once, failures retried then dead-lettered with the reason, and a broker restart
//! in the middle of 10 000 events losing none and applying none twice. A consumer that only
//! wants news passes over what came before it.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sloop_kit::Tx;
use sloop_kit::consumer::RetryPolicy;
use sloop_kit::testing::{Broker, TestApp, TestBackend};
use sloop_kit::{
    BusUrl, Consumer, Context, Event, EventBus, EventType, Handler, HandlerError, Json, Problem,
    Service,
};
use sqlx::migrate::Migrator;

static MIGRATIONS: Migrator = sqlx::migrate!("tests/ledger");

const ENTRY: EventType = EventType {
    name: "test.ledger.entry",
    topic: "test.ledger",
    version: 1,
};

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    subject: String,
    seq: i64,
}

#[derive(Debug, Deserialize)]
struct Write {
    subject: String,
    from: i64,
    count: i64,
    /// Roll the transaction back after writing: nothing may be published.
    #[serde(default)]
    roll_back: bool,
}

/// Writes `count` entries (and their events) in one transaction.
async fn write(State(ctx): State<Context>, Json(w): Json<Write>) -> Result<&'static str, Problem> {
    let mut tx = ctx.db().begin().await.map_err(|e| Problem::internal(&e))?;
    for seq in w.from..w.from + w.count {
        sqlx::query("INSERT INTO entries (subject, seq) VALUES ($1, $2)")
            .bind(&w.subject)
            .bind(seq)
            .execute(tx.executor())
            .await
            .map_err(|e| Problem::internal(&e))?;
        let entry = Entry {
            subject: w.subject.clone(),
            seq,
        };
        ctx.outbox()
            .append(&mut tx, ENTRY, &w.subject, &entry)
            .await
            .map_err(|e| Problem::internal(&e))?;
    }
    if w.roll_back {
        tx.rollback().await.map_err(|e| Problem::internal(&e))?;
        return Ok("rolled back");
    }
    tx.commit().await.map_err(|e| Problem::internal(&e))?;
    ctx.outbox().wake();
    Ok("written")
}

fn producer() -> Service {
    Service::new("producer", 0)
        .database(&MIGRATIONS)
        .publishes(&[ENTRY])
        .api(|ctx| {
            Router::new()
                .route("/write", post(write))
                .with_state(ctx.clone())
        })
}

/// Applies entries, noting any that arrive before their predecessor. Subject `poison`
/// always fails.
struct Apply;

impl Handler for Apply {
    fn handle<'a>(
        &'a self,
        event: &'a Event,
        tx: &'a mut Tx,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let entry: Entry = event
                .data_as()
                .map_err(|e| HandlerError::Reject(e.to_string()))?;
            if entry.subject == "poison" {
                return Err(HandlerError::Retry("poison never applies".into()));
            }
            let (last,): (Option<i64>,) =
                sqlx::query_as("SELECT MAX(seq) FROM applied WHERE subject = $1")
                    .bind(&entry.subject)
                    .fetch_one(tx.executor())
                    .await?;
            let last = last.unwrap_or(0);
            if entry.seq != last + 1 {
                sqlx::query(
                    "INSERT INTO out_of_order (subject, seq, last_seen) VALUES ($1, $2, $3)",
                )
                .bind(&entry.subject)
                .bind(entry.seq)
                .bind(last)
                .execute(tx.executor())
                .await?;
            }
            sqlx::query("INSERT INTO applied (subject, seq, event_id) VALUES ($1, $2, $3)")
                .bind(&entry.subject)
                .bind(entry.seq)
                .bind(&event.id)
                .execute(tx.executor())
                .await?;
            Ok(())
        })
    }
}

fn consumer() -> Service {
    Service::new("consumer", 0)
        .database(&MIGRATIONS)
        .consumes("ledger", |_| {
            Consumer::new("ledger", &[ENTRY.topic], Apply).with_retry(RetryPolicy {
                max_attempts: 3,
                first_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(50),
            })
        })
}

/// A producer and a consumer on one bus.
struct Pair {
    producer: TestApp,
    consumer: TestApp,
    bus: EventBus,
    broker: Option<Broker>,
}

impl Pair {
    async fn start(kafka: bool) -> Self {
        Self::start_with(kafka, None).await
    }

    /// With `chaos_token`, the consumer runs with chaos on and that admin token.
    async fn start_with(kafka: bool, chaos_token: Option<&str>) -> Self {
        let broker = if kafka {
            Some(Broker::start().await)
        } else {
            None
        };
        let bus = match &broker {
            Some(broker) => EventBus::connect(&broker.url(), "test").unwrap(),
            None => EventBus::connect(&BusUrl::Memory, "test").unwrap(),
        };
        // Both services would create these at once as they start; one would be refused
        // with TopicAlreadyExists, which breaks Tansu 0.6's storage. A deployment creates
        // its topics ahead too.
        let dlq = format!("{}.dlq", ENTRY.topic);
        bus.ensure_topics(&[ENTRY.topic.to_owned(), dlq])
            .await
            .unwrap();
        let producer = TestApp::builder(producer())
            .backend(TestBackend::Sqlite)
            .bus(bus.clone())
            .spawn()
            .await;
        let mut consumer = TestApp::builder(consumer())
            .backend(TestBackend::Sqlite)
            .bus(bus.clone());
        if let Some(token) = chaos_token {
            consumer = consumer.chaos(token);
        }
        let consumer = consumer.spawn().await;
        Self {
            producer,
            consumer,
            bus,
            broker,
        }
    }

    async fn write(&self, subject: &str, from: i64, count: i64) {
        self.producer
            .post(
                "/write",
                &json!({ "subject": subject, "from": from, "count": count }),
            )
            .await
            .assert_status(200);
    }

    async fn applied(&self) -> i64 {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM applied")
            .fetch_one(self.consumer.db().pool())
            .await
            .unwrap();
        n
    }

    /// Waits until `want` events are applied; past `within`, fails saying where the rest
    /// are.
    async fn wait_applied(&mut self, want: i64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(broker) = self.broker.as_mut() {
                broker.restart_if_crashed().await;
            }
            let have = self.applied().await;
            if have >= want {
                assert_eq!(have, want, "more applied than written");
                return;
            }
            if Instant::now() >= deadline {
                panic!("{}", self.shortfall(have, want, within).await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Which written entries were not applied, and whether the producer still holds them,
    /// the topic has them, or they were dead-lettered.
    async fn shortfall(&self, have: i64, want: i64, within: Duration) -> String {
        let written: Vec<(String, i64)> = sqlx::query_as("SELECT subject, seq FROM entries")
            .fetch_all(self.producer.db().pool())
            .await
            .unwrap();
        let applied: std::collections::HashSet<(String, i64)> =
            sqlx::query_as("SELECT subject, seq FROM applied")
                .fetch_all(self.consumer.db().pool())
                .await
                .unwrap()
                .into_iter()
                .collect();
        let missing: Vec<_> = written
            .into_iter()
            .filter(|entry| !applied.contains(entry))
            .collect();
        let (unpublished,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM kit_outbox WHERE published_at_ms IS NULL")
                .fetch_one(self.producer.db().pool())
                .await
                .unwrap_or((-1,));
        let on_topic = |messages: Vec<sloop_kit::event::Message>| {
            messages
                .iter()
                .filter_map(|m| Event::from_message(m).ok())
                .filter_map(|e| e.data_as::<Entry>().ok())
                .filter(|e| missing.contains(&(e.subject.clone(), e.seq)))
                .count()
        };
        let in_topic = on_topic(self.read_all(ENTRY.topic, usize::MAX).await);
        let dead_lettered = on_topic(
            self.read_all(&format!("{}.dlq", ENTRY.topic), usize::MAX)
                .await,
        );
        let broker_log = self.broker.as_ref().map(Broker::log).unwrap_or_default();
        format!(
            "only {have} of {want} events applied within {within:?}; not applied: \
             {missing:?}; outbox rows not yet published: {unpublished}; of the missing, \
             {in_topic} are on the topic and {dead_lettered} dead-lettered; broker log:\n\
             {broker_log}"
        )
    }

    async fn out_of_order(&self) -> i64 {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM out_of_order")
            .fetch_one(self.consumer.db().pool())
            .await
            .unwrap();
        n
    }

    /// Every message on `topic` so far, read by a fresh consumer group.
    async fn read_all(&self, topic: &str, want: usize) -> Vec<sloop_kit::event::Message> {
        let mut subscription = self
            .bus
            .subscribe(
                &format!("reader-{}", uuid::Uuid::new_v4().simple()),
                &[topic.to_owned()],
            )
            .unwrap();
        let mut messages = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while messages.len() < want {
            match tokio::time::timeout_at(deadline, subscription.next()).await {
                Ok(Ok(delivery)) => messages.push(delivery.message),
                Ok(Err(err)) => panic!("reading {topic}: {err}"),
                Err(_) => break,
            }
        }
        subscription.close().await;
        messages
    }

    async fn stop(self) {
        self.producer.stop().await;
        self.consumer.stop().await;
    }
}

/// A consumer that only wants news passes over what was published before it started: never
/// handled nor recorded as applied, committed all the same; what comes after applies.
#[tokio::test(flavor = "multi_thread")]
async fn a_news_consumer_passes_over_what_came_before_it() {
    let bus = EventBus::connect(&BusUrl::Memory, "test").unwrap();
    let EventBus::Memory(memory) = &bus else {
        unreachable!("a memory bus")
    };
    let producer = TestApp::builder(producer())
        .backend(TestBackend::Sqlite)
        .bus(bus.clone())
        .spawn()
        .await;
    let write = |subject: &'static str, count: i64| {
        let producer = &producer;
        async move {
            producer
                .post(
                    "/write",
                    &json!({ "subject": subject, "from": 1, "count": count }),
                )
                .await
                .assert_status(200);
        }
    };
    write("old", 3).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while memory.events(ENTRY.topic).len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the old events were never published"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cutoff = time::OffsetDateTime::now_utc();
    let news = Service::new("consumer", 0)
        .database(&MIGRATIONS)
        .consumes("ledger", move |_| {
            Consumer::new("ledger", &[ENTRY.topic], Apply).skipping_events_before(cutoff)
        });
    let consumer = TestApp::builder(news)
        .backend(TestBackend::Sqlite)
        .bus(bus.clone())
        .spawn()
        .await;
    write("new", 2).await;

    let subjects = || async {
        sqlx::query_as::<_, (String,)>("SELECT subject FROM applied ORDER BY seq")
            .fetch_all(consumer.db().pool())
            .await
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while subjects().await.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the new events were never applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let applied: Vec<String> = subjects().await.into_iter().map(|(s,)| s).collect();
    assert_eq!(applied, ["new", "new"], "only what came after the start");
    let (recorded,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM kit_processed_events")
        .fetch_one(consumer.db().pool())
        .await
        .unwrap();
    assert_eq!(recorded, 2, "passed-over events are not recorded");
    let metrics = consumer.get("/metrics").await.text();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("messaging_client_consumed_messages_total{")
                && l.contains("outcome=\"skipped\"")
                && l.ends_with(" 3")
        ),
        "three passed over, and counted: {metrics}"
    );
    producer.stop().await;
    consumer.stop().await;
}

macro_rules! on_both_buses {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name(false).await })*
        }
        mod kafka {
            $(#[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name(true).await })*
        }
    };
}

on_both_buses!(
    events_arrive_in_order_per_subject_and_apply_once,
    a_rolled_back_transaction_publishes_nothing,
    redelivered_events_apply_once,
    failing_events_are_retried_then_dead_lettered_with_the_reason,
);

async fn events_arrive_in_order_per_subject_and_apply_once(kafka: bool) {
    let mut pair = Pair::start(kafka).await;
    for round in 0..5 {
        for subject in ["a", "b", "c", "d"] {
            pair.write(subject, round * 20 + 1, 20).await;
        }
    }
    pair.wait_applied(400, Duration::from_secs(60)).await;
    assert_eq!(pair.out_of_order().await, 0, "per-subject order held");
    pair.producer
        .wait_for_outbox_drained(Duration::from_secs(10))
        .await;
    let metrics = pair.consumer.get("/metrics").await.text();
    assert!(
        metrics.contains("messaging_client_consumed_messages_total{"),
        "{metrics}"
    );
    pair.stop().await;
}

async fn a_rolled_back_transaction_publishes_nothing(kafka: bool) {
    let mut pair = Pair::start(kafka).await;
    pair.producer
        .post(
            "/write",
            &json!({ "subject": "ghost", "from": 1, "count": 5, "roll_back": true }),
        )
        .await
        .assert_status(200);
    // A marker written after it: once the marker is applied, the ghost had its chance.
    pair.write("marker", 1, 1).await;
    pair.wait_applied(1, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pair.applied().await, 1);
    assert_eq!(
        sloop_kit::outbox::pending(pair.producer.db())
            .await
            .unwrap(),
        0
    );
    let (ghosts,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM kit_outbox WHERE subject = 'ghost'")
            .fetch_one(pair.producer.db().pool())
            .await
            .unwrap();
    assert_eq!(ghosts, 0);
    pair.stop().await;
}

async fn redelivered_events_apply_once(kafka: bool) {
    let mut pair = Pair::start(kafka).await;
    pair.write("dup", 1, 3).await;
    pair.wait_applied(3, Duration::from_secs(60)).await;
    // The same three messages again, as a relay that crashed before marking them sent would.
    let again = pair.read_all(ENTRY.topic, 3).await;
    assert_eq!(again.len(), 3);
    for message in &again {
        pair.bus.publish(message).await.unwrap();
    }
    pair.write("dup", 4, 1).await;
    pair.wait_applied(4, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pair.applied().await, 4, "duplicates skipped by event id");
    let metrics = pair.consumer.get("/metrics").await.text();
    assert!(metrics.contains("outcome=\"duplicate\""), "{metrics}");
    pair.stop().await;
}

async fn failing_events_are_retried_then_dead_lettered_with_the_reason(kafka: bool) {
    let mut pair = Pair::start(kafka).await;
    pair.write("poison", 1, 1).await;
    pair.write("fine", 1, 2).await;
    // The poison does not block the others.
    pair.wait_applied(2, Duration::from_secs(60)).await;
    let dead = pair.read_all(&format!("{}.dlq", ENTRY.topic), 1).await;
    assert_eq!(dead.len(), 1, "one message dead-lettered");
    let dead = &dead[0];
    assert_eq!(dead.key, "poison");
    assert_eq!(dead.header("dlq_reason"), Some("poison never applies"));
    assert_eq!(dead.header("dlq_attempts"), Some("3"));
    assert_eq!(dead.header("dlq_consumer"), Some("ledger"));
    assert_eq!(Event::from_message(dead).unwrap().subject, "poison");
    let metrics = pair.consumer.get("/metrics").await.text();
    assert!(
        metrics.contains("messaging_process_retries_total{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("messaging_dead_lettered_messages_total{"),
        "{metrics}"
    );
    pair.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consume_fault_fails_handling_until_it_goes() {
    let token = "events-chaos";
    let mut pair = Pair::start_with(false, Some(token)).await;
    let applied = pair
        .consumer
        .request(reqwest::Method::POST, "/chaos/faults")
        .header("authorization", &format!("Bearer {token}"))
        .json(&json!({"target": "consume", "action": {"abort": {"status": 503, "detail": "the ledger is down"}}}))
        .send()
        .await;
    applied.assert_status(201);
    pair.write("hit", 1, 1).await;
    let dead = pair.read_all(&format!("{}.dlq", ENTRY.topic), 1).await;
    assert_eq!(
        dead.len(),
        1,
        "the injected failure is retried, then dead-lettered"
    );
    assert_eq!(dead[0].header("dlq_reason"), Some("the ledger is down"));
    assert_eq!(pair.applied().await, 0);
    pair.consumer
        .request(reqwest::Method::DELETE, "/chaos/faults")
        .header("authorization", &format!("Bearer {token}"))
        .send()
        .await
        .assert_status(200);
    pair.write("after", 1, 1).await;
    pair.wait_applied(1, Duration::from_secs(30)).await;
    pair.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restart_mid_stream_loses_nothing_and_applies_nothing_twice() {
    let mut pair = Pair::start(true).await;
    let subjects = ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"];
    // 10 000 events: 50 rounds of 20 per subject.
    for round in 0..50 {
        if round == 25 {
            let broker = pair.broker.as_mut().unwrap();
            broker.stop().await;
            // Writes go on while the broker is down: they wait in the outbox.
            for subject in subjects {
                pair.write(subject, round * 20 + 1, 20).await;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            pair.broker.as_mut().unwrap().restart().await;
            continue;
        }
        for subject in subjects {
            pair.write(subject, round * 20 + 1, 20).await;
        }
    }
    pair.wait_applied(10_000, Duration::from_secs(240)).await;
    assert_eq!(
        pair.out_of_order().await,
        0,
        "per-subject order held across the restart"
    );
    let (distinct,): (i64,) = sqlx::query_as("SELECT COUNT(DISTINCT event_id) FROM applied")
        .fetch_one(pair.consumer.db().pool())
        .await
        .unwrap();
    assert_eq!(distinct, 10_000, "each event applied exactly once");
    pair.producer
        .wait_for_outbox_drained(Duration::from_secs(30))
        .await;
    pair.stop().await;
}
