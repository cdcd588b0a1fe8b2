//! The audit service: every event the platform publishes, once, in an append-only log in
//! which each entry carries the hash of the one before, so a changed, removed or inserted
//! entry shows. Admins query it by subject, type and time, and ask it to verify itself.

pub mod chain;
pub mod cli;
pub mod events;
mod metrics;
pub mod model;
mod store;
mod verify;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use sloop_kit::clock::{parse_rfc3339, utc_rfc3339};
use sloop_kit::{Context, Database, Json, MaybeCaller, Path, Problem, Query, Service, validate};
use sqlx::migrate::Migrator;
use utoipa::OpenApi;

use model::{
    AuditEntry, AuditPage, Broken, BrokenEntry, DEFAULT_PAGE, Intact, ListParams, MAX_PAGE,
    Verification,
};
use store::{Filter, StoreError};

/// The service's name and conventional port.
pub const NAME: &str = "audit";
pub const PORT: u16 = 8087;

/// Portable migrations, run at start on SQLite and PostgreSQL alike.
pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The audit service, described once for `sloop-audit`, the platform binary and tests.
pub fn service() -> Service {
    Service::new(NAME, PORT)
        .database(&MIGRATIONS)
        .metrics(metrics::describe)
        .consumes(events::GROUP, |_| events::consumer())
        .api(|ctx| router(AppState::new(ctx)))
        .openapi(ApiDoc::openapi())
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    db: Database,
}

impl AppState {
    pub fn new(ctx: &Context) -> Self {
        Self {
            db: ctx.db().clone(),
        }
    }
}

/// The audit API. `/openapi.json` describes it.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/audit/events", get(list_events))
        .route("/audit/events/{seq}", get(get_event))
        .route("/audit/verify", get(verify_chain))
        .with_state(state)
}

impl From<StoreError> for Problem {
    fn from(err: StoreError) -> Self {
        match &err {
            StoreError::NotFound(_) => Problem::not_found(err.to_string()),
            StoreError::Data { .. } | StoreError::Database(_) => Problem::internal(&err),
        }
    }
}

#[utoipa::path(
    get, path = "/audit/events", params(ListParams),
    responses(
        (status = 200, description = "A page of entries in log order", body = AuditPage),
        (status = 400, description = "A bad filter, cursor or limit", body = Problem),
        (status = 403, description = "Only an admin may read the audit log", body = Problem),
    )
)]
/// Entries matching every filter given, oldest first (log order), a page at a time.
async fn list_events(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Query(params): Query<ListParams>,
) -> Result<Json<AuditPage>, Problem> {
    caller.require_admin("read the audit log")?;
    let query = parse_list(params)?;
    // One extra row tells whether another page follows without a count query.
    let mut entries = store::list(&state.db, &query.filter, query.after, query.limit + 1).await?;
    let next_cursor = if entries.len() > query.limit as usize {
        entries.truncate(query.limit as usize);
        entries.last().map(|last| last.seq)
    } else {
        None
    };
    let items = entries.into_iter().map(AuditEntry::from).collect();
    Ok(Json(AuditPage { items, next_cursor }))
}

/// A list query, checked.
#[derive(Debug)]
struct ListQuery {
    filter: Filter,
    after: i64,
    limit: u32,
}

/// Checks every parameter and says which one is wrong and what it should be.
fn parse_list(params: ListParams) -> Result<ListQuery, Problem> {
    let from = params
        .from
        .as_deref()
        .map(|t| parse_time("from", t))
        .transpose()?;
    let to = params
        .to
        .as_deref()
        .map(|t| parse_time("to", t))
        .transpose()?;
    if let (Some(from), Some(to)) = (&from, &to)
        && from > to
    {
        return Err(Problem::bad_request(format!(
            "from ({from}) is after to ({to}); the range is from (inclusive) to to (exclusive)"
        )));
    }
    Ok(ListQuery {
        filter: Filter {
            subject: non_empty("subject", params.subject)?,
            kind: non_empty("type", params.kind)?,
            from,
            to,
        },
        after: parse_cursor(params.cursor.as_deref())?,
        limit: parse_limit(params.limit.as_deref())?,
    })
}

