//! Runs a scenario: the set-up phase, then the open-model measured phase. One dispatcher
//! wakes at each request's intended send time and hands it to a task; latency is measured
//! from that intended time, so a stalled server cannot hide its stall by slowing the load.
//! A request that cannot start within `max_lateness` of its due time (every in-flight
//! slot taken) is counted as dropped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::scenario::{Captures, Scenario, Step, render, render_json};
use crate::stats::{StepStats, Timeline};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("set-up step `{step}` failed: {message}")]
    Setup { step: String, message: String },
    #[error("step `{step}`: {message}")]
    Template { step: String, message: String },
    #[error("{0}")]
    Scenario(#[from] crate::scenario::ScenarioError),
}

/// Live counters, read by the progress display while the run goes on.
#[derive(Debug)]
pub struct Live {
    pub due: AtomicU64,
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    /// Latencies completed since the display last looked.
    recent: Mutex<hdrhistogram::Histogram<u64>>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            due: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            recent: Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 2)
                    .expect("static bounds"),
            ),
        }
    }
}

impl Live {
    /// p99 in milliseconds of the requests completed since the last call.
    pub fn take_recent_p99_ms(&self) -> f64 {
        let mut h = self.recent.lock().expect("recent lock");
        let p99 = h.value_at_percentile(99.0) as f64 / 1000.0;
        h.reset();
        p99
    }
}

/// Everything a run measured.
#[derive(Debug)]
pub struct RunResult {
    pub overall: StepStats,
    pub steps: BTreeMap<String, StepStats>,
    pub timeline: Timeline,
    /// How long the measured phase took, until the last response.
    pub elapsed: Duration,
    /// How many requests the profile asked for.
    pub planned: u64,
}

struct Shared {
    steps: Mutex<Vec<StepStats>>,
    timeline: Mutex<Timeline>,
    captures: RwLock<Captures>,
    seq: AtomicU64,
    live: Arc<Live>,
}

/// Runs `scenario` against `base_url` from `threads` OS threads, updating `live` as it goes.
///
/// Each thread runs its own single-threaded runtime, HTTP client and connections, and sends
/// every `threads`-th arrival: a request never hops between threads, which on a busy
/// machine costs more than the request itself.
pub async fn run(
    scenario: &Scenario,
    base_url: &str,
    live: Arc<Live>,
    threads: usize,
) -> Result<RunResult, RunError> {
    let base = base_url.trim_end_matches('/').to_owned();
    let shared = Arc::new(Shared {
        steps: Mutex::new(vec![StepStats::new(); scenario.steps.len()]),
        timeline: Mutex::new(Timeline::default()),
        captures: RwLock::new(Captures::default()),
        seq: AtomicU64::new(0),
        live,
    });
    setup(scenario, &http_client(scenario), &base, &shared).await?;

    let arrivals = Arc::new(crate::schedule::arrival_times(
        &scenario.stages("scenario")?,
    ));
    let weights = WeightedIndex::new(scenario.steps.iter().map(|s| s.weight)).map_err(|e| {
        RunError::Template {
            step: "steps".into(),
            message: e.to_string(),
        }
    })?;
    let max_in_flight = scenario.max_in_flight.unwrap_or(2000).max(1);
    let threads = threads.clamp(1, max_in_flight);
    let start = Instant::now();
    let shards: Vec<_> = (0..threads)
        .map(|index| {
            let shard = Shard {
                index,
                count: threads,
                // Split the in-flight cap exactly, so a small cap means what it says.
                slots: max_in_flight / threads + usize::from(index < max_in_flight % threads),
                scenario: scenario.clone(),
                weights: weights.clone(),
                base: base.clone(),
                arrivals: arrivals.clone(),
                shared: shared.clone(),
                start,
            };
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a single-threaded runtime builds")
                    .block_on(shard.run());
            })
        })
        .collect();
    // Every shard back means every request has finished.
    tokio::task::spawn_blocking(move || {
        for shard in shards {
            shard.join().expect("a load thread panicked");
        }
    })
    .await
    .expect("joining the load threads");
    let elapsed = start.elapsed();

    let per_step = std::mem::take(&mut *shared.steps.lock().expect("stats lock"));
    let mut overall = StepStats::new();
    let mut steps_by_name = BTreeMap::new();
    for (step, stats) in scenario.steps.iter().zip(per_step) {
        overall.merge(&stats);
        steps_by_name.insert(step.name.clone(), stats);
    }
    let timeline = std::mem::take(&mut *shared.timeline.lock().expect("timeline lock"));
    Ok(RunResult {
        overall,
        steps: steps_by_name,
        timeline,
        elapsed,
        planned: arrivals.len() as u64,
    })
}

fn http_client(scenario: &Scenario) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(scenario.timeout())
        .pool_max_idle_per_host(scenario.max_in_flight.unwrap_or(2000))
        .build()
        .expect("a client with a time-out always builds")
}

/// One thread's share of the measured phase: arrivals `index`, `index + count`, ...
struct Shard {
    index: usize,
    count: usize,
    slots: usize,
    scenario: Scenario,
    weights: WeightedIndex<u32>,
    base: String,
    arrivals: Arc<Vec<Duration>>,
    shared: Arc<Shared>,
    start: Instant,
}

