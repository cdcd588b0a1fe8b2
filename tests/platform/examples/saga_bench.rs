//! The order saga's throughput and latency: orders placed per second against orders
//! confirmed per second, and the time from placement to confirmation (p50, p99), with
//! every service in this process on the real chassis.
//!
//! `cargo run --release -p platform-tests --example saga-bench -- --bus memory` runs on
//! SQLite with the in-memory bus; `--bus kafka` on PostgreSQL (`SLOOP_TEST_POSTGRES_URL`)
//! with a Tansu broker it starts on loopback. `scripts/bench-saga.sh` runs both.
//!
//! Two phases, as in the events benchmark: as fast as `--writers` customers go (throughput;
//! latency there includes the backlog), then `--paced` orders at `--rate` per second (the
//! latency of one order when nothing is queued). Orders go to the store directly, not
//! through the gateway: this measures the saga, not the front door.

use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use platform_tests::in_process::InProcess;
use serde_json::json;
use sloop_kit::testing::{Broker, TestBackend};
use sloop_kit::{BusUrl, EventBus};

#[derive(Debug, Parser)]
struct Args {
    /// `memory` (SQLite, in-memory bus) or `kafka` (PostgreSQL, Tansu).
    #[arg(long, default_value = "memory")]
    bus: String,
    /// Orders in the throughput phase.
    #[arg(long, default_value_t = 2000)]
    orders: usize,
    /// Orders in flight at once in the throughput phase.
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// Orders in the paced phase.
    #[arg(long, default_value_t = 500)]
    paced: usize,
    /// Orders per second in the paced phase.
    #[arg(long, default_value_t = 20)]
    rate: u32,
}

/// What one phase measured.
struct Phase {
    orders: usize,
    placed_per_second: f64,
    confirmed_per_second: f64,
    p50: Duration,
    p99: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let broker = match args.bus.as_str() {
        "memory" => None,
        "kafka" => Some(Broker::start().await),
        other => anyhow::bail!("--bus is memory or kafka, not {other}"),
    };
    let (backend, bus) = match &broker {
        None => (
            TestBackend::Sqlite,
            EventBus::connect(&BusUrl::Memory, "bench")?,
        ),
        Some(broker) => (
            TestBackend::Postgres,
            EventBus::connect(&broker.url(), "bench")?,
        ),
    };
    let platform = InProcess::start_on(backend, bus).await;
    let store = platform.service("store");
    let product = stock(&store.url(""), args.orders + args.paced).await?;

    let burst = run_phase(
        &platform,
        &product,
        args.orders,
        Pace::Writers(args.writers),
    )
    .await?;
    let paced = run_phase(&platform, &product, args.paced, Pace::Rate(args.rate)).await?;
    println!("| bus | phase | orders | placed/s | confirmed/s | saga p50 | saga p99 |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (name, phase) in [
        (format!("{} writers", args.writers), burst),
        (format!("{}/s", args.rate), paced),
    ] {
        println!(
            "| {} | {name} | {} | {:.0} | {:.0} | {:.1} ms | {:.1} ms |",
            args.bus,
            phase.orders,
            phase.placed_per_second,
            phase.confirmed_per_second,
            phase.p50.as_secs_f64() * 1e3,
            phase.p99.as_secs_f64() * 1e3,
        );
    }
    platform.stop().await;
    if let Some(mut broker) = broker {
        broker.stop().await;
    }
    Ok(())
}

async fn stock(store: &str, units: usize) -> anyhow::Result<String> {
    let http = reqwest::Client::new();
    http.post(format!("{store}/categories"))
        .json(&json!({ "slug": "bench", "name": "Bench" }))
        .send()
        .await?;
    let product: serde_json::Value = http
        .post(format!("{store}/products"))
        .json(&json!({ "name": "Widget", "category": "bench",
                       "price": { "amount": 100, "currency": "EUR" }, "available": units }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(product["id"].as_str().unwrap_or_default().to_owned())
}

enum Pace {
    Writers(usize),
    Rate(u32),
}

async fn run_phase(
    platform: &InProcess,
    product: &str,
    orders: usize,
    pace: Pace,
) -> anyhow::Result<Phase> {
    let store = platform.service("store");
    let url = store.url("/orders");
    let http = reqwest::Client::new();
    let place = |i: usize| {
        let (http, url) = (http.clone(), url.clone());
        let body = json!({ "lines": [{ "product_id": product, "quantity": 1 }] });
        async move {
            let response = http
                .post(url)
                .header("x-user-id", format!("bench-{}", i % 64))
                .json(&body)
                .send()
                .await?
                .error_for_status()?;
            let order: serde_json::Value = response.json().await?;
            anyhow::Ok(order["id"].as_str().unwrap_or_default().to_owned())
        }
    };
    let started = Instant::now();
    let ids: Vec<String> = match pace {
        Pace::Writers(writers) => {
            futures::stream::iter(0..orders)
                .map(place)
                .buffer_unordered(writers)
                .collect::<Vec<_>>()
                .await
        }
        Pace::Rate(rate) => {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
            let mut pending = Vec::with_capacity(orders);
            for i in 0..orders {
                tick.tick().await;
                pending.push(tokio::spawn(place(i)));
            }
            let mut ids = Vec::with_capacity(orders);
            for task in pending {
                ids.push(task.await?);
            }
            ids
        }
    }
    .into_iter()
    .collect::<anyhow::Result<_>>()?;
    let placed_in = started.elapsed();
    let latencies = wait_confirmed(store.db(), &ids).await?;
    let confirmed_in = started.elapsed();
    Ok(Phase {
        orders,
        placed_per_second: orders as f64 / placed_in.as_secs_f64(),
        confirmed_per_second: orders as f64 / confirmed_in.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    })
}

/// Waits until every order in `ids` is confirmed; returns each one's placement-to-
/// confirmation time, from the store's own records.
async fn wait_confirmed(db: &sloop_kit::Database, ids: &[String]) -> anyhow::Result<Vec<Duration>> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let wanted: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
    loop {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT o.id, h.at, o.created_at_ms FROM orders o \
             JOIN order_history h ON h.order_id = o.id AND h.status = 'confirmed'",
        )
        .fetch_all(db.executor())
        .await?;
        let done: Vec<Duration> = rows
            .iter()
            .filter(|(id, _, _)| wanted.contains(id.as_str()))
            .filter_map(|(_, at, created_ms)| {
                let at = sloop_kit::clock::parse_rfc3339(at)?;
                let ms = (at.unix_timestamp_nanos() / 1_000_000) as i64 - created_ms;
                Some(Duration::from_millis(ms.max(0) as u64))
            })
            .collect();
        if done.len() == ids.len() {
            return Ok(done);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {} orders confirmed",
            done.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn percentile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}
