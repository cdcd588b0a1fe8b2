//! The batch service: jobs on cron schedules (UTC) with their own run history, a manual
//! trigger, and a lease per job in the database so a job never runs twice at once, even
//! with several instances. The jobs: daily user statistics, a sales report and chat
//! activity, built from a read model the service fills from the events it consumes (it
//! reads no other service's database), and cleanup of its own old rows. Reports download as JSON or CSV; admins see
//! everything over HTTP.
//!
//! How a slot runs exactly once, and how a run survives its instance: `runner.rs`. Which
//! slots run: `scheduler.rs`. What the read model keeps: `events.rs`.

pub mod cli;
mod error;
mod events;
pub mod jobs;
mod metrics;
pub mod model;
pub mod report;
mod runner;
pub mod schedule;
mod scheduler;
mod store;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sloop_kit::clock::now_millis;
use sloop_kit::{Context, Json, MaybeCaller, Path, Problem, Query, Service, validate};
use sqlx::migrate::Migrator;
use utoipa::OpenApi;

pub use error::BatchError;
use jobs::{Job, MAX_PERIOD_DAYS, Period};
use model::{
    DEFAULT_PAGE, JobInfo, JobList, ListParams, MAX_PAGE, ReportParams, Run, RunPage, RunStatus,
    Trigger, TriggerParams,
};
use report::Report;
use runner::{Request, Runner, Shared, Started};
use schedule::{JobSchedule, parse_day, rfc3339_of_ms};

/// The service's name and conventional port.
pub const NAME: &str = "batch";
pub const PORT: u16 = 8085;

/// Portable migrations, run at start on SQLite and PostgreSQL alike.
pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// How the service schedules and runs its jobs; `sloop-batch` reads it from flags and the
/// environment.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSettings {
    /// When `user-stats` runs by itself (UTC), or `off`.
    pub user_stats_schedule: JobSchedule,
    /// When `sales-report` runs by itself (UTC), or `off`.
    pub sales_report_schedule: JobSchedule,
    /// When `chat-activity` runs by itself (UTC), or `off`.
    pub chat_activity_schedule: JobSchedule,
    /// When `cleanup` runs by itself (UTC), or `off`.
    pub cleanup_schedule: JobSchedule,
    /// Days a `user-stats` run reports on: that many days before its slot's day.
    pub user_stats_days: u32,
    /// Days a `sales-report` run reports on: that many days before its slot's day.
    pub sales_report_days: u32,
    /// Days a `chat-activity` run reports on: that many days before its slot's day.
    pub chat_activity_days: u32,
    /// `cleanup` deletes runs and read-model days older than this.
    pub retention: Duration,
    /// How long a job's lease outlives its last renewal: after an instance dies mid-run,
    /// another takes the run over once this has passed.
    pub lease_ttl: Duration,
    /// How often the scheduler looks for due slots and abandoned runs.
    pub tick: Duration,
    /// How far before the instance's start a slot may be and still run (0: only slots
    /// after the start), so a first start does not run slots long past.
    pub catch_up: Duration,
    /// Extra time every run takes before it records its result. 0 in production; tests and
    /// demonstrations of the takeover use it to make runs long enough to interrupt.
    pub job_delay: Duration,
}

/// The default schedules: the reports just after midnight UTC, when the day before is
/// complete; cleanup in the quiet hours.
pub const DEFAULT_USER_STATS_SCHEDULE: &str = "5 0 * * *";
pub const DEFAULT_SALES_REPORT_SCHEDULE: &str = "10 0 * * *";
pub const DEFAULT_CHAT_ACTIVITY_SCHEDULE: &str = "15 0 * * *";
pub const DEFAULT_CLEANUP_SCHEDULE: &str = "30 3 * * *";

