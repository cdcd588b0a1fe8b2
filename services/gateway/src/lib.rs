//! The gateway: the platform's single entry point. `/api/<service>/...` goes to the service
//! by prefix; on the way the caller's token is verified locally against auth's JWKS, the
//! caller is rate-limited, the route's role rules are applied, and the request is forwarded
//! with time-outs, budgeted retries and a circuit breaker per upstream.

pub mod cli;
pub mod config;
mod docs;
pub mod jwks;
mod metrics;
mod proxy;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use sloop_kit::health::Check;
use sloop_kit::ratelimit::{Decision, Quota, RateLimiter};
use sloop_kit::{Problem, Service};
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use config::GatewayConfig;
use jwks::{Identity, Verifier, VerifyError};
use metrics::{AUTH_REJECTED, RATE_LIMITED};
use proxy::{Forward, Proxy, Target};

pub const NAME: &str = "gateway";
pub const PORT: u16 = 8080;

/// How often the JWKS is fetched even when no unknown key forces it.
const JWKS_REFRESH: Duration = Duration::from_secs(300);

/// The gateway, described once. It has no database: it keeps no state of its own.
pub fn service(config: GatewayConfig) -> Service {
    let gateway = Gateway::new(config);
    let for_worker = gateway.clone();
    let for_readiness = gateway.clone();
    Service::new(NAME, PORT)
        .metrics(metrics::describe)
        .worker("jwks-refresh", move |_, stop| async move {
            for_worker.0.verifier.keep_fresh(JWKS_REFRESH, stop).await;
        })
        .readiness(move |_| for_readiness.readiness())
        .api(move |_| gateway.router())
}

/// The client a rate limit applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ClientKey {
    User(String),
    Address(Option<IpAddr>),
}

#[derive(Clone)]
struct Gateway(Arc<Inner>);

struct Inner {
    config: GatewayConfig,
    targets: HashMap<String, Target>,
    proxy: Proxy,
    verifier: Verifier,
    limiter: RateLimiter<ClientKey>,
}

impl Gateway {
    fn new(config: GatewayConfig) -> Self {
        let targets = config
            .upstreams
            .iter()
            .map(|(name, urls)| (name.clone(), Target::new(name, urls)))
            .collect();
        Self(Arc::new(Inner {
            proxy: Proxy::new(
                config.retry_budget.percent,
                config.retry_budget.min_per_second,
            ),
            verifier: Verifier::new(&config.jwt),
            limiter: RateLimiter::new(Quota {
                rate: config.rate_limit.rate,
                burst: config.rate_limit.burst,
            }),
            targets,
            config,
        }))
    }

