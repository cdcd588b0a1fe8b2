//! The `sloop-batch` command line: the service's flags, and running it from them.

use std::time::Duration;

use clap::Parser;
use sloop_kit::{ServiceArgs, StartError};

use crate::BatchSettings;
use crate::jobs::MAX_PERIOD_DAYS;
use crate::schedule::JobSchedule;

/// The sloop batch service: scheduled jobs (daily user statistics, a sales report, chat
/// activity, cleanup)
/// with a run history, a manual trigger and reports as JSON or CSV. Runs are kept to one at
/// a time per job across instances by a lease in the database.
///
/// Schedules are cron patterns in UTC: five fields (minute hour day-of-month month
/// day-of-week), six with seconds first, or `off` for manual runs only.
///
/// Starts on 127.0.0.1:8085 with a SQLite file in the working directory unless told
/// otherwise. Telemetry follows the OpenTelemetry environment variables
/// (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, ...), plus LOKI_URL and SENTRY_DSN.
#[derive(Debug, Parser)]
#[command(name = "sloop-batch", version)]
pub struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    batch: BatchArgs,
}

#[derive(Debug, clap::Args)]
struct BatchArgs {
    /// When user-stats runs (UTC cron pattern, or `off`).
    #[arg(long, env = "BATCH_USER_STATS_SCHEDULE", default_value = crate::DEFAULT_USER_STATS_SCHEDULE, value_parser = JobSchedule::parse)]
    user_stats_schedule: JobSchedule,
    /// When sales-report runs (UTC cron pattern, or `off`).
    #[arg(long, env = "BATCH_SALES_REPORT_SCHEDULE", default_value = crate::DEFAULT_SALES_REPORT_SCHEDULE, value_parser = JobSchedule::parse)]
    sales_report_schedule: JobSchedule,
    /// When chat-activity runs (UTC cron pattern, or `off`).
    #[arg(long, env = "BATCH_CHAT_ACTIVITY_SCHEDULE", default_value = crate::DEFAULT_CHAT_ACTIVITY_SCHEDULE, value_parser = JobSchedule::parse)]
    chat_activity_schedule: JobSchedule,
    /// When cleanup runs (UTC cron pattern, or `off`).
    #[arg(long, env = "BATCH_CLEANUP_SCHEDULE", default_value = crate::DEFAULT_CLEANUP_SCHEDULE, value_parser = JobSchedule::parse)]
    cleanup_schedule: JobSchedule,
    /// Days a user-stats run reports on, ending the day before its run (1: yesterday).
    #[arg(long, env = "BATCH_USER_STATS_DAYS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PERIOD_DAYS)))]
    user_stats_days: u32,
    /// Days a sales-report run reports on, ending the day before its run (1: yesterday).
    #[arg(long, env = "BATCH_SALES_REPORT_DAYS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PERIOD_DAYS)))]
    sales_report_days: u32,
    /// Days a chat-activity run reports on, ending the day before its run (1: yesterday).
    #[arg(long, env = "BATCH_CHAT_ACTIVITY_DAYS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PERIOD_DAYS)))]
    chat_activity_days: u32,
    /// Cleanup deletes runs and read-model days older than this, e.g. `90days`.
    #[arg(long, env = "BATCH_RETENTION", default_value = "90days", value_parser = sloop_duration::parse_positive)]
    retention: Duration,
    /// How long a job's lease outlives its last renewal: after an instance dies mid-run,
    /// another takes the run over once this has passed.
    #[arg(long, env = "BATCH_LEASE_TTL", default_value = "10s", value_parser = sloop_duration::parse_positive)]
    lease_ttl: Duration,
    /// How often the scheduler looks for due slots and abandoned runs.
    #[arg(long, env = "BATCH_TICK", default_value = "1s", value_parser = sloop_duration::parse_positive)]
    tick: Duration,
    /// How far before this instance's start a slot may be and still run (0: only slots
    /// after the start; slots missed while down are skipped).
    #[arg(long, env = "BATCH_CATCH_UP", default_value = "0s", value_parser = sloop_duration::parse)]
    catch_up: Duration,
    /// Extra time every run takes before it records its result: for tests and
    /// demonstrations of the takeover, never for production.
    #[arg(long, env = "BATCH_JOB_DELAY", default_value = "0s", value_parser = sloop_duration::parse, hide = true)]
    job_delay: Duration,
}

impl BatchArgs {
    fn settings(&self) -> BatchSettings {
        BatchSettings {
            user_stats_schedule: self.user_stats_schedule.clone(),
            sales_report_schedule: self.sales_report_schedule.clone(),
            chat_activity_schedule: self.chat_activity_schedule.clone(),
            cleanup_schedule: self.cleanup_schedule.clone(),
            user_stats_days: self.user_stats_days,
            sales_report_days: self.sales_report_days,
            chat_activity_days: self.chat_activity_days,
            retention: self.retention,
            lease_ttl: self.lease_ttl,
            tick: self.tick,
            catch_up: self.catch_up,
            job_delay: self.job_delay,
        }
    }
}

/// Runs the service until SIGTERM or Ctrl-C; refuses settings that cannot work.
pub async fn run(cli: Cli) -> Result<(), StartError> {
    let settings = cli.batch.settings();
    settings.validate().map_err(StartError::Setup)?;
    sloop_kit::run(crate::service(settings), cli.service).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_settings_defaults() {
        let cli = Cli::try_parse_from(["sloop-batch"]).unwrap();
        assert_eq!(cli.batch.settings(), BatchSettings::default());
    }

    #[test]
    fn flags_set_schedules_and_refuse_bad_ones() {
        let cli = Cli::try_parse_from([
            "sloop-batch",
            "--user-stats-schedule",
            "*/10 * * * * *",
            "--cleanup-schedule",
            "off",
            "--lease-ttl",
            "2s",
        ])
        .unwrap();
        let settings = cli.batch.settings();
        assert_eq!(settings.user_stats_schedule.to_string(), "*/10 * * * * *");
        assert_eq!(settings.cleanup_schedule, JobSchedule::Off);
        assert_eq!(settings.lease_ttl, Duration::from_secs(2));
        assert!(Cli::try_parse_from(["sloop-batch", "--sales-report-schedule", "daily"]).is_err());
        assert!(Cli::try_parse_from(["sloop-batch", "--user-stats-days", "0"]).is_err());
        assert!(Cli::try_parse_from(["sloop-batch", "--lease-ttl", "0s"]).is_err());
    }
}