impl Default for BatchSettings {
    fn default() -> Self {
        let schedule = |pattern| JobSchedule::parse(pattern).expect("the default patterns parse");
        Self {
            user_stats_schedule: schedule(DEFAULT_USER_STATS_SCHEDULE),
            sales_report_schedule: schedule(DEFAULT_SALES_REPORT_SCHEDULE),
            chat_activity_schedule: schedule(DEFAULT_CHAT_ACTIVITY_SCHEDULE),
            cleanup_schedule: schedule(DEFAULT_CLEANUP_SCHEDULE),
            user_stats_days: 1,
            sales_report_days: 1,
            chat_activity_days: 1,
            retention: Duration::from_secs(90 * 24 * 60 * 60),
            lease_ttl: Duration::from_secs(10),
            tick: Duration::from_secs(1),
            catch_up: Duration::ZERO,
            job_delay: Duration::ZERO,
        }
    }
}

impl BatchSettings {
    /// Says which setting cannot work, if any.
    pub fn validate(&self) -> Result<(), String> {
        for (name, days) in [
            ("user-stats days", self.user_stats_days),
            ("sales-report days", self.sales_report_days),
            ("chat-activity days", self.chat_activity_days),
        ] {
            if !(1..=MAX_PERIOD_DAYS).contains(&days) {
                return Err(format!(
                    "{name} must be from 1 to {MAX_PERIOD_DAYS}, got {days}"
                ));
            }
        }
        if self.lease_ttl < Duration::from_millis(100) {
            return Err(format!(
                "the lease TTL must be at least 100ms (it is renewed every third of it), got {}",
                sloop_duration::format(self.lease_ttl)
            ));
        }
        if self.tick.is_zero() || self.retention.is_zero() {
            return Err("the tick and the retention must be longer than zero".to_owned());
        }
        Ok(())
    }
}

/// The batch service, described once for `sloop-batch`, the platform binary and tests.
pub fn service(settings: BatchSettings) -> Service {
    let shared = Arc::new(Shared::new(settings));
    let for_api = shared.clone();
    Service::new(NAME, PORT)
        .database(&MIGRATIONS)
        .metrics(metrics::describe)
        .consumes(events::GROUP, |_| events::consumer())
        .worker("scheduler", move |ctx, stop| {
            scheduler::run(Runner::new(ctx.db().clone(), shared), stop)
        })
        .api(move |ctx| router(AppState::new(ctx, for_api)))
        .openapi(ApiDoc::openapi())
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    runner: Runner,
}

impl AppState {
    fn new(ctx: &Context, shared: Arc<Shared>) -> Self {
        Self {
            runner: Runner::new(ctx.db().clone(), shared),
        }
    }
}

/// The batch API, for admins. `/openapi.json` describes it.
fn router(state: AppState) -> Router {
    Router::new()
        .route("/jobs", get(list_jobs))
        .route("/jobs/{job}/runs", get(list_runs).post(trigger_run))
        .route("/runs/{id}", get(get_run))
        .route("/runs/{id}/report", get(get_report))
        .with_state(state)
}

impl From<BatchError> for Problem {
    fn from(err: BatchError) -> Self {
        match &err {
            BatchError::UnknownJob(_)
            | BatchError::RunNotFound(_)
            | BatchError::NoReport { .. } => Problem::not_found(err.to_string()),
            BatchError::Busy { .. } => Problem::conflict("job-running", err.to_string()),
            BatchError::LeaseLost(_) | BatchError::Data(_) | BatchError::Database(_) => {
                Problem::internal(&err)
            }
        }
    }
}

/// What every operation of the API requires of a caller through the gateway.
const ADMIN_ONLY: &str = "see or run batch jobs";

/// A job named in a path; unknown names are 404, as for any missing resource.
fn parse_job(raw: &str) -> Result<Job, Problem> {
    Job::from_name(raw).ok_or_else(|| {
        let shown: String = raw.chars().take(64).collect();
        BatchError::UnknownJob(shown).into()
    })
}

/// Run ids are UUIDs; anything else cannot name a run.
fn parse_run_id(raw: &str) -> Result<String, Problem> {
    uuid::Uuid::parse_str(raw)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| Problem::bad_request(format!("`{raw}` is not a run id; run ids are UUIDs")))
}