    fn router(&self) -> Router {
        let mut router = Router::new().route("/openapi.json", get(docs::aggregated));
        for index in 0..self.0.config.routes.len() {
            let prefix = self.0.config.routes[index].prefix.clone();
            let handler = move |State(gateway): State<Gateway>, request: Request| async move {
                let peer = request
                    .extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|info| info.0.ip());
                gateway.handle(index, peer, request).await
            };
            router = router
                .route(&prefix, any(handler))
                .route(&format!("{prefix}/{{*rest}}"), any(handler));
        }
        let router = router.with_state(self.clone());
        match self.cors() {
            Some(cors) => router.layer(cors),
            None => router,
        }
    }

    fn cors(&self) -> Option<CorsLayer> {
        let origins: Vec<HeaderValue> = self
            .0
            .config
            .cors
            .allowed_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        if origins.is_empty() {
            return None;
        }
        Some(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                    Method::OPTIONS,
                ])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    "x-request-id".parse().expect("a valid header name"),
                ])
                .expose_headers([
                    header::RETRY_AFTER,
                    "ratelimit".parse().expect("a valid header name"),
                    "ratelimit-policy".parse().expect("a valid header name"),
                    "x-request-id".parse().expect("a valid header name"),
                ])
                .max_age(Duration::from_secs(600)),
        )
    }

    async fn handle(&self, index: usize, peer: Option<IpAddr>, request: Request) -> Response {
        let route = &self.0.config.routes[index];
        let identity = match self.authenticate(request.headers()).await {
            Ok(identity) => identity,
            Err(response) => return *response,
        };
        let key = match &identity {
            Some(identity) => ClientKey::User(identity.user_id.clone()),
            None => ClientKey::Address(peer),
        };
        let decision = self.0.limiter.acquire(&key);
        if !decision.is_allowed() {
            ::metrics::counter!(RATE_LIMITED).increment(1);
            let mut response = Problem::too_many_requests(
                "too many requests from this client; slow down",
                decision.retry_after_secs(),
            )
            .into_response();
            self.rate_limit_headers(&mut response, decision);
            return response;
        }
        if let Err(problem) = authorize(
            route,
            request.method(),
            request.uri().path(),
            identity.as_ref(),
        ) {
            return problem.into_response();
        }
        let target = &self.0.targets[&route.upstream];
        let forward = Forward {
            target,
            strip: &route.strip,
            route: &route.prefix,
            timeout: route.timeout,
            identity: identity.as_ref(),
            client: peer,
        };
        let mut response = self.0.proxy.forward(forward, request).await;
        self.rate_limit_headers(&mut response, decision);
        response
    }

    /// The caller's identity from a bearer token, `None` without one, or the response that
    /// refuses a bad token. A WebSocket handshake from a browser, which cannot set
    /// `Authorization`, may carry the token in the `bearer` subprotocol instead.
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Identity>, Box<Response>> {
        let token = match headers.get(header::AUTHORIZATION) {
            Some(value) => value
                .to_str()
                .ok()
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(|token| token.trim().to_owned()),
            None => match proxy::websocket_bearer(headers) {
                Some(token) => Some(token),
                None => return Ok(None),
            },
        };
        let Some(token) = token else {
            return Err(Box::new(unauthorized(
                "send the access token as `Authorization: Bearer TOKEN`",
                "invalid_request",
            )));
        };
        match self.0.verifier.verify(&token).await {
            Ok(identity) => Ok(Some(identity)),
            Err(VerifyError::Invalid(reason)) => {
                ::metrics::counter!(AUTH_REJECTED, "reason" => "invalid_token").increment(1);
                Err(Box::new(unauthorized(reason, "invalid_token")))
            }
            Err(err @ VerifyError::Unavailable(_)) => {
                ::metrics::counter!(AUTH_REJECTED, "reason" => "keys_unavailable").increment(1);
                tracing::warn!(error = %err, "cannot verify a token");
                Err(Box::new(
                    Problem::unavailable("tokens cannot be verified right now; retry later")
                        .with_retry_after(1)
                        .into_response(),
                ))
            }
        }
    }

    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers): the
    /// quota and window, and what is left of it.
    fn rate_limit_headers(&self, response: &mut Response, decision: Decision) {
        let quota = self.0.limiter.quota();
        let window = quota.window().as_secs_f64().ceil().max(1.0) as u64;
        let (remaining, reset) = match decision {
            Decision::Allowed { remaining } => (
                remaining,
                ((quota.burst - f64::from(remaining)) / quota.rate).ceil() as u64,
            ),
            Decision::Limited { .. } => (0, decision.retry_after_secs()),
        };
        let headers = response.headers_mut();
        if let Ok(policy) =
            HeaderValue::from_str(&format!("\"client\";q={};w={window}", quota.burst as u64))
        {
            headers.insert("ratelimit-policy", policy);
        }
        if let Ok(state) = HeaderValue::from_str(&format!("\"client\";r={remaining};t={reset}")) {
            headers.insert("ratelimit", state);
        }
    }

    /// Ready when at least one upstream instance answers its `/healthz`: one service down
    /// degrades its routes, not the whole entry point. Instances that do not answer are
    /// named in the logs.
    fn readiness(&self) -> Check {
        let gateway = self.clone();
        Check::new("upstreams", true, move || {
            let gateway = gateway.clone();
            Box::pin(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(1))
                    .build()
                    .map_err(|e| e.to_string())?;
                let client = &client;
                let probes = gateway.0.targets.values().flat_map(|target| {
                    target.instances.iter().map(move |instance| async move {
                        let ok = client
                            .get(format!("{}/healthz", instance.base))
                            .send()
                            .await
                            .is_ok_and(|r| r.status().is_success());
                        (format!("{} ({})", target.name, instance.base), ok)
                    })
                });
                let results = futures::future::join_all(probes).await;
                let down: Vec<&str> = results
                    .iter()
                    .filter(|(_, ok)| !ok)
                    .map(|(n, _)| n.as_str())
                    .collect();
                if down.len() == results.len() {
                    return Err(format!("no upstream answers: {}", down.join(", ")));
                }
                if !down.is_empty() {
                    // Degraded, not down: say so in the logs, stay ready.
                    tracing::warn!(down = ?down, "some upstreams do not answer");
                }
                Ok(())
            })
        })
    }
}

/// The route's rules: a matching rule needs one of its roles; otherwise a non-public route
/// needs a signed-in caller.
fn authorize(
    route: &config::Route,
    method: &Method,
    path: &str,
    identity: Option<&Identity>,
) -> Result<(), Problem> {
    if let Some(rule) = route
        .rules
        .iter()
        .find(|r| r.matches(method.as_str(), path))
    {
        let Some(identity) = identity else {
            return Err(Problem::unauthorized(
                "sign in first: send `Authorization: Bearer TOKEN`",
            ));
        };
        if !rule.roles.iter().any(|r| identity.roles.contains(r)) {
            ::metrics::counter!(AUTH_REJECTED, "reason" => "forbidden").increment(1);
            return Err(Problem::forbidden(format!(
                "this needs the role {}",
                rule.roles.join(" or ")
            )));
        }
        return Ok(());
    }
    if !route.public && identity.is_none() {
        return Err(Problem::unauthorized(
            "sign in first: send `Authorization: Bearer TOKEN`",
        ));
    }
    Ok(())
}

/// 401 with the `WWW-Authenticate` challenge RFC 6750 asks for.
fn unauthorized(reason: &str, error: &str) -> Response {
    ::metrics::counter!(AUTH_REJECTED, "reason" => "missing_or_malformed")
        .increment(u64::from(error == "invalid_request"));
    let mut response = Problem::unauthorized(reason).into_response();
    if let Ok(challenge) = HeaderValue::from_str(&format!(
        "Bearer error=\"{error}\", error_description=\"{reason}\""
    )) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}
