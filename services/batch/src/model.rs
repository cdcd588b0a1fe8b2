//! The batch API's types as clients see them: jobs, runs, pages of runs and the query
//! parameters of each operation.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// The job's cron schedule.
    Schedule,
    /// `POST /jobs/{job}/runs`.
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Manual => "manual",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Schedule, Self::Manual]
            .into_iter()
            .find(|t| t.as_str() == text)
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Running, Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// One attempt at running a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Run {
    /// UUIDv7: later runs have greater ids.
    #[schema(format = "uuid")]
    pub id: String,
    pub job: String,
    pub trigger: Trigger,
    /// The schedule slot this run is for (RFC 3339, UTC); absent for manual runs.
    #[schema(format = DateTime)]
    pub scheduled_for: Option<String>,
    /// 1 for the first attempt; more when an instance stopped during an earlier one and
    /// another took the run over.
    #[schema(minimum = 1)]
    pub attempt: i64,
    /// The attempt this one repeats, when it is a retry.
    #[schema(format = "uuid")]
    pub retry_of: Option<String>,
    pub status: RunStatus,
    /// The instance that ran it (its lease holder name).
    pub holder: String,
    /// First day the report covers (UTC, inclusive); absent for jobs without a report.
    #[schema(format = Date)]
    pub period_from: Option<String>,
    /// Last day the report covers (UTC, inclusive).
    #[schema(format = Date)]
    pub period_to: Option<String>,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    /// What the run did, a line per step.
    pub log: Vec<String>,
    /// Whether `GET /runs/{id}/report` has a report for it.
    pub has_report: bool,
}

/// One page of a job's runs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunPage {
    pub items: Vec<Run>,
    /// Pass as `cursor` to get older runs; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A job, its schedule and how it last ran.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobInfo {
    /// The name to use in paths, e.g. `sales-report`.
    pub name: String,
    pub description: String,
    /// The cron pattern (UTC; five fields, or six with seconds first); absent when the
    /// schedule is off and the job runs only when triggered.
    pub schedule: Option<String>,
    /// The schedule in words.
    pub schedule_description: Option<String>,
    /// When the schedule next comes due (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub next_run_at: Option<String>,
    /// The newest run, whatever its status.
    pub last_run: Option<Run>,
}

/// Every job.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub items: Vec<JobInfo>,
}

/// Query of `GET /jobs/{job}/runs`. Read as text and checked by the handler, so a bad value
/// gets a message naming it.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// `next_cursor` from the previous page: the id of its last (oldest) run.
    #[param(value_type = Option<String>, format = "uuid")]
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
}

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 500;

/// Query of `POST /jobs/{job}/runs`: the days a report covers, both or neither (default:
/// the days before today, as the job's schedule would). Cleanup takes neither.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TriggerParams {
    /// First day to report on, `YYYY-MM-DD` (UTC).
    #[param(value_type = Option<String>, format = Date)]
    pub from: Option<String>,
    /// Last day to report on, `YYYY-MM-DD` (UTC), at most 366 days after `from`.
    #[param(value_type = Option<String>, format = Date)]
    pub to: Option<String>,
}

/// Query of `GET /runs/{id}/report`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// `json` (the default) or `csv`; without it, `Accept: text/csv` asks for CSV.
    #[param(value_type = Option<String>, pattern = "^(json|csv)$")]
    pub format: Option<String>,
}
