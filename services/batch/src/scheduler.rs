//! The scheduler: a loop that wakes every tick and, for each job, takes over runs whose
//! instance stopped (see `runner.rs`) and starts the latest slot of the job's schedule that
//! has come due and that no instance has claimed yet.
//!
//! Which slots run: only the latest one at or before now, and only if it is later than the
//! instance's start minus the catch-up window (default 0). So a first start, or a restart
//! after a long stop, does not run slots long past; slots missed while every instance was
//! down, or while the job was still busy with an earlier slot, are skipped, not an error.
//! A longer catch-up window lets an instance that starts just after a slot (because the
//! one that should have run it died) still run it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sloop_kit::clock::now_millis;
use tokio_util::sync::CancellationToken;

use crate::jobs::Job;
use crate::metrics;
use crate::runner::{Request, Runner, Started};
use crate::store;

/// How often each instance reads every job's last success from the database for its
/// gauge, so instances that did not run a job still export when it last succeeded.
const GAUGE_REFRESH: Duration = Duration::from_secs(15);

/// Runs until `stop`, then waits for the runs in progress to end.
pub async fn run(runner: Runner, stop: CancellationToken) {
    let catch_up = i64::try_from(runner.settings().catch_up.as_millis()).unwrap_or(i64::MAX);
    let earliest = now_millis().saturating_sub(catch_up);
    let mut scheduler = Scheduler {
        runner,
        earliest,
        handled: BTreeMap::new(),
    };
    let tick = scheduler.runner.settings().tick;
    let mut gauges_read: Option<Instant> = None;
    tracing::info!(holder = scheduler.runner.holder(), "scheduler started");
    while !stop.is_cancelled() {
        scheduler.tick(now_millis()).await;
        if gauges_read.is_none_or(|at| at.elapsed() >= GAUGE_REFRESH) {
            refresh_gauges(&scheduler.runner).await;
            gauges_read = Some(Instant::now());
        }
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(tick) => {}
        }
    }
    scheduler.runner.wait_for_runs().await;
}

struct Scheduler {
    runner: Runner,
    /// Slots at or before this (Unix milliseconds) are never started.
    earliest: i64,
    /// The latest slot of each job this instance started or found claimed, so it asks the
    /// database about a slot once, not every tick.
    handled: BTreeMap<Job, i64>,
}

impl Scheduler {
    async fn tick(&mut self, now_ms: i64) {
        for job in Job::ALL {
            if let Err(err) = self.runner.recover(job).await {
                tracing::warn!(job = job.name(), error = %err, "could not check for abandoned runs");
            }
            let Some(slot) = self.due_slot(job, now_ms) else {
                continue;
            };
            match self.runner.start(job, Request::Slot(slot)).await {
                Ok(Started::Running(_) | Started::Claimed) => {
                    self.handled.insert(job, slot);
                }
                // Another run of the job is in progress; the slot stays due for a later tick
                // unless a newer one replaces it.
                Ok(Started::Busy(reason)) => {
                    tracing::debug!(job = job.name(), %reason, "slot due but the job is busy");
                }
                Err(err) => {
                    tracing::warn!(job = job.name(), error = %err, "could not start a scheduled run");
                }
            }
        }
    }

    /// The slot of `job` to start now, if any.
    fn due_slot(&self, job: Job, now_ms: i64) -> Option<i64> {
        let schedule = job.schedule(self.runner.settings()).cron()?;
        let slot = schedule.latest_at_or_before(now_ms)?;
        let handled = self.handled.get(&job).is_some_and(|done| *done >= slot);
        (slot > self.earliest && !handled).then_some(slot)
    }
}

/// Sets each job's last-success gauge from the database.
async fn refresh_gauges(runner: &Runner) {
    match store::last_successes(runner.db()).await {
        Ok(rows) => {
            for (name, at_ms) in rows {
                if let Some(job) = Job::from_name(&name) {
                    metrics::last_success(job.name(), at_ms);
                }
            }
        }
        Err(err) => tracing::warn!(error = %err, "could not read the jobs' last successes"),
    }
}
