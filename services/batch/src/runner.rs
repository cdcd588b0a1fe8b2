//! Running jobs so that each runs once at a time across every instance, and each scheduled
//! slot is done once to completion:
//!
//! 1. **Lock, then lease.** A run first takes its job's lock in this instance (a manual and
//!    a scheduled run here must not overlap), then the job's lease in the database
//!    (`batch-job-<job>`, kit [`Lease`]), so no other instance runs the job meanwhile.
//! 2. **Claim.** Holding both, it inserts its run row as `running`. For a scheduled slot
//!    that insert is the claim: `UNIQUE (job, scheduled_for_ms, attempt)` lets one instance
//!    have attempt 1 of a slot; the others get a unique violation and leave it.
//! 3. **Heartbeat.** While the job works, the lease is renewed every third of its TTL. If
//!    it cannot be (another instance took it over after it expired, or the database was
//!    unreachable for a whole TTL), the work is dropped and the row left `running`, for
//!    the lease's next holder to take over.
//! 4. **Record.** The result is written only `WHERE holder = me AND status = 'running'`, so
//!    a run that was taken over cannot record a second result. Then the lease is released.
//!
//! **Takeover.** An instance that dies mid-run leaves its row `running` and its lease to
//! expire. The scheduler of every instance looks for such rows; whoever next gets the lock
//! and the lease knows nothing else runs the job, so every `running` row of it was
//! abandoned. It marks the oldest `failed` ("abandoned: holder X stopped") and, in the same
//! transaction, inserts the next attempt of the same slot (same period, `retry_of` the
//! abandoned one), then runs that. After [`MAX_ATTEMPTS`] abandoned attempts a run is
//! given up rather than retried for ever (a run that kills its instance each time).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sloop_kit::Database;
use sloop_kit::clock::now_millis;
use sloop_kit::db::is_unique_violation;
use sloop_kit::lease::Lease;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::BatchSettings;
use crate::error::BatchError;
use crate::jobs::{self, Job, Output, Period};
use crate::metrics;
use crate::model::{Run, RunStatus, Trigger};
use crate::schedule::{parse_day, rfc3339_of_ms};
use crate::store::{self, Finish, NewRun, RunRow};

/// Attempts at one run before an abandoned one is no longer retried.
pub const MAX_ATTEMPTS: i64 = 3;

/// How long a manual trigger waits for its job's lock in this instance.
const LOCK_WAIT: Duration = Duration::from_millis(250);

/// What one instance shares between its scheduler and its API.
#[derive(Debug)]
pub struct Shared {
    /// This instance's name as a lease holder and in run rows: unique per process.
    pub holder: String,
    pub settings: BatchSettings,
    locks: BTreeMap<Job, Arc<Mutex<()>>>,
    /// Runs in progress, so shutdown can wait for them.
    tasks: TaskTracker,
}

impl Shared {
    pub fn new(settings: BatchSettings) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            holder: format!("batch-{}-{}", std::process::id(), &id[..8]),
            settings,
            locks: Job::ALL
                .into_iter()
                .map(|job| (job, Arc::new(Mutex::new(()))))
                .collect(),
            tasks: TaskTracker::new(),
        }
    }
}

/// What a run is for.
#[derive(Debug, Clone, Copy)]
pub enum Request {
    /// The schedule's slot at this Unix millisecond.
    Slot(i64),
    /// A manual trigger, for these days (report jobs; `None` for the default period).
    Manual(Option<Period>),
}

/// What came of asking for a run.
#[derive(Debug)]
pub enum Started {
    /// It runs now, in the background.
    Running(Box<Run>),
    /// The job is running already, here or on another instance; the reason says where.
    Busy(String),
    /// The slot was claimed by another instance first.
    Claimed,
}

/// Starts and records runs; one per instance, cheap to clone.
#[derive(Debug, Clone)]
pub struct Runner {
    db: Database,
    shared: Arc<Shared>,
}

/// A run whose lock and lease are held, ready to work.
struct Ready {
    job: Job,
    row: RunRow,
    lease: Lease,
    _lock: OwnedMutexGuard<()>,
}

