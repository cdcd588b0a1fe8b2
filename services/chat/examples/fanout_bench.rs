//! Chat fan-out benchmark: one room with `--sockets` members, each holding a WebSocket to the
//! chat service at `--target`; one sender posts `--messages` messages at `--rate` a second
//! over HTTP, and every socket times each message from the moment its POST was sent to the
//! frame's arrival. Prints deliveries per second and the send-to-receive latency
//! distribution, and counts sockets the server dropped.
//!
//! Opening a thousand sockets makes a thousand presence changes, each told to every member
//! connected: a million presence frames. The benchmark waits for that to drain (a warm-up
//! message reaching every socket) and reports how long it took, then times the messages.
//!
//! Talks to the service directly with the identity headers the gateway would set, so it
//! measures chat, not the front door. `scripts/bench-chat.sh` starts a release `sloop-chat`
//! and runs this against it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Debug, Parser)]
#[command(name = "fanout-bench")]
struct Args {
    /// The chat service's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8083")]
    target: String,
    /// Members of the room, each with one WebSocket.
    #[arg(long, default_value_t = 1000)]
    sockets: usize,
    /// Messages the sender posts.
    #[arg(long, default_value_t = 300)]
    messages: usize,
    /// Messages a second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
}

/// What one socket saw.
struct Seen {
    latencies: Histogram<u64>,
    received: u64,
    last: Option<Instant>,
    dropped: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::new();
    let room = create_room(&http, &args.target).await?;
    let members: Vec<String> = (0..args.sockets).map(|n| format!("bench-{n:05}")).collect();
    join_all(&http, &args.target, &room, &members).await?;
    let sent: Arc<Vec<OnceLock<Instant>>> =
        Arc::new((0..args.messages).map(|_| OnceLock::new()).collect());
    let warmed = Arc::new(AtomicUsize::new(0));
    let opening = Instant::now();
    let readers = open_sockets(&args, &members, &sent, &warmed).await?;
    let opened = opening.elapsed();
    post(&http, &args.target, &room, "warm-up").await?;
    while warmed.load(Ordering::Relaxed) < readers.len() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "{} sockets opened in {:.1} s; their presence frames drained {:.1} s later; \
         sending {} messages at {}/s",
        readers.len(),
        opened.as_secs_f64(),
        (opening.elapsed() - opened).as_secs_f64(),
        args.messages,
        args.rate
    );

    let started = Instant::now();
    send_all(&http, &args, &room, &sent).await?;
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut received, mut dropped, mut last) = (0u64, 0usize, started);
    for reader in readers {
        let seen = reader.await?;
        all.add(&seen.latencies)?;
        received += seen.received;
        dropped += usize::from(seen.dropped);
        last = last.max(seen.last.unwrap_or(started));
    }
    report(&args, &all, received, dropped, last - started);
    Ok(())
}

async fn create_room(http: &reqwest::Client, target: &str) -> anyhow::Result<String> {
    let room: Value = http
        .post(format!("{target}/rooms"))
        .header("x-user-id", "bench-sender")
        .json(&json!({ "name": "fan-out bench" }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(room["id"].as_str().unwrap_or_default().to_owned())
}

/// Every member joins, a few dozen at a time.
async fn join_all(
    http: &reqwest::Client,
    target: &str,
    room: &str,
    members: &[String],
) -> anyhow::Result<()> {
    let joins = futures::stream::iter(members.iter().map(|member| {
        let request = http
            .put(format!("{target}/rooms/{room}/members/{member}"))
            .header("x-user-id", member);
        async move { request.send().await?.error_for_status() }
    }))
    .buffer_unordered(32)
    .collect::<Vec<_>>()
    .await;
    for join in joins {
        join?;
    }
    Ok(())
}

/// Opens every socket, waits for its welcome, then reads it until it has every message
/// (or the server closes it) on a task of its own.
async fn open_sockets(
    args: &Args,
    members: &[String],
    sent: &Arc<Vec<OnceLock<Instant>>>,
    warmed: &Arc<AtomicUsize>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<Seen>>> {
    let url = format!("{}/socket", args.target.replacen("http", "ws", 1));
    let mut readers = Vec::with_capacity(members.len());
    for member in members {
        let mut request = url.as_str().into_client_request()?;
        request.headers_mut().insert("x-user-id", member.parse()?);
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
        // The welcome frame: the socket is registered and will get every message.
        socket.next().await.transpose()?;
        let (sent, warmed, expected) = (sent.clone(), warmed.clone(), args.messages as u64);
        readers.push(tokio::spawn(async move {
            let mut seen = Seen {
                latencies: Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds"),
                received: 0,
                last: None,
                dropped: false,
            };
            while seen.received < expected {
                let Some(Ok(frame)) = socket.next().await else {
                    seen.dropped = true;
                    break;
                };
                match frame {
                    Message::Text(text) => {
                        if text.contains("\"text\":\"warm-up\"") {
                            warmed.fetch_add(1, Ordering::Relaxed);
                        }
                        record(&text, &sent, &mut seen)
                    }
                    Message::Close(_) => {
                        seen.dropped = true;
                        break;
                    }
                    _ => {}
                }
            }
            seen
        }));
    }
    Ok(readers)
}

/// Times one message frame against its send instant (the text is `bench <n>`).
fn record(text: &str, sent: &[OnceLock<Instant>], seen: &mut Seen) {
    let Ok(frame) = serde_json::from_str::<Value>(text) else {
        return;
    };
    if frame["type"] != "message" {
        return;
    }
    let at = Instant::now();
    let n = frame["text"]
        .as_str()
        .and_then(|t| t.strip_prefix("bench "))
        .and_then(|n| n.parse::<usize>().ok());
    if let Some(send) = n.and_then(|n| sent.get(n)).and_then(OnceLock::get) {
        let micros = u64::try_from((at - *send).as_micros()).unwrap_or(u64::MAX);
        let _ = seen.latencies.record(micros.max(1));
        seen.received += 1;
        seen.last = Some(at);
    }
}

/// Posts the messages at the rate, each stamped before its request leaves.
async fn send_all(
    http: &reqwest::Client,
    args: &Args,
    room: &str,
    sent: &[OnceLock<Instant>],
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    for (n, stamp) in sent.iter().enumerate() {
        tick.tick().await;
        let _ = stamp.set(Instant::now());
        post(http, &args.target, room, &format!("bench {n}")).await?;
    }
    Ok(())
}

/// Posts `text` to `room` as the sender.
async fn post(http: &reqwest::Client, target: &str, room: &str, text: &str) -> anyhow::Result<()> {
    http.post(format!("{target}/rooms/{room}/messages"))
        .header("x-user-id", "bench-sender")
        .json(&json!({ "text": text }))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

fn report(args: &Args, all: &Histogram<u64>, received: u64, dropped: usize, took: Duration) {
    let ms = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
    let expected = (args.sockets * args.messages) as u64;
    println!(
        "delivered {received} of {expected} frames in {:.1} s: {:.0} deliveries/s; sockets dropped: {dropped}",
        took.as_secs_f64(),
        received as f64 / took.as_secs_f64()
    );
    println!(
        "send-to-receive latency: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        all.max() as f64 / 1000.0
    );
}
