//! The user service: accounts with a unique email, a status (active, suspended, deleted)
//! and cursor pagination, over SQLite or PostgreSQL. Every change is announced as an event
//! (`UserCreated`, `UserUpdated`, `UserStatusChanged`) through the outbox.

pub mod cli;
pub mod model;
mod store;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::{get, post, put};
use sloop_kit::clock::now_rfc3339;
use sloop_kit::validate;
use sloop_kit::{Context, Database, Json, MaybeCaller, Outbox, Path, Problem, Query, Service};
use sqlx::migrate::Migrator;
use utoipa::OpenApi;

use model::{
    DEFAULT_PAGE, ListParams, MAX_PAGE, NewUser, Status, StatusChange, User, UserPage, UserPatch,
};
use store::{Inserted, StoreError};

/// The service's name and conventional port.
pub const NAME: &str = "user";
pub const PORT: u16 = 8082;

/// Portable migrations, run at start on SQLite and PostgreSQL alike.
pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The user service, described once for `sloop-user`, the platform binary and tests.
pub fn service() -> Service {
    Service::new(NAME, PORT)
        .database(&MIGRATIONS)
        .publishes(&sloop_events::user::ALL)
        .api(|ctx| router(AppState::new(ctx)))
        .openapi(ApiDoc::openapi())
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    db: Database,
    outbox: Outbox,
}

impl AppState {
    pub fn new(ctx: &Context) -> Self {
        Self {
            db: ctx.db().clone(),
            outbox: ctx.outbox().clone(),
        }
    }
}

/// The user API. `/openapi.json` describes it.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/users", post(create_user).get(list_users))
        .route(
            "/users/{id}",
            get(get_user).patch(update_user).put(put_user),
        )
        .route("/users/{id}/status", put(change_status))
        .with_state(state)
}

impl From<StoreError> for Problem {
    fn from(err: StoreError) -> Self {
        match &err {
            StoreError::NotFound(_) => Problem::not_found(err.to_string()),
            StoreError::DuplicateEmail(_) => Problem::conflict("duplicate-email", err.to_string()),
            StoreError::IdTaken(_) => Problem::conflict("id-taken", err.to_string()),
            StoreError::Deleted(_) => Problem::conflict("user-deleted", err.to_string()),
            StoreError::Concurrent(_) => Problem::conflict("concurrent-update", err.to_string()),
            StoreError::UnknownStatus { .. } | StoreError::Database(_) | StoreError::Outbox(_) => {
                Problem::internal(&err)
            }
        }
    }
}

/// Ids are UUIDs; anything else cannot name a user, and saying so beats a bare 404.
fn parse_id(raw: &str) -> Result<String, Problem> {
    uuid::Uuid::parse_str(raw)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| Problem::bad_request(format!("`{raw}` is not a user id; ids are UUIDs")))
}

/// Through the gateway, only an admin may act on someone else's account. Calls from other
/// services carry no caller and are trusted.
fn require_self_or_admin(caller: &MaybeCaller, id: &str) -> Result<(), Problem> {
    match &caller.0 {
        Some(caller) if !caller.may_act_for(id) => Err(Problem::forbidden(
            "you may only read or change your own account",
        )),
        _ => Ok(()),
    }
}

fn new_user(id: String, input: &NewUser) -> Result<User, Problem> {
    let email = validate::email(&input.email).map_err(Problem::validation)?;
    let name = validate::display_name(&input.name).map_err(Problem::validation)?;
    let created = now_rfc3339();
    Ok(User {
        id,
        email,
        name,
        status: Status::Active,
        created_at: created.clone(),
        updated_at: created,
        version: 1,
    })
}

fn location(user: &User) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/users/{}", user.id)) {
        headers.insert(header::LOCATION, location);
    }
    headers
}

#[utoipa::path(
    post, path = "/users", request_body = NewUser,
    responses(
        (status = 201, description = "Created", body = User),
        (status = 403, description = "Only other services and admins may create accounts", body = Problem),
        (status = 409, description = "Email already used", body = Problem),
    )
)]
async fn create_user(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Json(input): Json<NewUser>,
) -> Result<(StatusCode, HeaderMap, Json<User>), Problem> {
    caller.require_admin("create accounts directly; sign up through /auth/register")?;
    let user = new_user(uuid::Uuid::now_v7().to_string(), &input)?;
    store::insert(&state.db, &state.outbox, &user).await?;
    tracing::info!(user_id = %user.id, "user created");
    Ok((StatusCode::CREATED, location(&user), Json(user)))
}

#[utoipa::path(
    put, path = "/users/{id}", request_body = NewUser,
    params(("id" = String, Path, format = "uuid", description = "User id chosen by the caller (UUID)")),
    responses(
        (status = 201, description = "Created", body = User),
        (status = 200, description = "Already created with this email and name (a retry)", body = User),
        (status = 403, description = "Only other services and admins may create accounts", body = Problem),
        (status = 409, description = "Email used by another user, or id taken with other data", body = Problem),
    )
)]
/// Creates a user with an id of the caller's choosing. Idempotent: repeating it with the same
/// body answers 200 with the user, so a caller that lost the response can retry.
async fn put_user(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
    Json(input): Json<NewUser>,
) -> Result<(StatusCode, HeaderMap, Json<User>), Problem> {
    caller.require_admin("create accounts directly; sign up through /auth/register")?;
    let id = parse_id(&id)?;
    let user = new_user(id, &input)?;
    let status = match store::insert(&state.db, &state.outbox, &user).await? {
        Inserted::Created => {
            tracing::info!(user_id = %user.id, "user created");
            StatusCode::CREATED
        }
        Inserted::AlreadyThere => StatusCode::OK,
    };
    let stored = store::get(&state.db, &user.id).await?;
    Ok((status, location(&stored), Json(stored)))
}