#[utoipa::path(
    get, path = "/jobs",
    responses(
        (status = 200, description = "Every job, its schedule, next due time and newest run", body = JobList),
        (status = 403, description = "Only an admin may see batch jobs", body = Problem),
    )
)]
/// The service's jobs, in a fixed order.
async fn list_jobs(
    State(state): State<AppState>,
    caller: MaybeCaller,
) -> Result<Json<JobList>, Problem> {
    caller.require_admin(ADMIN_ONLY)?;
    let now = now_millis();
    let mut items = Vec::new();
    for job in Job::ALL {
        let schedule = job.schedule(state.runner.settings()).cron();
        let last_run = store::last_run(state.runner.db(), job.name())
            .await
            .map_err(BatchError::from)?
            .map(Run::try_from)
            .transpose()?;
        items.push(JobInfo {
            name: job.name().to_owned(),
            description: job.description().to_owned(),
            schedule: schedule.map(|s| s.pattern().to_owned()),
            schedule_description: schedule.map(|s| s.describe()),
            next_run_at: schedule.and_then(|s| s.next_after(now)).map(rfc3339_of_ms),
            last_run,
        });
    }
    Ok(Json(JobList { items }))
}

#[utoipa::path(
    post, path = "/jobs/{job}/runs", params(("job" = String, Path, description = "The job's name, e.g. `sales-report`"), TriggerParams),
    responses(
        (status = 202, description = "The run started; follow `Location` (or `GET /runs/{id}`) for its end",
            body = Run, headers(("location" = String, description = "The run's URL"))),
        (status = 400, description = "A bad `from` or `to`", body = Problem),
        (status = 403, description = "Only an admin may run batch jobs", body = Problem),
        (status = 404, description = "No such job", body = Problem),
        (status = 409, description = "The job is running now, on this or another instance", body = Problem),
    )
)]
/// Runs a job now, beside its schedule. Report jobs cover `from` to `to` when both are
/// given, else the days before today as a scheduled run would.
async fn trigger_run(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(job): Path<String>,
    Query(params): Query<TriggerParams>,
) -> Result<Response, Problem> {
    caller.require_admin(ADMIN_ONLY)?;
    let job = parse_job(&job)?;
    let period = parse_period(job, params)?;
    match state.runner.start(job, Request::Manual(period)).await? {
        Started::Running(run) => {
            let location = format!("/runs/{}", run.id);
            Ok((
                StatusCode::ACCEPTED,
                [(header::LOCATION, location)],
                Json(*run),
            )
                .into_response())
        }
        Started::Busy(detail) => Err(BatchError::Busy {
            job: job.name().to_owned(),
            detail,
        }
        .into()),
        // Manual runs claim no slot; should one ever be refused so, it is a conflict too.
        Started::Claimed => Err(BatchError::Busy {
            job: job.name().to_owned(),
            detail: "another instance claimed the run".to_owned(),
        }
        .into()),
    }
}

/// The days a manual report run covers: both `from` and `to`, or neither.
fn parse_period(job: Job, params: TriggerParams) -> Result<Option<Period>, Problem> {
    let (from, to) = match (params.from, params.to) {
        (None, None) => return Ok(None),
        _ if !job.makes_report() => {
            return Err(Problem::bad_request(format!(
                "{job} makes no report, so it takes no `from` or `to`"
            )));
        }
        (Some(from), Some(to)) => (from, to),
        _ => {
            return Err(Problem::bad_request(
                "give both `from` and `to`, or neither for the days before today",
            ));
        }
    };
    let day = |name: &str, raw: &str| {
        parse_day(raw).ok_or_else(|| {
            Problem::bad_request(format!(
                "{name} must be a day written YYYY-MM-DD, such as 2026-12-01, got `{raw}`"
            ))
        })
    };
    let period = Period {
        from: day("from", &from)?,
        to: day("to", &to)?,
    };
    if period.from > period.to {
        return Err(Problem::bad_request(format!(
            "from ({from}) is after to ({to}); both days are included, so from must come first"
        )));
    }
    if period.day_count() > i64::from(MAX_PERIOD_DAYS) {
        return Err(Problem::bad_request(format!(
            "a report covers at most {MAX_PERIOD_DAYS} days; {from} to {to} is {} days",
            period.day_count()
        )));
    }
    Ok(Some(period))
}

