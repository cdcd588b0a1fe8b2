//! The auth service: registration (credentials here, the profile in the user service),
//! login with Argon2id-hashed passwords, short-lived EdDSA access tokens the gateway verifies
//! against the JWKS, and refresh tokens that rotate on use and revoke their whole family
//! when a used one comes back.

pub mod cli;
mod events;
pub mod keys;
pub mod passwords;
mod store;
pub mod tokens;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use sloop_kit::clock::now_millis;
use sloop_kit::ratelimit::{Quota, RateLimiter};
use sloop_kit::{
    Caller, ClientAddr, Consumer, Context, Database, Json, Problem, Service, Upstream,
    UpstreamError, validate,
};
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;
use utoipa::{OpenApi, ToSchema};

use keys::{KeyError, KeyRing, KeySettings};
use passwords::{HashCost, PasswordError, Passwords};
use store::{AccountStatus, Credentials, StoreError};
use tokens::TokenSettings;

pub const NAME: &str = "auth";
pub const PORT: u16 = 8081;

pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// How auth behaves; `sloop-auth` reads it from flags and the environment.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub tokens: TokenSettings,
    pub keys: KeySettings,
    /// How often the rotation worker looks whether a new key is due.
    pub rotation_check: Duration,
    /// How often refresh-token families whose every token expired are deleted.
    pub refresh_cleanup_every: Duration,
    pub hash_cost: HashCost,
    /// Emails that get the admin role when they register.
    pub admin_emails: Vec<String>,
    /// Failed logins allowed per account, and per client address, per `failure_window`.
    pub failures_per_account: u32,
    pub failures_per_address: u32,
    pub failure_window: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        let access_ttl = Duration::from_secs(15 * 60);
        Self {
            tokens: TokenSettings {
                issuer: "sloop-auth".to_owned(),
                audience: "sloop".to_owned(),
                access_ttl,
                refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            },
            keys: KeySettings {
                rotation: Duration::from_secs(30 * 24 * 3600),
                publish_ahead: Duration::from_secs(5 * 60),
                token_lifetime: access_ttl + Duration::from_secs(60),
            },
            rotation_check: Duration::from_secs(60),
            refresh_cleanup_every: Duration::from_secs(3600),
            hash_cost: HashCost::OWASP,
            admin_emails: Vec::new(),
            failures_per_account: 5,
            failures_per_address: 50,
            failure_window: Duration::from_secs(15 * 60),
        }
    }
}

/// The auth service, described once.
pub fn service(settings: AuthSettings) -> Service {
    let rotation = settings.clone();
    let cleanup_every = settings.refresh_cleanup_every;
    Service::new(NAME, PORT)
        .database(&MIGRATIONS)
        .upstream("user", sloop_user_port())
        .consumes("auth", |_| {
            Consumer::new("auth", &[sloop_events::user::TOPIC], events::UserEvents)
        })
        .worker("key-rotation", move |ctx, stop| async move {
            let ring = KeyRing::new(ctx.db().clone(), rotation.keys);
            if let Err(err) = ring.ensure_active().await {
                tracing::error!(error = %err, "cannot make a first signing key");
            }
            ring.keep_rotating(rotation.rotation_check, stop).await;
        })
        .worker("refresh-token-cleanup", move |ctx, stop| {
            delete_expired_refresh_tokens(ctx.db().clone(), cleanup_every, stop)
        })
        .api(move |ctx| router(Auth::new(ctx, settings)))
        .openapi(ApiDoc::openapi())
}

