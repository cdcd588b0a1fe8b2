//! Events benchmark: how many events per second go from the outbox to an applying consumer,
//! and how long each takes from the producing transaction to the consumer's commit, on the
//! in-memory bus and on a Tansu broker. Two services through the real chassis (SQLite
//! each), the producer fed over HTTP in transactions of `--batch` events.
//!
//!   cargo run --release -p sloop-kit --features testing --example events-bench -- --bus memory
//!   cargo run --release -p sloop-kit --features testing --example events-bench -- --bus kafka
//!
//! Two phases: as fast as `--writers` HTTP writers can go (throughput; latency there is
//! mostly queueing behind the backlog), then `--rate` single-event transactions per second
//! for `--paced-seconds` (latency of an event when the pipeline is not saturated).
//!
//! Prints one JSON line: bus, events, seconds, events_per_second, latency_ms {p50, p99, max}
//! of the saturated phase, and paced {rate, events, latency_ms} of the paced one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use serde_json::json;
use sloop_kit::Tx;
use sloop_kit::clock::parse_rfc3339;
use sloop_kit::testing::{Broker, TestApp, TestBackend};
use sloop_kit::{
    BusUrl, Consumer, Context, Event, EventBus, EventType, Handler, HandlerError, Json, Problem,
    Service,
};
use sqlx::migrate::Migrator;

static MIGRATIONS: Migrator = sqlx::migrate!("tests/ledger");

const ENTRY: EventType = EventType {
    name: "bench.entry",
    topic: "bench.entries",
    version: 1,
};

#[derive(serde::Deserialize)]
struct Write {
    subject: String,
    count: i64,
}

async fn write(State(ctx): State<Context>, Json(w): Json<Write>) -> Result<&'static str, Problem> {
    let mut tx = ctx.db().begin().await.map_err(|e| Problem::internal(&e))?;
    for n in 0..w.count {
        ctx.outbox()
            .append(&mut tx, ENTRY, &w.subject, &json!({ "n": n }))
            .await
            .map_err(|e| Problem::internal(&e))?;
    }
    tx.commit().await.map_err(|e| Problem::internal(&e))?;
    ctx.outbox().wake();
    Ok("ok")
}

/// Records each event's age at apply time.
struct Measure(Arc<Mutex<Histogram<u64>>>);

impl Handler for Measure {
    fn handle<'a>(
        &'a self,
        event: &'a Event,
        tx: &'a mut Tx,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            // One row per event (the ledger table's key is subject and sequence).
            sqlx::query("INSERT INTO applied (subject, seq, event_id) VALUES ($1, 0, $1)")
                .bind(&event.id)
                .execute(tx.executor())
                .await?;
            if let Some(at) = parse_rfc3339(&event.time) {
                let age = (time::OffsetDateTime::now_utc() - at)
                    .whole_microseconds()
                    .max(1) as u64;
                let _ = self.0.lock().expect("histogram lock").record(age);
            }
            Ok(())
        })
    }
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() {
    let bus_kind = arg("--bus", "memory");
    let events: i64 = arg("--events", "20000").parse().expect("--events N");
    let batch: i64 = arg("--batch", "50").parse().expect("--batch N");
    let writers: i64 = arg("--writers", "8").parse().expect("--writers N");
    let rate: u64 = arg("--rate", "200")
        .parse()
        .expect("--rate EVENTS_PER_SECOND");
    let paced_seconds: u64 = arg("--paced-seconds", "10")
        .parse()
        .expect("--paced-seconds N");
    let broker = if bus_kind == "kafka" {
        Some(Broker::start().await)
    } else {
        None
    };
    let url = broker.as_ref().map_or(BusUrl::Memory, Broker::url);
    let bus = EventBus::connect(&url, "bench").expect("connect the bus");
    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).unwrap(),
    ));
    let producer = Service::new("producer", 0)
        .database(&MIGRATIONS)
        .publishes(&[ENTRY])
        .api(|ctx| {
            Router::new()
                .route("/write", post(write))
                .with_state(ctx.clone())
        });
    let recorder = histogram.clone();
    let consumer = Service::new("consumer", 0)
        .database(&MIGRATIONS)
        .consumes("bench", move |_| {
            Consumer::new("bench", &[ENTRY.topic], Measure(recorder))
        });
    let producer = TestApp::builder(producer)
        .backend(TestBackend::Sqlite)
        .bus(bus.clone())
        .spawn()
        .await;
    let consumer = TestApp::builder(consumer)
        .backend(TestBackend::Sqlite)
        .bus(bus.clone())
        .spawn()
        .await;
    // Warm-up: the consumer group joins before the clock starts.
    producer
        .post("/write", &json!({ "subject": "warm", "count": 1 }))
        .await
        .assert_status(200);
    wait_applied(&consumer, 1).await;
    histogram.lock().unwrap().reset();

    let started = Instant::now();
    let requests = events / batch;
    let per_writer = requests / writers;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (client, url) = (producer.client.clone(), producer.url("/write"));
        tasks.push(tokio::spawn(async move {
            for r in 0..per_writer {
                let body =
                    json!({ "subject": format!("s{}", (w * per_writer + r) % 64), "count": batch });
                let response = client.post(&url).json(&body).send().await.expect("write");
                assert!(response.status().is_success());
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total = 1 + writers * per_writer * batch;
    wait_applied(&consumer, total).await;
    let seconds = started.elapsed().as_secs_f64();
    let saturated = latency(&histogram);

    histogram.lock().unwrap().reset();
    let paced = rate * paced_seconds;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut writes = Vec::new();
    for n in 0..paced {
        ticks.tick().await;
        let (client, url) = (producer.client.clone(), producer.url("/write"));
        writes.push(tokio::spawn(async move {
            let body = json!({ "subject": format!("p{}", n % 64), "count": 1 });
            let response = client.post(&url).json(&body).send().await.expect("write");
            assert!(response.status().is_success());
        }));
    }
    for write in writes {
        write.await.unwrap();
    }
    wait_applied(&consumer, total + paced as i64).await;
    println!(
        "{}",
        json!({
            "bus": bus_kind,
            "events": total - 1,
            "seconds": (seconds * 100.0).round() / 100.0,
            "events_per_second": ((total - 1) as f64 / seconds).round(),
            "latency_ms": saturated,
            "paced": { "rate": rate, "events": paced, "latency_ms": latency(&histogram) },
        })
    );
    producer.stop().await;
    consumer.stop().await;
}

fn latency(histogram: &Mutex<Histogram<u64>>) -> serde_json::Value {
    let h = histogram.lock().unwrap();
    json!({
        "p50": h.value_at_quantile(0.5) as f64 / 1000.0,
        "p99": h.value_at_quantile(0.99) as f64 / 1000.0,
        "max": h.max() as f64 / 1000.0,
    })
}

async fn wait_applied(consumer: &TestApp, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM applied")
            .fetch_one(consumer.db().pool())
            .await
            .unwrap();
        if n >= want {
            return;
        }
        assert!(Instant::now() < deadline, "only {n} of {want} applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