#[utoipa::path(
    get, path = "/jobs/{job}/runs", params(("job" = String, Path, description = "The job's name, e.g. `sales-report`"), ListParams),
    responses(
        (status = 200, description = "A page of the job's runs, newest first", body = RunPage),
        (status = 400, description = "A bad cursor or limit", body = Problem),
        (status = 403, description = "Only an admin may see batch jobs", body = Problem),
        (status = 404, description = "No such job", body = Problem),
    )
)]
/// The job's runs, every attempt, newest first; `next_cursor` leads to older ones.
async fn list_runs(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(job): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Json<RunPage>, Problem> {
    caller.require_admin(ADMIN_ONLY)?;
    let job = parse_job(&job)?;
    let limit = parse_limit(params.limit.as_deref())?;
    let before = params.cursor.as_deref().map(parse_cursor).transpose()?;
    // One extra row tells whether another page follows without a count query.
    let mut rows = store::list_runs(state.runner.db(), job.name(), before.as_deref(), limit + 1)
        .await
        .map_err(BatchError::from)?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|last| last.id.clone())
    } else {
        None
    };
    let items = rows
        .into_iter()
        .map(Run::try_from)
        .collect::<Result<_, _>>()?;
    Ok(Json(RunPage { items, next_cursor }))
}

fn parse_limit(raw: Option<&str>) -> Result<u32, Problem> {
    validate::page_limit(raw, DEFAULT_PAGE, MAX_PAGE).map_err(Problem::bad_request)
}

/// A cursor is the id of the last (oldest) run of the previous page: keyset pagination, so
/// pages stay stable while new runs start.
fn parse_cursor(raw: &str) -> Result<String, Problem> {
    uuid::Uuid::parse_str(raw)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| {
            Problem::bad_request(format!(
                "cursor must be the `next_cursor` of the previous page (a run id, a UUID), got `{raw}`"
            ))
        })
}

#[utoipa::path(
    get, path = "/runs/{id}",
    params(("id" = String, Path, format = "uuid", description = "The run's id")),
    responses(
        (status = 200, description = "The run", body = Run),
        (status = 400, description = "Not a run id", body = Problem),
        (status = 403, description = "Only an admin may see batch jobs", body = Problem),
        (status = 404, description = "No such run", body = Problem),
    )
)]
async fn get_run(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
) -> Result<Json<Run>, Problem> {
    caller.require_admin(ADMIN_ONLY)?;
    let id = parse_run_id(&id)?;
    let row = store::get_run(state.runner.db(), &id).await?;
    Ok(Json(Run::try_from(row)?))
}

/// The forms a report downloads in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

/// The media type of CSV downloads.
const TEXT_CSV: &str = "text/csv; charset=utf-8";