/// Deletes expired refresh-token families `every` so long, the first time at start.
async fn delete_expired_refresh_tokens(db: Database, every: Duration, stop: CancellationToken) {
    loop {
        match store::delete_expired_families(&db, now_millis()).await {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, "deleted expired refresh tokens"),
            Err(err) => {
                tracing::warn!(error = %err, "cannot delete expired refresh tokens; retrying later")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// The user service's conventional port, where registration creates profiles.
const fn sloop_user_port() -> u16 {
    8082
}

/// What the handlers share.
#[derive(Clone)]
pub struct Auth {
    db: Database,
    user: Upstream,
    keys: Arc<KeyRing>,
    passwords: Passwords,
    failures_by_account: Arc<RateLimiter<String>>,
    failures_by_address: Arc<RateLimiter<Option<IpAddr>>>,
    settings: Arc<AuthSettings>,
}

impl Auth {
    fn new(ctx: &Context, settings: AuthSettings) -> Self {
        let window = settings.failure_window;
        Self {
            db: ctx.db().clone(),
            user: ctx.upstream("user").clone(),
            keys: Arc::new(KeyRing::new(ctx.db().clone(), settings.keys)),
            passwords: Passwords::new(settings.hash_cost).unwrap_or_else(|e| {
                panic!("the password hash cost is invalid ({e}); see --hash-memory-kib")
            }),
            failures_by_account: Arc::new(RateLimiter::new(Quota::per(
                settings.failures_per_account,
                window,
            ))),
            failures_by_address: Arc::new(RateLimiter::new(Quota::per(
                settings.failures_per_address,
                window,
            ))),
            settings: Arc::new(settings),
        }
    }
}

pub fn router(auth: Auth) -> Router {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/auth/keys/rotate", post(rotate_keys))
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(auth)
}

impl From<StoreError> for Problem {
    fn from(err: StoreError) -> Self {
        match &err {
            StoreError::DuplicateEmail(_) => Problem::conflict("duplicate-email", err.to_string()),
            _ => Problem::internal(&err),
        }
    }
}

impl From<PasswordError> for Problem {
    fn from(err: PasswordError) -> Self {
        Problem::internal(&err)
    }
}

impl From<KeyError> for Problem {
    fn from(err: KeyError) -> Self {
        Problem::internal(&err)
    }
}

/// Body of `POST /auth/register`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    #[schema(format = Email, min_length = 3, max_length = 254)]
    pub email: String,
    /// 10 to 128 characters; not the email.
    #[schema(min_length = 10, max_length = 128, format = Password)]
    pub password: String,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: String,
}

/// A new account.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Account {
    #[schema(format = "uuid")]
    pub user_id: String,
    pub email: String,
    pub roles: Vec<String>,
}

/// Body of `POST /auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    #[schema(format = Email, min_length = 3, max_length = 254)]
    pub email: String,
    #[schema(min_length = 1, max_length = 1024, format = Password)]
    pub password: String,
}

/// Body of `POST /auth/refresh` and `POST /auth/logout`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// 43 characters of base64url, as /auth/login gave it.
    #[schema(min_length = 43, max_length = 43, pattern = r"^[A-Za-z0-9_-]{43}$")]
    pub refresh_token: String,
}

impl RefreshRequest {
    /// A refresh token has one shape; anything else is a client mistake, not a guess.
    fn checked(&self) -> Result<&str, Problem> {
        let token = self.refresh_token.as_str();
        let well_formed = token.len() == 43
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if well_formed {
            Ok(token)
        } else {
            Err(Problem::validation(
                "refresh_token is not a refresh token: send the 43 characters /auth/login gave you",
            ))
        }
    }
}

/// Tokens for a signed-in user.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenPair {
    /// A JWT to send as `Authorization: Bearer ...`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Trade it for a new pair at `/auth/refresh` before it expires; it works once.
    pub refresh_token: String,
    pub refresh_expires_in: u64,
    #[schema(format = "uuid")]
    pub user_id: String,
}

