//! The notification service: a notification per user for the platform events that concern
//! them (a welcome on `UserCreated`, a notice on `OrderConfirmed` and `OrderCancelled`, a
//! mention on `ChatMessageSent` for each member it mentions), read and marked read over HTTP by the signed-in user, and sent out through simulated
//! email, push and SMS providers by a background worker with retries and backoff.
//!
//! Channels per kind: a welcome goes out by email; a confirmed order by email and push; a
//! cancelled order by email, push and SMS; a mention by email and push. Each channel is one delivery row, written with
//! the notification in the transaction that records the event as applied.

pub mod cli;
mod events;
mod metrics;
pub mod model;
pub mod senders;
mod store;
pub mod worker;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use sloop_kit::clock::now_rfc3339;
use sloop_kit::{Caller, Consumer, Context, Database, Json, Path, Problem, Query, Service};
use sqlx::migrate::Migrator;
use utoipa::OpenApi;

use model::{
    Channel, DEFAULT_PAGE, Delivery, DeliveryStatus, Kind, ListParams, MAX_PAGE, MarkedRead,
    Notification, NotificationDetail, NotificationPage, UnreadCount,
};
use senders::{ChannelSettings, SettingsError};
use store::StoreError;
use worker::{Senders, WorkerSettings};

/// The service's name and conventional port.
pub const NAME: &str = "notification";
pub const PORT: u16 = 8086;

/// Portable migrations, run at start on SQLite and PostgreSQL alike.
pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// How the service sends; `sloop-notification` reads it from flags and the environment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NotificationSettings {
    pub email: ChannelSettings,
    pub push: ChannelSettings,
    pub sms: ChannelSettings,
    pub worker: WorkerSettings,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            email: ChannelSettings::default_for(Channel::Email),
            push: ChannelSettings::default_for(Channel::Push),
            sms: ChannelSettings::default_for(Channel::Sms),
            worker: WorkerSettings::default(),
        }
    }
}

impl NotificationSettings {
    /// Checks every channel's settings; the error names the one that cannot work.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.email.validate(Channel::Email)?;
        self.push.validate(Channel::Push)?;
        self.sms.validate(Channel::Sms)
    }
}

/// The notification service, described once for `sloop-notification`, the platform binary
/// and tests.
pub fn service(settings: NotificationSettings) -> Service {
    let senders = Arc::new(Senders::new(
        NAME,
        settings.email,
        settings.push,
        settings.sms,
    ));
    Service::new(NAME, PORT)
        .database(&MIGRATIONS)
        .metrics(metrics::describe)
        .consumes(NAME, |_| {
            Consumer::new(NAME, &events::TOPICS, events::Notify)
        })
        .worker("deliveries", move |ctx, _stop| {
            worker::run(ctx, senders, settings.worker)
        })
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

/// The notification API, for the signed-in user. `/openapi.json` describes it.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/notifications", get(list_notifications))
        .route("/notifications/unread-count", get(unread_count))
        .route("/notifications/read-all", post(mark_all_read))
        .route("/notifications/{id}", get(get_notification))
        .route("/notifications/{id}/read", post(mark_read))
        .with_state(state)
}

impl From<StoreError> for Problem {
    fn from(err: StoreError) -> Self {
        match &err {
            StoreError::NotFound(_) => Problem::not_found(err.to_string()),
            StoreError::UnknownValue { .. } | StoreError::Database(_) => Problem::internal(&err),
        }
    }
}

/// Ids are UUIDs; anything else cannot name a notification.
fn parse_id(raw: &str) -> Result<String, Problem> {
    uuid::Uuid::parse_str(raw)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| {
            Problem::bad_request(format!("`{raw}` is not a notification id; ids are UUIDs"))
        })
}

/// A cursor is the id of the last (oldest) notification of the previous page: keyset
/// pagination, so pages stay stable while new notifications arrive.
fn parse_cursor(cursor: &str) -> Result<String, Problem> {
    uuid::Uuid::parse_str(cursor)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| {
            Problem::bad_request(
                "cursor must be a notification id (UUID); pass `next_cursor` from the previous page",
            )
        })
}