#[utoipa::path(
    get, path = "/runs/{id}/report",
    params(("id" = String, Path, format = "uuid", description = "The run's id"), ReportParams),
    responses(
        (status = 200, description = "The run's report: JSON, or CSV (a header row, then a line per row) with `?format=csv` or `Accept: text/csv`",
            content((Report = "application/json"), (String = "text/csv")),
            headers(("content-disposition" = String, description = "For CSV: `attachment; filename=\"<job>-<run>.csv\"`"))),
        (status = 400, description = "Not a run id, or a format other than json or csv", body = Problem),
        (status = 403, description = "Only an admin may see batch jobs", body = Problem),
        (status = 404, description = "No such run, or it has no report (cleanup makes none; a running or failed run has none yet)", body = Problem),
        (status = 406, description = "`Accept` allows neither JSON nor CSV", body = Problem),
    )
)]
async fn get_report(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
    Query(params): Query<ReportParams>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    caller.require_admin(ADMIN_ONLY)?;
    let id = parse_run_id(&id)?;
    let format = pick_format(params.format.as_deref(), &headers)?;
    let (row, text) = store::report(state.runner.db(), &id).await?;
    let Some(text) = text else {
        let reason = match (Job::from_name(&row.job), RunStatus::parse(&row.status)) {
            (Some(job), _) if !job.makes_report() => "this job makes no report",
            (_, Some(RunStatus::Running)) => "it is still running",
            _ => "it did not succeed",
        };
        return Err(BatchError::NoReport { id, reason }.into());
    };
    let report: Report = serde_json::from_str(&text)
        .map_err(|err| BatchError::Data(format!("the report of run {id} is not JSON: {err}")))?;
    let vary = (header::VARY, "accept".to_owned());
    Ok(match format {
        Format::Json => ([vary], Json(report)).into_response(),
        Format::Csv => {
            let disposition = format!("attachment; filename=\"{}-{id}.csv\"", row.job);
            let headers: [(HeaderName, String); 3] = [
                (header::CONTENT_TYPE, TEXT_CSV.to_owned()),
                (header::CONTENT_DISPOSITION, disposition),
                vary,
            ];
            (headers, report.to_csv()).into_response()
        }
    })
}

/// `?format` decides when given; otherwise `Accept`, in the order the client lists types
/// (quality values are not weighed). No `Accept`, or one allowing anything, gets JSON.
fn pick_format(format: Option<&str>, headers: &HeaderMap) -> Result<Format, Problem> {
    if let Some(format) = format {
        return match format {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            other => Err(Problem::bad_request(format!(
                "format must be `json` or `csv`, got `{other}`"
            ))),
        };
    }
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|item| item.split(';').next().unwrap_or_default().trim())
        .filter(|media| !media.is_empty())
        .collect();
    if accept.is_empty() {
        return Ok(Format::Json);
    }
    accept
        .iter()
        .find_map(|media| match media.to_ascii_lowercase().as_str() {
            "application/json" | "application/*" | "*/*" => Some(Format::Json),
            "text/csv" | "text/*" => Some(Format::Csv),
            _ => None,
        })
        .ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_ACCEPTABLE,
                "not-acceptable",
                format!(
                    "reports come as application/json or text/csv, and Accept allows neither \
                     (`{}`); or ask with ?format=json or ?format=csv",
                    accept.join(", ")
                ),
            )
        })
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sloop batch service",
        description = "Scheduled jobs (daily user statistics, sales report, cleanup): their runs, a manual trigger, and reports as JSON or CSV."
    ),
    paths(list_jobs, trigger_run, list_runs, get_run, get_report),
    components(schemas(JobList, JobInfo, Run, RunPage, Trigger, RunStatus, Report))
)]
struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, value.parse().unwrap());
        headers
    }

    #[test]
    fn formats_follow_the_query_then_accept() {
        let none = HeaderMap::new();
        assert_eq!(pick_format(None, &none).unwrap(), Format::Json);
        assert_eq!(
            pick_format(Some("csv"), &accept("application/json")).unwrap(),
            Format::Csv
        );
        assert_eq!(pick_format(None, &accept("text/csv")).unwrap(), Format::Csv);
        assert_eq!(
            pick_format(None, &accept("text/html, */*;q=0.8")).unwrap(),
            Format::Json
        );
        assert_eq!(pick_format(Some("xml"), &none).unwrap_err().status, 400);
        assert_eq!(
            pick_format(None, &accept("image/png")).unwrap_err().status,
            406
        );
    }

    #[test]
    fn the_defaults_are_valid() {
        BatchSettings::default().validate().unwrap();
        let zero_days = BatchSettings {
            sales_report_days: 0,
            ..BatchSettings::default()
        };
        assert!(zero_days.validate().is_err());
    }
}