#[utoipa::path(
    post, path = "/auth/register", request_body = Registration,
    responses(
        (status = 201, description = "Registered; sign in with /auth/login", body = Account),
        (status = 409, description = "The email is taken", body = Problem),
    )
)]
/// Creates an account: credentials here, the profile in the user service. When the user
/// service cannot be reached the account is not created (503) and may be registered again.
async fn register(
    State(auth): State<Auth>,
    Json(input): Json<Registration>,
) -> Result<(StatusCode, Json<Account>), Problem> {
    let email = validate::email(&input.email).map_err(Problem::validation)?;
    let name = validate::display_name(&input.name).map_err(Problem::validation)?;
    passwords::check_new(&input.password, &email).map_err(Problem::validation)?;
    let password_hash = auth.passwords.hash(&input.password).await?;
    let now = now_millis();
    let account = match store::by_email(&auth.db, &email).await? {
        // An earlier attempt never finished: finish it with the same id, so a profile the
        // user service made before the answer was lost is the one this account gets.
        Some(pending) if pending.status == AccountStatus::Pending => {
            store::renew_pending(&auth.db, &pending.user_id, &password_hash, now).await?;
            pending
        }
        Some(_) => {
            return Err(Problem::conflict(
                "duplicate-email",
                format!("an account with email {email} already exists; sign in instead"),
            ));
        }
        None => {
            let account = Credentials {
                user_id: uuid::Uuid::now_v7().to_string(),
                email: email.clone(),
                password_hash,
                roles: roles_for(&auth.settings, &email),
                status: AccountStatus::Pending,
                profile_version: 0,
                created_at_ms: now,
            };
            store::insert_pending(&auth.db, &account, now).await?;
            account
        }
    };
    let profile = serde_json::json!({ "email": email, "name": name });
    let path = format!("/users/{}", account.user_id);
    let created = auth
        .user
        .call(reqwest::Method::PUT, &path, "/users/{id}", Some(&profile))
        .await;
    match created {
        Ok(response) if response.status().is_success() => {
            let version = response
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["version"].as_i64())
                .unwrap_or(1);
            store::activate(&auth.db, &account.user_id, version, now_millis()).await?;
            tracing::info!(user_id = %account.user_id, "account registered");
            Ok((
                StatusCode::CREATED,
                Json(Account {
                    user_id: account.user_id,
                    email,
                    roles: account.roles,
                }),
            ))
        }
        Ok(response) => {
            // The user service refused the profile (a 4xx): no account.
            store::delete_pending(&auth.db, &account.user_id).await?;
            Err(refused_profile(response).await)
        }
        Err(err) => {
            // Refused connections and an open breaker mean the profile was certainly not
            // made. A time-out or a 5xx might have made it: keep the pending row (it cannot
            // sign in), and registering again finishes it under the same id.
            if matches!(
                err,
                UpstreamError::Unreachable { .. } | UpstreamError::Open { .. }
            ) {
                store::delete_pending(&auth.db, &account.user_id).await?;
            }
            Err(err.into())
        }
    }
}

/// The user service's problem, passed on (its detail says what to fix).
async fn refused_profile(response: reqwest::Response) -> Problem {
    let status = response.status().as_u16();
    match response.json::<Problem>().await {
        Ok(problem) if (400..500).contains(&problem.status) => problem,
        _ => Problem::internal(&format!("the user service answered {status} to a profile")),
    }
}

fn roles_for(settings: &AuthSettings, email: &str) -> Vec<String> {
    let mut roles = vec!["user".to_owned()];
    if settings
        .admin_emails
        .iter()
        .any(|a| a.eq_ignore_ascii_case(email))
    {
        roles.push(sloop_kit::identity::ADMIN_ROLE.to_owned());
    }
    roles
}

const WRONG_LOGIN: &str = "the email or password is wrong";