fn parse_limit(raw: Option<&str>) -> Result<u32, Problem> {
    validate::page_limit(raw, DEFAULT_PAGE, MAX_PAGE).map_err(Problem::bad_request)
}

/// A cursor is the `seq` of the last entry of the previous page: keyset pagination, so
/// pages stay stable while entries are appended.
fn parse_cursor(raw: Option<&str>) -> Result<i64, Problem> {
    let Some(raw) = raw else {
        return Ok(0);
    };
    raw.parse().ok().filter(|n| *n >= 0).ok_or_else(|| {
        Problem::bad_request(format!(
            "cursor must be the `next_cursor` of the previous page (a whole number), got `{raw}`"
        ))
    })
}

/// An RFC 3339 time, as the fixed-width UTC text the log compares.
fn parse_time(name: &str, raw: &str) -> Result<String, Problem> {
    parse_rfc3339(raw).and_then(utc_rfc3339).ok_or_else(|| {
        // A `+` in a query string arrives as a space.
        let hint = if raw.contains(' ') {
            " (a `+` in a URL query means a space: write it as %2B)"
        } else {
            ""
        };
        Problem::bad_request(format!(
            "{name} must be an RFC 3339 time such as 2026-12-04T10:00:00Z, got `{raw}`{hint}"
        ))
    })
}

/// An empty filter is a mistake in building the URL more likely than a wish for subjects
/// or types that are empty: say so instead of answering with nothing.
fn non_empty(name: &str, value: Option<String>) -> Result<Option<String>, Problem> {
    match value {
        Some(v) if v.is_empty() => Err(Problem::bad_request(format!(
            "{name} must not be empty; leave it out to match any {name}"
        ))),
        Some(v) => sloop_kit::validate::id(name, &v, 500)
            .map(|_| Some(v.clone()))
            .map_err(Problem::bad_request),
        None => Ok(None),
    }
}

#[utoipa::path(
    get, path = "/audit/events/{seq}",
    params(("seq" = i64, Path, minimum = 1, description = "The entry's position in the log")),
    responses(
        (status = 200, description = "The entry", body = AuditEntry),
        (status = 400, description = "seq is not a positive whole number", body = Problem),
        (status = 403, description = "Only an admin may read the audit log", body = Problem),
        (status = 404, description = "No such entry", body = Problem),
    )
)]
async fn get_event(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(seq): Path<String>,
) -> Result<Json<AuditEntry>, Problem> {
    caller.require_admin("read the audit log")?;
    let seq = seq.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
        Problem::bad_request(format!(
            "`{seq}` is not an entry number; entries are numbered 1, 2, 3 ..."
        ))
    })?;
    Ok(Json(store::get(&state.db, seq).await?.into()))
}

#[utoipa::path(
    get, path = "/audit/verify",
    responses(
        (status = 200, description = "The verification ran; `intact` says whether the chain is whole, and if not where it first breaks", body = Verification),
        (status = 403, description = "Only an admin may verify the audit log", body = Problem),
    )
)]
/// Walks the whole chain, recomputing every hash and checking every link. Takes time in
/// proportion to the log's length.
async fn verify_chain(
    State(state): State<AppState>,
    caller: MaybeCaller,
) -> Result<Json<Verification>, Problem> {
    caller.require_admin("read the audit log")?;
    let result = verify::verify(&state.db).await?;
    metrics::chain_verified(result.is_intact());
    match &result {
        Verification::Intact(intact) => {
            tracing::info!(entries = intact.entries, "audit chain intact");
        }
        Verification::Broken(broken) => tracing::error!(
            seq = broken.first_broken.seq,
            event_id = %broken.first_broken.event_id,
            problem = %broken.first_broken.problem,
            "audit chain broken"
        ),
    }
    Ok(Json(result))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sloop audit service",
        description = "Every platform event in an append-only, hash-chained log: query it, verify it."
    ),
    paths(list_events, get_event, verify_chain),
    components(schemas(AuditEntry, AuditPage, Verification, Intact, Broken, BrokenEntry))
)]
struct ApiDoc;
