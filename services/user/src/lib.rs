//! The user service: accounts with a unique email, a status (active, suspended, deleted)
//! and cursor pagination, over SQLite or PostgreSQL.

pub mod model;
mod store;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::{get, post, put};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sloop_kit::{Database, Json, Path, Problem, Query, ServiceSpec};
use sqlx::migrate::Migrator;
use utoipa::OpenApi;

use model::{
    DEFAULT_PAGE, ListParams, MAX_PAGE, NewUser, Status, StatusChange, User, UserPage, UserPatch,
    normalize_email, normalize_name,
};
use store::StoreError;

pub const SPEC: ServiceSpec = ServiceSpec {
    name: "user",
    default_port: 8082,
};

/// Portable migrations, run at start on SQLite and PostgreSQL alike.
pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The user API. `/openapi.json` describes it.
pub fn router(db: Database) -> Router {
    Router::new()
        .route("/users", post(create_user).get(list_users))
        .route("/users/{id}", get(get_user).patch(update_user))
        .route("/users/{id}/status", put(change_status))
        .route("/openapi.json", get(openapi))
        .with_state(db)
}

impl From<StoreError> for Problem {
    fn from(err: StoreError) -> Self {
        match &err {
            StoreError::NotFound(_) => Problem::not_found(err.to_string()),
            StoreError::DuplicateEmail(_) => Problem::conflict("duplicate-email", err.to_string()),
            StoreError::Deleted(_) => Problem::conflict("user-deleted", err.to_string()),
            StoreError::Concurrent(_) => Problem::conflict("concurrent-update", err.to_string()),
            StoreError::Database(db) => Problem::internal(db),
        }
    }
}

/// Ids are UUIDs; anything else cannot name a user, and saying so beats a bare 404.
fn parse_id(raw: &str) -> Result<String, Problem> {
    uuid::Uuid::parse_str(raw)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| Problem::bad_request(format!("`{raw}` is not a user id; ids are UUIDs")))
}

fn now() -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(FORMAT)
        .expect("UTC timestamps always format")
}

#[utoipa::path(
    post, path = "/users", request_body = NewUser,
    responses(
        (status = 201, description = "Created", body = User),
        (status = 409, description = "Email already used", body = ProblemDoc),
        (status = 422, description = "Invalid fields", body = ProblemDoc),
    )
)]
async fn create_user(
    State(db): State<Database>,
    Json(input): Json<NewUser>,
) -> Result<(StatusCode, HeaderMap, Json<User>), Problem> {
    let email = normalize_email(&input.email).map_err(Problem::validation)?;
    let name = normalize_name(&input.name).map_err(Problem::validation)?;
    let created = now();
    let user = User {
        id: uuid::Uuid::now_v7().to_string(),
        email,
        name,
        status: Status::Active,
        created_at: created.clone(),
        updated_at: created,
        version: 1,
    };
    store::insert(db.pool(), &user).await?;
    tracing::info!(user_id = %user.id, "user created");
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/users/{}", user.id)) {
        headers.insert(header::LOCATION, location);
    }
    Ok((StatusCode::CREATED, headers, Json(user)))
}

#[utoipa::path(
    get, path = "/users/{id}", params(("id" = String, Path, description = "User id (UUID)")),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 400, description = "Malformed id", body = ProblemDoc),
        (status = 404, description = "No such user", body = ProblemDoc),
    )
)]
async fn get_user(
    State(db): State<Database>,
    Path(id): Path<String>,
) -> Result<Json<User>, Problem> {
    let id = parse_id(&id)?;
    Ok(Json(store::get(db.pool(), &id).await?))
}

#[utoipa::path(
    patch, path = "/users/{id}", request_body = UserPatch,
    params(("id" = String, Path, description = "User id (UUID)")),
    responses(
        (status = 200, description = "The updated user", body = User),
        (status = 404, description = "No such user", body = ProblemDoc),
        (status = 409, description = "Email taken, user deleted, or concurrent change", body = ProblemDoc),
        (status = 422, description = "Invalid fields", body = ProblemDoc),
    )
)]
async fn update_user(
    State(db): State<Database>,
    Path(id): Path<String>,
    Json(patch): Json<UserPatch>,
) -> Result<Json<User>, Problem> {
    let id = parse_id(&id)?;
    if patch.email.is_none() && patch.name.is_none() {
        return Err(Problem::validation(
            "nothing to change: send `email`, `name` or both",
        ));
    }
    let email = patch
        .email
        .as_deref()
        .map(normalize_email)
        .transpose()
        .map_err(Problem::validation)?;
    let name = patch
        .name
        .as_deref()
        .map(normalize_name)
        .transpose()
        .map_err(Problem::validation)?;
    let user = store::update(db.pool(), &id, &now(), |user| {
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
    params(("id" = String, Path, description = "User id (UUID)")),
    responses(
        (status = 200, description = "The user in its new status", body = User),
        (status = 404, description = "No such user", body = ProblemDoc),
        (status = 409, description = "User is deleted", body = ProblemDoc),
        (status = 422, description = "Unknown status", body = ProblemDoc),
    )
)]
async fn change_status(
    State(db): State<Database>,
    Path(id): Path<String>,
    Json(change): Json<StatusChange>,
) -> Result<Json<User>, Problem> {
    let id = parse_id(&id)?;
    let user = store::update(db.pool(), &id, &now(), |user| {
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
        (status = 400, description = "Bad cursor or limit", body = ProblemDoc),
    )
)]
async fn list_users(
    State(db): State<Database>,
    Query(params): Query<ListParams>,
) -> Result<Json<UserPage>, Problem> {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}, got {limit}"
        )));
    }
    let after = match params.cursor.as_deref() {
        None | Some("") => String::new(),
        Some(cursor) => decode_cursor(cursor)?,
    };
    // One extra row tells whether another page follows without a count query.
    let mut items = store::list(db.pool(), &after, params.status, limit + 1).await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|last| URL_SAFE_NO_PAD.encode(&last.id))
    } else {
        None
    };
    Ok(Json(UserPage { items, next_cursor }))
}

fn decode_cursor(cursor: &str) -> Result<String, Problem> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|id| uuid::Uuid::parse_str(id).is_ok())
        .ok_or_else(|| {
            Problem::bad_request("cursor is not one this service issued; pass `next_cursor` from the previous page unchanged")
        })
}

/// Problem document schema for the OpenAPI description (RFC 9457).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ProblemDoc {
    r#type: String,
    title: String,
    status: u16,
    detail: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sloop user service",
        description = "User accounts: create, read, update, status, list."
    ),
    paths(create_user, get_user, update_user, change_status, list_users),
    components(schemas(User, NewUser, UserPatch, StatusChange, UserPage, Status, ProblemDoc))
)]
struct ApiDoc;

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