#[utoipa::path(
    post, path = "/auth/login", request_body = Login,
    responses(
        (status = 200, description = "Signed in", body = TokenPair),
        (status = 401, description = "Wrong email or password", body = Problem),
        (status = 403, description = "The account is suspended or deleted", body = Problem),
        (status = 429, description = "Too many failed logins for this account or address", body = Problem,
         headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
async fn login(
    State(auth): State<Auth>,
    client: ClientAddr,
    Json(input): Json<Login>,
) -> Result<Json<TokenPair>, Problem> {
    let email = validate::email(&input.email).map_err(Problem::validation)?;
    for (limited, what) in [
        (auth.failures_by_account.check(&email), "this account"),
        (auth.failures_by_address.check(&client.0), "your address"),
    ] {
        if !limited.is_allowed() {
            return Err(Problem::too_many_requests(
                format!("too many failed logins for {what}; wait and try again"),
                limited.retry_after_secs(),
            ));
        }
    }
    let account = store::by_email(&auth.db, &email).await?;
    let matched = auth
        .passwords
        .verify(
            &input.password,
            account.as_ref().map(|a| a.password_hash.as_str()),
        )
        .await?;
    let account = match account {
        Some(account) if matched && account.status != AccountStatus::Pending => account,
        _ => {
            auth.failures_by_account.acquire(&email);
            auth.failures_by_address.acquire(&client.0);
            metrics::counter!("auth_login_failures_total").increment(1);
            return Err(Problem::unauthorized(WRONG_LOGIN));
        }
    };
    if account.status != AccountStatus::Active {
        return Err(Problem::forbidden(format!(
            "this account is {}; ask an admin",
            account.status.as_str()
        )));
    }
    let family = uuid::Uuid::now_v7().to_string();
    let pair = issue(&auth, &account, &family).await?;
    tracing::info!(user_id = %account.user_id, "signed in");
    Ok(Json(pair))
}

/// Signs an access token and stores a new refresh token of `family`.
async fn issue(auth: &Auth, account: &Credentials, family: &str) -> Result<TokenPair, Problem> {
    let now = now_millis();
    let settings = &auth.settings.tokens;
    let key = match auth.keys.signing_key().await {
        Err(KeyError::NoActiveKey) => {
            auth.keys.ensure_active().await?;
            auth.keys.signing_key().await?
        }
        other => other?,
    };
    let (access, _) = tokens::access_token(
        &key,
        settings,
        &account.user_id,
        &account.email,
        &account.roles,
        now,
    )
    .map_err(|e| Problem::internal(&e))?;
    let (refresh, hash) = tokens::new_refresh_token();
    let refresh_ttl = settings.refresh_ttl.as_millis() as i64;
    store::insert_refresh(
        &auth.db,
        &hash,
        family,
        &account.user_id,
        now,
        now + refresh_ttl,
    )
    .await?;
    Ok(TokenPair {
        access_token: access,
        token_type: "Bearer".to_owned(),
        expires_in: settings.access_ttl.as_secs(),
        refresh_token: refresh,
        refresh_expires_in: settings.refresh_ttl.as_secs(),
        user_id: account.user_id.clone(),
    })
}

#[utoipa::path(
    post, path = "/auth/refresh", request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new pair; the old refresh token no longer works", body = TokenPair),
        (status = 401, description = "Unknown, expired, revoked or already used refresh token", body = Problem),
    )
)]
/// Trades a refresh token for a new pair. Each refresh token works once: presenting a used
/// one again revokes every token of its family (it was stolen or replayed).
async fn refresh(
    State(auth): State<Auth>,
    Json(input): Json<RefreshRequest>,
) -> Result<Json<TokenPair>, Problem> {
    let hash = tokens::hash_refresh_token(input.checked()?);
    let now = now_millis();
    let claimed = store::claim_refresh(&auth.db, &hash, now).await?;
    let row = store::refresh_row(&auth.db, &hash).await?;
    let Some(row) = row else {
        return Err(Problem::unauthorized(
            "unknown refresh token; sign in again",
        ));
    };
    if !claimed {
        if row.revoked_at_ms.is_some() {
            return Err(Problem::unauthorized(
                "this refresh token was revoked; sign in again",
            ));
        }
        if row.rotated_at_ms.is_some() {
            let revoked = store::revoke_family(&auth.db, &row.family_id, now).await?;
            tracing::warn!(user_id = %row.user_id, family = %row.family_id, revoked, "refresh token reused; family revoked");
            metrics::counter!("auth_refresh_reuse_total").increment(1);
            return Err(Problem::unauthorized(
                "this refresh token was already used, so every token of this sign-in is revoked; sign in again",
            ));
        }
        return Err(Problem::unauthorized(
            "this refresh token expired; sign in again",
        ));
    }
    let account = store::by_id(&auth.db, &row.user_id).await?;
    let Some(account) = account.filter(|a| a.status == AccountStatus::Active) else {
        store::revoke_family(&auth.db, &row.family_id, now).await?;
        return Err(Problem::unauthorized("this account can no longer sign in"));
    };
    Ok(Json(issue(&auth, &account, &row.family_id).await?))
}