#[utoipa::path(
    get, path = "/users/{id}", params(("id" = String, Path, format = "uuid", description = "User id (UUID)")),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 403, description = "Someone else's account", body = Problem),
        (status = 404, description = "No such user", body = Problem),
    )
)]
async fn get_user(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
) -> Result<Json<User>, Problem> {
    let id = parse_id(&id)?;
    require_self_or_admin(&caller, &id)?;
    Ok(Json(store::get(&state.db, &id).await?))
}

#[utoipa::path(
    patch, path = "/users/{id}", request_body = UserPatch,
    params(("id" = String, Path, format = "uuid", description = "User id (UUID)")),
    responses(
        (status = 200, description = "The updated user", body = User),
        (status = 403, description = "Someone else's account", body = Problem),
        (status = 404, description = "No such user", body = Problem),
        (status = 409, description = "Email taken, user deleted, or concurrent change", body = Problem),
    )
)]
async fn update_user(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
    Json(patch): Json<UserPatch>,
) -> Result<Json<User>, Problem> {
    let id = parse_id(&id)?;
    require_self_or_admin(&caller, &id)?;
    if patch.email.is_none() && patch.name.is_none() {
        return Err(Problem::validation(
            "nothing to change: send `email`, `name` or both",
        ));
    }
    let email = patch
        .email
        .as_deref()
        .map(validate::email)
        .transpose()
        .map_err(Problem::validation)?;
    let name = patch
        .name
        .as_deref()
        .map(validate::display_name)
        .transpose()
        .map_err(Problem::validation)?;
    let user = store::update(&state.db, &state.outbox, &id, &now_rfc3339(), |user| {
        if user.status == Status::Deleted {
            return Err(StoreError::Deleted(user.id.clone()));
        }
        if let Some(email) = &email {
            user.email.clone_from(email);
        }
        if let Some(name) = &name {
            user.name.clone_from(name);
        }
        Ok(())
    })
    .await?;
    Ok(Json(user))
}

#[utoipa::path(
    put, path = "/users/{id}/status", request_body = StatusChange,
    params(("id" = String, Path, format = "uuid", description = "User id (UUID)")),
    responses(
        (status = 200, description = "The user in its new status", body = User),
        (status = 403, description = "Only an admin may change a status", body = Problem),
        (status = 404, description = "No such user", body = Problem),
        (status = 409, description = "User is deleted", body = Problem),
    )
)]
async fn change_status(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(id): Path<String>,
    Json(change): Json<StatusChange>,
) -> Result<Json<User>, Problem> {
    let id = parse_id(&id)?;
    caller.require_admin("suspend, reactivate or delete accounts")?;
    let user = store::update(&state.db, &state.outbox, &id, &now_rfc3339(), |user| {
        if !user.status.can_become(change.status) {
            return Err(StoreError::Deleted(user.id.clone()));
        }
        user.status = change.status;
        Ok(())
    })
    .await?;
    tracing::info!(user_id = %user.id, status = user.status.as_str(), "user status set");
    Ok(Json(user))
}

#[utoipa::path(
    get, path = "/users", params(ListParams),
    responses(
        (status = 200, description = "A page of users, oldest first", body = UserPage),
        (status = 400, description = "Bad cursor or limit", body = Problem),
        (status = 403, description = "Only an admin may list accounts", body = Problem),
    )
)]
async fn list_users(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Query(params): Query<ListParams>,
) -> Result<Json<UserPage>, Problem> {
    caller.require_admin("list accounts")?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}, got {limit}"
        )));
    }
    let after = match params.cursor.as_deref() {
        None => String::new(),
        Some(cursor) => parse_cursor(cursor)?,
    };
    // One extra row tells whether another page follows without a count query.
    let mut items = store::list(&state.db, &after, params.status, limit + 1).await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|last| last.id.clone())
    } else {
        None
    };
    Ok(Json(UserPage { items, next_cursor }))
}

/// A cursor is the id of the last user of the previous page: keyset pagination, so pages
/// stay stable while users are added.
fn parse_cursor(cursor: &str) -> Result<String, Problem> {
    uuid::Uuid::parse_str(cursor)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| {
            Problem::bad_request(
                "cursor must be a user id (UUID); pass `next_cursor` from the previous page",
            )
        })
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sloop user service",
        description = "User accounts: create, read, update, status, list."
    ),
    paths(
        create_user,
        put_user,
        get_user,
        update_user,
        change_status,
        list_users
    ),
    components(schemas(User, NewUser, UserPatch, StatusChange, UserPage, Status))
)]
struct ApiDoc;
