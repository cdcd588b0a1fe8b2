//! The payment service: one charge per order against a simulated provider, refunds, and its
//! part of the order saga — `OrderPlaced` becomes a charge, whose outcome is announced as
//! `PaymentSucceeded` or `PaymentFailed`; `OrderCancelled` voids or refunds it.

pub mod charges;
pub mod cli;
mod events;
pub mod metrics;
pub mod model;
pub mod provider;
pub mod worker;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use sloop_kit::{
    Consumer, Context, Database, Json, MaybeCaller, Outbox, Path, Problem, Query, Service,
};
use utoipa::OpenApi;

use charges::ChargeError;
use model::{Charge, ChargeQuery, ChargeStatus, NewCharge, RefundRequest};
use provider::{Provider, ProviderSettings};
use worker::WorkerSettings;

pub const NAME: &str = "payment";
pub const PORT: u16 = 8088;

pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How the service behaves: the simulated provider and the charge worker.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaymentSettings {
    pub provider: ProviderSettings,
    pub worker: WorkerSettings,
}

/// The payment service, described once.
pub fn service(settings: PaymentSettings) -> Service {
    let provider = Provider::new(settings.provider);
    let for_worker = provider.clone();
    Service::new(NAME, PORT)
        .database(&MIGRATIONS)
        .publishes(&sloop_events::payment::ALL)
        .metrics(metrics::describe)
        .consumes(NAME, |ctx| {
            Consumer::new(
                NAME,
                &[sloop_events::store::TOPIC],
                events::OrderEvents {
                    outbox: ctx.outbox().clone(),
                },
            )
        })
        .worker("charges", move |ctx, stop| {
            worker::run(ctx, for_worker, settings.worker, stop)
        })
        .api(move |ctx| router(Payments::new(ctx, provider, settings.worker)))
        .openapi(ApiDoc::openapi())
}

/// What the handlers share.
#[derive(Clone)]
pub struct Payments {
    db: Database,
    outbox: Outbox,
    provider: Provider,
    worker: WorkerSettings,
}

impl Payments {
    fn new(ctx: &Context, provider: Provider, worker: WorkerSettings) -> Self {
        Self {
            db: ctx.db().clone(),
            outbox: ctx.outbox().clone(),
            provider,
            worker,
        }
    }
}

pub fn router(state: Payments) -> Router {
    Router::new()
        .route("/charges", post(create_charge).get(find_charge))
        .route("/charges/{id}", get(get_charge))
        .route("/charges/{id}/refund", post(refund_charge))
        .route("/provider", get(get_provider).put(set_provider))
        .with_state(state)
}

impl From<ChargeError> for Problem {
    fn from(err: ChargeError) -> Self {
        match &err {
            ChargeError::NotFound(_) => Problem::not_found(err.to_string()),
            ChargeError::NotRefundable(..) => Problem::conflict("not-refundable", err.to_string()),
            ChargeError::UnknownStatus { .. }
            | ChargeError::Database(_)
            | ChargeError::Outbox(_) => Problem::internal(&err),
        }
    }
}

/// A charge id. Something that is not a UUID names no charge: 404, as for an unknown one
/// (an order's `charge_id` is null until it is paid, and clients that follow it blindly
/// should learn there is no such charge, not that they sent a malformed request).
fn parse_id(raw: &str) -> Result<String, Problem> {
    uuid::Uuid::parse_str(raw)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| Problem::not_found(format!("no charge has id `{raw}`; ids are UUIDs")))
}

/// Orders are the store's, and its ids are UUIDs; the hyphenated lower-case form is the one
/// stored, so one order never gets two charges under two spellings.
fn check_order_id(order_id: &str) -> Result<String, String> {
    uuid::Uuid::parse_str(order_id)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| format!("order_id `{order_id}` is not an order id; ids are UUIDs"))
}

/// A payment method is a slug: `card`, `test-decline`.
fn check_method(method: &str) -> Result<(), Problem> {
    let ok = !method.is_empty()
        && method.len() <= 50
        && method
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Err(Problem::validation(format!(
            "payment_method must be 1 to 50 lower-case letters, digits or dashes, got {method:?}"
        )));
    }
    Ok(())
}

#[utoipa::path(
    post, path = "/charges", request_body = NewCharge,
    responses(
        (status = 201, description = "Charged (or declined: see `status`)", body = Charge),
        (status = 200, description = "The order was already charged; this is its charge", body = Charge),
        (status = 409, description = "The order was charged with another amount or method", body = Problem),
        (status = 403, description = "Only an admin or another service may charge", body = Problem),
    )
)]
/// Charges an order now, outside the saga. Idempotent by order id: the same order again
/// answers its existing charge and never charges twice.
async fn create_charge(
    State(state): State<Payments>,
    caller: MaybeCaller,
    Json(input): Json<NewCharge>,
) -> Result<(StatusCode, Json<Charge>), Problem> {
    caller.require_admin("charge orders")?;
    let input = NewCharge {
        order_id: check_order_id(&input.order_id).map_err(Problem::validation)?,
        ..input
    };
    input.amount.check_positive().map_err(Problem::validation)?;
    check_method(&input.payment_method)?;
    let mut tx = state.db.begin().await.map_err(|e| Problem::internal(&e))?;
    let attempts = state.worker.attempts;
    let taker = charges::Taker::Caller {
        claim_ms: attempts.claim_ms,
    };
    let created = charges::insert_pending(
        &mut tx,
        &input.order_id,
        &input.amount,
        &input.payment_method,
        taker,
    )
    .await?;
    tx.commit().await.map_err(|e| Problem::internal(&e))?;
    let existing = charges::by_order(&state.db, &input.order_id)
        .await?
        .ok_or_else(|| Problem::internal(&"a charge just recorded is gone"))?;
    if !created {
        if existing.amount != input.amount || existing.payment_method != input.payment_method {
            return Err(Problem::conflict(
                "order-already-charged",
                format!(
                    "order {} already has charge {} for {} {} by {}; one order, one charge",
                    input.order_id,
                    existing.id,
                    existing.amount.amount,
                    existing.amount.currency,
                    existing.payment_method
                ),
            ));
        }
        return Ok((StatusCode::OK, Json(existing)));
    }
    // Claimed at insert, so the worker leaves it alone while this request charges it.
    charges::process(
        &state.db,
        &state.outbox,
        &state.provider,
        attempts,
        &existing.id,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(charges::get(&state.db, &existing.id).await?),
    ))
}