#[utoipa::path(
    get, path = "/notifications", params(ListParams),
    responses(
        (status = 200, description = "A page of the caller's notifications, newest first", body = NotificationPage),
        (status = 400, description = "Bad cursor, limit or unread filter", body = Problem),
        (status = 401, description = "No signed-in caller (call through the gateway)", body = Problem),
    )
)]
/// The signed-in user's notifications, newest first; `next_cursor` leads to older ones.
async fn list_notifications(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<NotificationPage>, Problem> {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}, got {limit}"
        )));
    }
    let before = params.cursor.as_deref().map(parse_cursor).transpose()?;
    let unread_only = params.unread.unwrap_or(false);
    // One extra row tells whether another page follows without a count query.
    let mut items = store::list(
        &state.db,
        &caller.user_id,
        before.as_deref(),
        unread_only,
        limit + 1,
    )
    .await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|last| last.id.clone())
    } else {
        None
    };
    Ok(Json(NotificationPage { items, next_cursor }))
}

#[utoipa::path(
    get, path = "/notifications/unread-count",
    responses(
        (status = 200, description = "How many of the caller's notifications are unread", body = UnreadCount),
        (status = 401, description = "No signed-in caller (call through the gateway)", body = Problem),
    )
)]
async fn unread_count(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<UnreadCount>, Problem> {
    let unread = store::unread_count(&state.db, &caller.user_id).await?;
    Ok(Json(UnreadCount { unread }))
}

#[utoipa::path(
    get, path = "/notifications/{id}",
    params(("id" = String, Path, format = "uuid", description = "Notification id (UUID)")),
    responses(
        (status = 200, description = "The notification and its delivery on each channel", body = NotificationDetail),
        (status = 400, description = "Not a notification id", body = Problem),
        (status = 401, description = "No signed-in caller (call through the gateway)", body = Problem),
        (status = 404, description = "The caller has no such notification", body = Problem),
    )
)]
async fn get_notification(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<NotificationDetail>, Problem> {
    let id = parse_id(&id)?;
    let notification = store::get(&state.db, &caller.user_id, &id).await?;
    let deliveries = store::deliveries(&state.db, &id).await?;
    Ok(Json(NotificationDetail {
        notification,
        deliveries,
    }))
}

#[utoipa::path(
    post, path = "/notifications/{id}/read",
    params(("id" = String, Path, format = "uuid", description = "Notification id (UUID)")),
    responses(
        (status = 200, description = "The notification, read (also when it already was)", body = Notification),
        (status = 400, description = "Not a notification id", body = Problem),
        (status = 401, description = "No signed-in caller (call through the gateway)", body = Problem),
        (status = 404, description = "The caller has no such notification", body = Problem),
    )
)]
/// Marks one notification read. Idempotent: marking it again changes nothing, and
/// `read_at` stays when it was first read.
async fn mark_read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Notification>, Problem> {
    let id = parse_id(&id)?;
    let notification = store::mark_read(&state.db, &caller.user_id, &id, &now_rfc3339()).await?;
    Ok(Json(notification))
}

#[utoipa::path(
    post, path = "/notifications/read-all",
    responses(
        (status = 200, description = "Every notification of the caller is read", body = MarkedRead),
        (status = 401, description = "No signed-in caller (call through the gateway)", body = Problem),
    )
)]
/// Marks every unread notification of the caller read; says how many were unread.
async fn mark_all_read(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<MarkedRead>, Problem> {
    let marked_read = store::mark_all_read(&state.db, &caller.user_id, &now_rfc3339()).await?;
    Ok(Json(MarkedRead { marked_read }))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sloop notification service",
        description = "The signed-in user's notifications (welcome, order confirmed, order \
                       cancelled): list newest first, unread count, mark read, and how each \
                       went out by email, push and SMS."
    ),
    paths(
        list_notifications,
        unread_count,
        get_notification,
        mark_read,
        mark_all_read
    ),
    components(schemas(
        Notification,
        NotificationDetail,
        NotificationPage,
        Delivery,
        DeliveryStatus,
        Channel,
        Kind,
        UnreadCount,
        MarkedRead
    ))
)]
struct ApiDoc;
