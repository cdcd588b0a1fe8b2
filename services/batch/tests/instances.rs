//! Several batch instances on one database, each scenario on SQLite and on PostgreSQL: with
//! the same schedule every slot runs exactly once and runs never overlap; and when the
//! instance holding a job's lease dies mid-run, another takes the run over once the lease
//! has expired and finishes it, the abandoned attempt recorded beside it.

use std::net::SocketAddr;
use std::time::Duration;

use sloop_batch::BatchSettings;
use sloop_batch::schedule::JobSchedule;
use sloop_kit::on_both_backends;
use sloop_kit::testing::{TestApp, TestBackend, fresh_database_url};
use sqlx::AnyPool;

on_both_backends!(
    each_slot_runs_once_on_two_instances,
    a_dead_holder_is_taken_over_after_its_lease_expires,
);

/// `cleanup` every second, the other jobs off; runs take `job_delay` longer than their work.
fn every_second(lease_ttl: Duration, job_delay: Duration) -> BatchSettings {
    BatchSettings {
        user_stats_schedule: JobSchedule::Off,
        sales_report_schedule: JobSchedule::Off,
        chat_activity_schedule: JobSchedule::Off,
        cleanup_schedule: JobSchedule::parse("* * * * * *").unwrap(),
        tick: Duration::from_millis(100),
        lease_ttl,
        job_delay,
        ..BatchSettings::default()
    }
}

/// A pool of its own on a test database, to look inside after the instances are gone.
async fn open(url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPool::connect(url).await.unwrap()
}

/// A run row, as the tests look at it.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Row {
    id: String,
    triggered_by: String,
    scheduled_for_ms: Option<i64>,
    attempt: i64,
    retry_of: Option<String>,
    status: String,
    holder: String,
    started_at_ms: i64,
    finished_at_ms: Option<i64>,
    log: String,
}