#[utoipa::path(
    post, path = "/auth/logout", request_body = RefreshRequest,
    responses((status = 204, description = "Signed out: the refresh token and its family no longer work"))
)]
/// Signs out: revokes the refresh token's whole family. Unknown tokens are fine (204), so
/// logging out twice is harmless.
async fn logout(
    State(auth): State<Auth>,
    Json(input): Json<RefreshRequest>,
) -> Result<StatusCode, Problem> {
    let hash = tokens::hash_refresh_token(input.checked()?);
    if let Some(row) = store::refresh_row(&auth.db, &hash).await? {
        store::revoke_family(&auth.db, &row.family_id, now_millis()).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A key rotation started.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Rotation {
    pub kid: String,
    /// Unix milliseconds from which the new key signs.
    pub activates_at_ms: i64,
}

#[utoipa::path(
    post, path = "/auth/keys/rotate",
    responses(
        (status = 202, description = "A new key is published and will sign from activates_at_ms", body = Rotation),
        (status = 401, description = "No signed-in caller (call through the gateway)", body = Problem),
        (status = 403, description = "Only an admin may rotate keys", body = Problem),
    )
)]
/// Starts a key rotation now instead of waiting for the schedule. Needs an admin, as the
/// gateway identifies callers.
async fn rotate_keys(
    State(auth): State<Auth>,
    caller: Caller,
) -> Result<(StatusCode, Json<Rotation>), Problem> {
    if !caller.is_admin() {
        return Err(Problem::forbidden("only an admin may rotate signing keys"));
    }
    let (kid, activates_at_ms) = auth.keys.rotate().await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Rotation {
            kid,
            activates_at_ms,
        }),
    ))
}

#[utoipa::path(
    get, path = "/.well-known/jwks.json",
    responses((status = 200, description = "The public keys that verify access tokens (RFC 7517)", body = JwkSet))
)]
async fn jwks(State(auth): State<Auth>) -> Result<Response, Problem> {
    let set = auth.keys.jwks().await?;
    let mut response = Json(set).into_response();
    // Verifiers may cache it briefly; new keys are published well before they sign.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Ok(response)
}

/// A JSON Web Key Set (RFC 7517), as served.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JwkSet {
    pub keys: Vec<PublicJwk>,
}

/// One Ed25519 public key (RFC 8037).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PublicJwk {
    /// `OKP`.
    pub kty: String,
    /// `Ed25519`.
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    pub kid: String,
    /// `EdDSA`.
    pub alg: String,
    /// `sig`.
    #[serde(rename = "use")]
    #[schema(rename = "use")]
    pub key_use: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sloop auth service",
        description = "Registration, login, rotating refresh tokens and the JWKS that verifies access tokens."
    ),
    paths(register, login, refresh, logout, rotate_keys, jwks),
    components(schemas(
        Registration,
        Account,
        Login,
        RefreshRequest,
        TokenPair,
        Rotation,
        JwkSet,
        PublicJwk
    ))
)]
struct ApiDoc;