#[utoipa::path(
    get, path = "/charges", params(ChargeQuery),
    responses(
        (status = 200, description = "The order's charge", body = Charge),
        (status = 403, description = "Only an admin or another service may do this", body = Problem),
        (status = 400, description = "order_id is not a UUID", body = Problem),
        (status = 404, description = "The order has no charge", body = Problem),
    )
)]
async fn find_charge(
    State(state): State<Payments>,
    caller: MaybeCaller,
    Query(query): Query<ChargeQuery>,
) -> Result<Json<Charge>, Problem> {
    caller.require_admin("read charges")?;
    let order_id = check_order_id(&query.order_id).map_err(Problem::bad_request)?;
    charges::by_order(&state.db, &order_id)
        .await?
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("order {order_id} has no charge")))
}

#[utoipa::path(
    get, path = "/charges/{id}", params(("id" = String, Path, format = "uuid", description = "Charge id")),
    responses(
        (status = 200, description = "The charge", body = Charge),
        (status = 403, description = "Only an admin or another service may do this", body = Problem),
        (status = 404, description = "No such charge", body = Problem),
    )
)]
async fn get_charge(
    State(state): State<Payments>,
    caller: MaybeCaller,
    Path(id): Path<String>,
) -> Result<Json<Charge>, Problem> {
    caller.require_admin("read charges")?;
    Ok(Json(charges::get(&state.db, &parse_id(&id)?).await?))
}

#[utoipa::path(
    post, path = "/charges/{id}/refund", request_body = RefundRequest,
    params(("id" = String, Path, format = "uuid", description = "Charge id")),
    responses(
        (status = 200, description = "Refunded (refunding again changes nothing)", body = Charge),
        (status = 403, description = "Only an admin or another service may do this", body = Problem),
        (status = 404, description = "No such charge", body = Problem),
        (status = 409, description = "The charge did not succeed, so there is nothing to pay back", body = Problem),
    )
)]
async fn refund_charge(
    State(state): State<Payments>,
    caller: MaybeCaller,
    Path(id): Path<String>,
    Json(body): Json<RefundRequest>,
) -> Result<Json<Charge>, Problem> {
    caller.require_admin("refund charges")?;
    let id = parse_id(&id)?;
    let reason = body
        .reason
        .unwrap_or_else(|| "refunded on request".to_owned());
    let reason =
        sloop_kit::validate::name("reason", &reason, 1, 500).map_err(Problem::validation)?;
    let charge = charges::refund(&state.db, &state.outbox, &id, &reason).await?;
    debug_assert_eq!(charge.status, ChargeStatus::Refunded);
    Ok(Json(charge))
}

#[utoipa::path(
    get, path = "/provider",
    responses(
        (status = 200, description = "How the simulated provider behaves now", body = ProviderSettings),
        (status = 403, description = "Only an admin or another service may do this", body = Problem),
    )
)]
async fn get_provider(
    State(state): State<Payments>,
    caller: MaybeCaller,
) -> Result<Json<ProviderSettings>, Problem> {
    caller.require_admin("read the provider's settings")?;
    Ok(Json(state.provider.settings()))
}

#[utoipa::path(
    put, path = "/provider", request_body = ProviderSettings,
    responses(
        (status = 200, description = "The provider behaves so from now on", body = ProviderSettings),
        (status = 403, description = "Only an admin or another service may do this", body = Problem),
        (status = 422, description = "A rate outside 0..1 or a p99 below the median", body = Problem),
    )
)]
/// Changes the simulated provider at run time: latency, declines and transient errors, for
/// experiments.
async fn set_provider(
    State(state): State<Payments>,
    caller: MaybeCaller,
    Json(settings): Json<ProviderSettings>,
) -> Result<Json<ProviderSettings>, Problem> {
    caller.require_admin("change the provider's settings")?;
    settings.validate().map_err(Problem::validation)?;
    state.provider.set_settings(settings);
    tracing::info!(?settings, "provider settings changed");
    Ok(Json(settings))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sloop payment service",
        description = "Charges (one per order), refunds, and the simulated provider's settings."
    ),
    paths(
        create_charge,
        find_charge,
        get_charge,
        refund_charge,
        get_provider,
        set_provider
    ),
    components(schemas(
        Charge,
        ChargeStatus,
        NewCharge,
        RefundRequest,
        ProviderSettings,
        sloop_events::Money
    ))
)]
struct ApiDoc;