impl Runner {
    pub fn new(db: Database, shared: Arc<Shared>) -> Self {
        Self { db, shared }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    pub fn settings(&self) -> &BatchSettings {
        &self.shared.settings
    }

    pub fn holder(&self) -> &str {
        &self.shared.holder
    }

    /// `batch-job-<job>`.
    fn lease_name(&self, job: Job) -> String {
        format!("batch-job-{}", job.name())
    }

    fn lease(&self, job: Job) -> Lease {
        Lease::new(
            self.db.clone(),
            self.lease_name(job),
            self.shared.holder.clone(),
            self.shared.settings.lease_ttl,
        )
    }

    /// This instance's lock of `job`, if no run of it is in progress here.
    fn try_lock(&self, job: Job) -> Option<OwnedMutexGuard<()>> {
        self.shared.locks.get(&job)?.clone().try_lock_owned().ok()
    }

    /// This instance's lock of `job`, waiting a moment for it: the scheduler holds it
    /// briefly on every tick it looks at the job, which must not turn a manual trigger
    /// away, while a run holds it far longer than this wait.
    async fn lock(&self, job: Job) -> Option<OwnedMutexGuard<()>> {
        let lock = self.shared.locks.get(&job)?.clone();
        tokio::time::timeout(LOCK_WAIT, lock.lock_owned())
            .await
            .ok()
    }

    /// Starts a run of `job` for `request` in the background, if nothing runs the job now
    /// and (for a slot) no instance has claimed the slot.
    pub async fn start(&self, job: Job, request: Request) -> Result<Started, BatchError> {
        if let Request::Slot(slot_ms) = request
            && store::slot_claimed(&self.db, job.name(), slot_ms).await?
        {
            return Ok(Started::Claimed);
        }
        let lock = match request {
            Request::Slot(_) => self.try_lock(job),
            Request::Manual(_) => self.lock(job).await,
        };
        let Some(lock) = lock else {
            return Ok(Started::Busy(format!(
                "a run is in progress on this instance ({})",
                self.holder()
            )));
        };
        let lease = self.lease(job);
        if !lease.acquire().await? {
            return Ok(Started::Busy(
                "another instance holds the job's lease and is running it".to_owned(),
            ));
        }
        // The row is made only now, holding the lease, so its start time is after the end
        // of the job's previous run.
        let run = self.new_run(job, request);
        let row = run.as_row();
        let inserted = match Run::try_from(row.clone()) {
            Ok(shown) => store::insert_run(&self.db, &run)
                .await
                .map(|()| shown)
                .map_err(|err| {
                    if is_unique_violation(&err) {
                        None
                    } else {
                        Some(BatchError::from(err))
                    }
                }),
            Err(err) => Err(Some(err)),
        };
        let shown = match inserted {
            Ok(shown) => shown,
            Err(err) => {
                self.release(&lease).await;
                // A unique violation: another instance claimed the slot first.
                return err.map_or(Ok(Started::Claimed), Err);
            }
        };
        self.spawn(Ready {
            job,
            row,
            lease,
            _lock: lock,
        });
        Ok(Started::Running(Box::new(shown)))
    }

    /// The first attempt of a run for `request`.
    fn new_run(&self, job: Job, request: Request) -> NewRun {
        let now = now_millis();
        let (trigger, slot, period, log) = match request {
            Request::Slot(slot_ms) => (
                Trigger::Schedule,
                Some(slot_ms),
                job.default_period(self.settings(), slot_ms),
                format!(
                    "claimed the slot of {} by {}",
                    rfc3339_of_ms(slot_ms),
                    self.holder()
                ),
            ),
            Request::Manual(period) => (
                Trigger::Manual,
                None,
                period.or_else(|| job.default_period(self.settings(), now)),
                format!("triggered by hand, run by {}", self.holder()),
            ),
        };
        NewRun {
            id: uuid::Uuid::now_v7().to_string(),
            job: job.name().to_owned(),
            trigger,
            scheduled_for_ms: slot,
            attempt: 1,
            retry_of: None,
            holder: self.holder().to_owned(),
            period_from: period.map(|p| p.from_text()),
            period_to: period.map(|p| p.to_text()),
            started_at_ms: now,
            log,
        }
    }

    /// Takes over the oldest run of `job` whose instance stopped, if there is one and its
    /// lease has expired: marks it failed and runs its next attempt.
    pub async fn recover(&self, job: Job) -> Result<(), BatchError> {
        // Cheap looks first: most ticks find nothing to take over, and should neither
        // write the lease nor hold the lock (which would turn a manual trigger away).
        if store::oldest_running(&self.db, job.name()).await?.is_none() {
            return Ok(());
        }
        if store::lease_held_elsewhere(&self.db, &self.lease_name(job), self.holder(), now_millis())
            .await?
        {
            return Ok(()); // Its holder is alive and renewing.
        }
        let Some(lock) = self.try_lock(job) else {
            return Ok(()); // Our own run, in progress.
        };
        let lease = self.lease(job);
        if !lease.acquire().await? {
            return Ok(()); // Its holder is alive and renewing.
        }
        // Holding the lock and the lease, nothing else runs the job: a row still
        // `running` now (read again, it may have finished meanwhile) was abandoned.
        let Some(stale) = store::oldest_running(&self.db, job.name()).await? else {
            self.release(&lease).await;
            return Ok(());
        };
        match self.take_over(job, &stale).await {
            Ok(Some(retry)) => {
                self.spawn(Ready {
                    job,
                    row: retry.as_row(),
                    lease,
                    _lock: lock,
                });
                Ok(())
            }
            Ok(None) => {
                self.release(&lease).await;
                Ok(())
            }
            Err(err) => {
                self.release(&lease).await;
                Err(err)
            }
        }
    }

    /// Marks `stale` failed and, unless it was the last attempt allowed, inserts its next
    /// attempt, which this instance then runs.
    async fn take_over(&self, job: Job, stale: &RunRow) -> Result<Option<NewRun>, BatchError> {
        let now = now_millis();
        let who = if stale.holder == self.holder() {
            format!(
                "holder {} (this instance) never recorded its end",
                stale.holder
            )
        } else {
            format!("holder {} stopped", stale.holder)
        };
        let retry = (stale.attempt < MAX_ATTEMPTS).then(|| NewRun {
            id: uuid::Uuid::now_v7().to_string(),
            job: stale.job.clone(),
            trigger: Trigger::parse(&stale.triggered_by).unwrap_or(Trigger::Manual),
            scheduled_for_ms: stale.scheduled_for_ms,
            attempt: stale.attempt + 1,
            retry_of: Some(stale.id.clone()),
            holder: self.holder().to_owned(),
            period_from: stale.period_from.clone(),
            period_to: stale.period_to.clone(),
            started_at_ms: now,
            log: format!(
                "attempt {} by {}: run {} was abandoned ({who})",
                stale.attempt + 1,
                self.holder(),
                stale.id
            ),
        });
        let note = match &retry {
            Some(retry) => format!("abandoned: {who}; retried as run {}", retry.id),
            None => format!("abandoned: {who}; not retried after {MAX_ATTEMPTS} attempts"),
        };
        if !store::abandon(&self.db, stale, &note, now, retry.as_ref()).await? {
            return Ok(None);
        }
        tracing::warn!(job = job.name(), run_id = %stale.id, %note, "took over an abandoned run");
        let trigger = Trigger::parse(&stale.triggered_by).unwrap_or(Trigger::Manual);
        let took = Duration::from_millis(u64::try_from(now - stale.started_at_ms).unwrap_or(0));
        metrics::run_finished(job.name(), trigger, RunStatus::Failed, took);
        Ok(retry)
    }

    /// Works on `ready` in the background, tracked so shutdown can wait for it.
    fn spawn(&self, ready: Ready) {
        let runner = self.clone();
        let span = tracing::info_span!(
            "batch run",
            job = ready.job.name(),
            run_id = %ready.row.id,
            attempt = ready.row.attempt,
            trigger = %ready.row.triggered_by,
        );
        self.shared
            .tasks
            .spawn(async move { runner.execute(ready).await }.instrument(span));
    }

    /// Does the work while keeping the lease, records the result, lets the lease go.
    async fn execute(&self, ready: Ready) {
        let started = Instant::now();
        let Ready {
            job, row, lease, ..
        } = &ready;
        tracing::info!("run started");
        let result = tokio::select! {
            result = self.work(*job, row) => result,
            lost = heartbeat(lease) => Err(lost),
        };
        let took = started.elapsed();
        if let Err(BatchError::LeaseLost(reason)) = &result {
            // Leave the row `running`: whoever holds the lease now finds it abandoned and
            // runs its slot again, so the work is still done once (and counted there).
            tracing::warn!(%reason, "lost the job's lease mid-run; leaving the run to be taken over");
        } else if let Some(status) = self.record(row, result, took).await {
            let trigger = Trigger::parse(&row.triggered_by).unwrap_or(Trigger::Manual);
            metrics::run_finished(job.name(), trigger, status, took);
            if status == RunStatus::Succeeded {
                metrics::last_success(job.name(), now_millis());
            }
        }
        self.release(lease).await;
    }

    /// Writes how the run ended; returns its status if it was written. It is not when the
    /// run was taken over meanwhile (the result is dropped: the slot has one already, or
    /// will from its retry), nor when the database fails (the row stays `running`, and the
    /// next holder of the lease takes it over).
    async fn record(
        &self,
        row: &RunRow,
        result: Result<Output, BatchError>,
        took: Duration,
    ) -> Option<RunStatus> {
        let (status, log, report) = match result {
            Ok(Output { log, report }) => (RunStatus::Succeeded, log, report),
            Err(err) => (RunStatus::Failed, vec![format!("failed: {err}")], None),
        };
        let report = match report.map(|r| serde_json::to_string(&r)).transpose() {
            Ok(report) => report,
            Err(err) => {
                tracing::error!(error = %err, "the report could not be written as JSON");
                return None;
            }
        };
        let finish = Finish {
            status,
            finished_at_ms: now_millis(),
            duration_ms: i64::try_from(took.as_millis()).unwrap_or(i64::MAX),
            log: &log,
            report,
        };
        match store::finish(&self.db, &row.id, self.holder(), &finish).await {
            Ok(true) => {
                tracing::info!(
                    status = status.as_str(),
                    duration_ms = finish.duration_ms,
                    "run ended"
                );
                Some(status)
            }
            Ok(false) => {
                tracing::warn!("the run was taken over by another instance; its result is dropped");
                None
            }
            Err(err) => {
                tracing::error!(error = %err, "the run's result could not be recorded; it will be taken over");
                None
            }
        }
    }

    /// The job's work, then the extra time the settings ask every run to take.
    async fn work(&self, job: Job, row: &RunRow) -> Result<Output, BatchError> {
        let period = period_of(row);
        let output = jobs::run(job, &self.db, self.settings(), &row.id, period).await?;
        if !self.settings().job_delay.is_zero() {
            tokio::time::sleep(self.settings().job_delay).await;
        }
        Ok(output)
    }

    async fn release(&self, lease: &Lease) {
        if let Err(err) = lease.release().await {
            tracing::warn!(error = %err, "could not release a job lease; it expires by itself");
        }
    }

    /// Waits until the runs in progress have ended: the scheduler does before it returns,
    /// and the kit waits for the scheduler at shutdown (up to its grace period).
    pub async fn wait_for_runs(&self) {
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }
}

/// The days a stored run covers, if it covers any.
fn period_of(row: &RunRow) -> Option<Period> {
    let from = parse_day(row.period_from.as_deref()?)?;
    let to = parse_day(row.period_to.as_deref()?)?;
    Some(Period { from, to })
}

/// Renews `lease` every third of its TTL; returns only when it is lost: taken by another
/// instance, or not renewed for a whole TTL (another may have taken it by now).
async fn heartbeat(lease: &Lease) -> BatchError {
    let ttl = lease.ttl();
    let every = (ttl / 3).max(Duration::from_millis(10));
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(every).await;
        match lease.acquire().await {
            Ok(true) => renewed = Instant::now(),
            Ok(false) => {
                return BatchError::LeaseLost(
                    "another instance took it over after it expired".to_owned(),
                );
            }
            Err(err) if renewed.elapsed() >= ttl => {
                return BatchError::LeaseLost(format!(
                    "not renewed for a whole lease TTL ({err}); another instance may run the job now"
                ));
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not renew the job's lease; trying again");
            }
        }
    }
}