async fn rows(pool: &AnyPool) -> Vec<Row> {
    sqlx::query_as(
        "SELECT id, triggered_by, scheduled_for_ms, attempt, retry_of, status, holder, \
         started_at_ms, finished_at_ms, log FROM batch_runs ORDER BY started_at_ms, id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn each_slot_runs_once_on_two_instances(backend: TestBackend) {
    let settings = every_second(Duration::from_secs(2), Duration::from_millis(300));
    let first = TestApp::spawn(sloop_batch::service(settings.clone()), backend).await;
    let second = TestApp::builder(sloop_batch::service(settings))
        .backend(backend)
        .database_url(first.database_url.clone())
        .spawn()
        .await;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let url = first.database_url.clone();
    second.stop().await;
    first.stop().await;

    let pool = open(&url).await;
    let runs = rows(&pool).await;
    assert!(runs.len() >= 3, "too few slots ran in 4.5 s: {runs:#?}");
    let mut slots: Vec<i64> = runs.iter().filter_map(|r| r.scheduled_for_ms).collect();
    slots.sort_unstable();
    slots.dedup();
    assert_eq!(slots.len(), runs.len(), "a slot ran twice: {runs:#?}");
    for run in &runs {
        assert_eq!(
            (run.triggered_by.as_str(), run.attempt, run.status.as_str()),
            ("schedule", 1, "succeeded"),
            "{run:#?}"
        );
        assert_eq!(
            run.scheduled_for_ms.unwrap() % 1000,
            0,
            "slots are whole seconds"
        );
    }
    // The lease keeps runs of a job apart: each starts after the one before has ended.
    for pair in runs.windows(2) {
        let ended = pair[0].finished_at_ms.unwrap();
        assert!(pair[1].started_at_ms >= ended, "runs overlap: {:#?}", &pair);
    }
    pool.close().await;
}

/// An instance in a runtime of its own, which can be killed: its runtime is dropped with
/// every task in it, mid-await, as when a process dies. Nothing shuts down, nothing is
/// released: the run stays `running` and the lease stays until it expires.
struct Doomed {
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Doomed {
    async fn spawn(settings: BatchSettings, backend: TestBackend, url: String) -> Self {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<SocketAddr>();
        let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let app = TestApp::builder(sloop_batch::service(settings))
                    .backend(backend)
                    .database_url(url)
                    .spawn()
                    .await;
                let _ = ready_tx.send(app.addr);
                let _ = kill_rx.await;
                drop(app);
            });
            runtime.shutdown_timeout(Duration::from_secs(2));
        });
        ready_rx.await.expect("the doomed instance started");
        Self {
            kill: Some(kill_tx),
            thread: Some(thread),
        }
    }

    fn kill(mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits up to `within` for `check` to find what it wants in the runs.
async fn wait_for<T>(pool: &AnyPool, within: Duration, check: impl Fn(&[Row]) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let runs = rows(pool).await;
        if let Some(found) = check(&runs) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not found within {within:?}: {runs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_dead_holder_is_taken_over_after_its_lease_expires(backend: TestBackend) {
    // Runs take 3 s; a lease expires 1 s after its last renewal.
    let settings = every_second(Duration::from_secs(1), Duration::from_secs(3));
    let url = fresh_database_url(backend).await;
    let doomed = Doomed::spawn(settings.clone(), backend, url.clone()).await;
    let pool = open(&url).await;
    let first = wait_for(&pool, Duration::from_secs(10), |runs| {
        runs.iter().find(|r| r.status == "running").cloned()
    })
    .await;
    let survivor = TestApp::builder(sloop_batch::service(settings))
        .backend(backend)
        .database_url(url.clone())
        .spawn()
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Kill it in the middle of a run, with half a second or more of it left.
    wait_for(&pool, Duration::from_secs(20), |runs| {
        let recent = sloop_kit::clock::now_millis() - 2500;
        runs.iter()
            .find(|r| {
                r.holder == first.holder && r.status == "running" && r.started_at_ms >= recent
            })
            .map(|_| ())
    })
    .await;
    let killed_at_ms = sloop_kit::clock::now_millis();
    doomed.kill();

    // The run the doomed instance had in hand when it died (normally `first`, unless that
    // one had already ended and the next had begun).
    let (abandoned, retry) = wait_for(&pool, Duration::from_secs(30), |runs| {
        let retry = runs
            .iter()
            .find(|r| r.attempt == 2 && r.status == "succeeded")?;
        let abandoned = runs
            .iter()
            .find(|r| Some(&r.id) == retry.retry_of.as_ref())?;
        Some((abandoned.clone(), retry.clone()))
    })
    .await;
    survivor.stop().await;

    assert_eq!(abandoned.holder, first.holder);
    assert_eq!(
        (abandoned.attempt, abandoned.status.as_str()),
        (1, "failed")
    );
    assert_eq!(
        abandoned.scheduled_for_ms, retry.scheduled_for_ms,
        "the same slot"
    );
    assert!(
        abandoned
            .log
            .contains(&format!("abandoned: holder {} stopped", first.holder)),
        "{abandoned:#?}"
    );
    assert_ne!(retry.holder, first.holder, "the survivor ran the retry");
    assert!(
        retry.started_at_ms > killed_at_ms,
        "taken over only after the holder died: {retry:#?}"
    );

    // Whatever else ran meanwhile, no slot has two results and none is left running.
    let runs = rows(&pool).await;
    let mut succeeded: Vec<i64> = runs
        .iter()
        .filter(|r| r.status == "succeeded")
        .filter_map(|r| r.scheduled_for_ms)
        .collect();
    let count = succeeded.len();
    succeeded.sort_unstable();
    succeeded.dedup();
    assert_eq!(succeeded.len(), count, "a slot succeeded twice: {runs:#?}");
    assert!(
        runs.iter().all(|r| r.status != "running"),
        "a run was left running: {runs:#?}"
    );
    pool.close().await;
}