impl Shard {
    async fn run(self) {
        let client = http_client(&self.scenario);
        let slots = Arc::new(Semaphore::new(self.slots));
        let lateness = self.scenario.max_lateness();
        let steps: Arc<Vec<Step>> = Arc::new(self.scenario.steps.clone());
        let shared = &self.shared;
        let mut rng = rand::rng();
        for due in self.arrivals.iter().skip(self.index).step_by(self.count) {
            let intended = self.start + *due;
            // Sleep only when ahead: the timer wheel turns once a millisecond, so even a
            // past deadline would wait for its next turn, and at high rates every arrival
            // would.
            if Instant::now() < intended {
                tokio::time::sleep_until(intended).await;
            }
            shared.live.due.fetch_add(1, Ordering::Relaxed);
            let index = self.weights.sample(&mut rng);
            let slot =
                match tokio::time::timeout_at(intended + lateness, slots.clone().acquire_owned())
                    .await
                {
                    Ok(Ok(slot)) => slot,
                    _ => {
                        shared.steps.lock().expect("stats lock")[index].dropped += 1;
                        shared.live.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
            let (client, base, steps, shared, start) = (
                client.clone(),
                self.base.clone(),
                steps.clone(),
                shared.clone(),
                self.start,
            );
            tokio::spawn(async move {
                let _slot = slot;
                let step = &steps[index];
                let outcome = send(&client, &base, step, &shared).await;
                record(&shared, step, index, intended, start, outcome);
            });
        }
        let _all = slots.acquire_many(self.slots as u32).await;
    }
}

/// Books one finished request: latency from its intended send time, failures, timeline.
fn record(
    shared: &Shared,
    step: &Step,
    index: usize,
    intended: Instant,
    start: Instant,
    outcome: Outcome,
) {
    let done = Instant::now();
    let latency = done - intended;
    let failed = match outcome.status {
        Some(s) if !step.expect.is_empty() => !step.expect.contains(&s),
        Some(s) => s >= 400,
        None => true,
    };
    shared.steps.lock().expect("stats lock")[index].record(
        latency,
        done - outcome.sent,
        outcome.status,
        failed,
    );
    shared
        .timeline
        .lock()
        .expect("timeline lock")
        .record(done - start, latency, failed);
    let _ = shared
        .live
        .recent
        .lock()
        .expect("recent lock")
        .record((latency.as_micros() as u64).max(1));
    shared.live.completed.fetch_add(1, Ordering::Relaxed);
    if failed {
        shared.live.failed.fetch_add(1, Ordering::Relaxed);
    }
}

struct Outcome {
    sent: Instant,
    status: Option<u16>,
}

async fn send(client: &reqwest::Client, base: &str, step: &Step, shared: &Shared) -> Outcome {
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
    let built = build(client, base, step, seq, shared);
    let sent = Instant::now();
    let Ok(request) = built else {
        return Outcome { sent, status: None };
    };
    let Ok(response) = request.send().await else {
        return Outcome { sent, status: None };
    };
    let status = response.status().as_u16();
    // The body is read in full: a response is not complete until its last byte.
    let body = response.bytes().await;
    if let Ok(body) = body {
        capture(step, &body, shared);
    }
    Outcome {
        sent,
        status: Some(status),
    }
}

fn build(
    client: &reqwest::Client,
    base: &str,
    step: &Step,
    seq: u64,
    shared: &Shared,
) -> Result<reqwest::RequestBuilder, String> {
    let captures = shared.captures.read().expect("captures lock");
    let method = reqwest::Method::from_bytes(step.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut request = client.request(
        method,
        format!("{base}{}", render(&step.path, seq, &captures)?),
    );
    for (name, value) in &step.headers {
        request = request.header(name, render(value, seq, &captures)?);
    }
    if let Some(body) = &step.json {
        request = request.json(&render_json(body, seq, &captures)?);
    }
    Ok(request)
}

async fn setup(
    scenario: &Scenario,
    client: &reqwest::Client,
    base: &str,
    shared: &Shared,
) -> Result<(), RunError> {
    for step in &scenario.setup {
        for _ in 0..step.repeat {
            let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
            let request =
                build(client, base, step, seq, shared).map_err(|message| RunError::Template {
                    step: step.name.clone(),
                    message,
                })?;
            let response = request.send().await.map_err(|e| RunError::Setup {
                step: step.name.clone(),
                message: format!("{e}; is the target running at {base}?"),
            })?;
            let status = response.status();
            let body = response.bytes().await.unwrap_or_default();
            if status.as_u16() >= 400 && !step.expect.contains(&status.as_u16()) {
                return Err(RunError::Setup {
                    step: step.name.clone(),
                    message: format!("answered {status}: {}", String::from_utf8_lossy(&body)),
                });
            }
            capture(step, &body, shared);
        }
    }
    Ok(())
}

/// Stores the values a step captures (JSON pointers into its response) for later templates.
fn capture(step: &Step, body: &[u8], shared: &Shared) {
    if step.capture.is_empty() {
        return;
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let mut captures = shared.captures.write().expect("captures lock");
    for (name, pointer) in &step.capture {
        if let Some(value) = json.pointer(pointer) {
            let text = value
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
            captures.add(name, text);
        }
    }
}
