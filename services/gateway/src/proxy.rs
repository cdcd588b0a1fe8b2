//! Forwarding one request to its upstream, as an HTTP proxy must: hop-by-hop headers
//! dropped both ways, `X-Forwarded-*` and `Forwarded` added, bodies streamed rather than
//! buffered, WebSocket upgrades bridged, a time-out until response headers, retries only
//! for idempotent requests without a body and within a retry budget, and a circuit breaker
//! per upstream instance. An upstream with several instances hands requests to them in turn,
//! passing over those whose breaker is open; it answers 503 at once when every one is open.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics::{counter, histogram};
use opentelemetry::trace::Status;
use sloop_kit::Problem;
use sloop_kit::breaker::{BreakerSettings, CircuitBreaker, Permit, Rejected};
use sloop_kit::identity::{FORWARDED_FOR, USER_ID_HEADER, USER_ROLES_HEADER};
use tower::retry::budget::{Budget, TpsBudget};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::jwks::Identity;
use crate::metrics::{RETRIES, UPSTREAM_DURATION, UPSTREAM_ERRORS, UPSTREAM_REQUESTS};

/// One upstream: its instances, taken in turn.
pub struct Target {
    pub name: String,
    pub instances: Vec<Instance>,
    next: AtomicUsize,
}

/// One instance of an upstream: where it is and its breaker.
pub struct Instance {
    /// `http://host:port`, no trailing slash.
    pub base: String,
    pub breaker: CircuitBreaker,
}

impl Target {
    /// `bases` must not be empty. With one instance its breaker's metrics carry the upstream's
    /// name (`upstream="user"`); with several, each instance's address is added
    /// (`upstream="chat@10.0.0.2:8083"`) so each breaker is its own series.
    pub fn new(name: &str, bases: &[String]) -> Self {
        assert!(!bases.is_empty(), "upstream {name} has no instance");
        let instances = bases
            .iter()
            .map(|base| {
                let base = base.trim_end_matches('/').to_owned();
                let label = match bases.len() {
                    1 => name.to_owned(),
                    _ => format!("{name}@{}", authority(&base)),
                };
                Instance {
                    breaker: CircuitBreaker::new("gateway", label, BreakerSettings::default()),
                    base,
                }
            })
            .collect();
        Self {
            name: name.to_owned(),
            instances,
            next: AtomicUsize::new(0),
        }
    }

    /// The next instance in turn whose breaker lets a call through, with its permit; when
    /// every breaker is open, the soonest time to retry.
    fn pick(&self) -> Result<(&Instance, Permit<'_>), Rejected> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut soonest: Option<Rejected> = None;
        for offset in 0..self.instances.len() {
            let instance = &self.instances[(start + offset) % self.instances.len()];
            match instance.breaker.try_call() {
                Ok(permit) => return Ok((instance, permit)),
                Err(rejected) => {
                    if soonest.is_none_or(|s| rejected.retry_after < s.retry_after) {
                        soonest = Some(rejected);
                    }
                }
            }
        }
        Err(soonest.expect("an upstream has at least one instance"))
    }
}

/// `host:port` of a base URL, for labels.
fn authority(base: &str) -> &str {
    base.split_once("://").map_or(base, |(_, rest)| rest)
}

/// The shared HTTP client and retry budget.
pub struct Proxy {
    client: Client<HttpConnector, Body>,
    budget: TpsBudget,
}

/// What a route adds to forwarding.
pub struct Forward<'a> {
    pub target: &'a Target,
    /// Cut from the front of the path.
    pub strip: &'a str,
    /// Names the client span and labels metrics: the route's prefix, never a raw path.
    pub route: &'a str,
    pub timeout: Duration,
    pub identity: Option<&'a Identity>,
    pub client: Option<IpAddr>,
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

impl Proxy {
    pub fn new(retry_percent: f32, retry_min_per_second: u32) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        Self {
            client,
            budget: TpsBudget::new(
                Duration::from_secs(10),
                retry_min_per_second,
                retry_percent / 100.0,
            ),
        }
    }

    pub async fn forward(&self, forward: Forward<'_>, mut request: Request) -> Response {
        let websocket = is_websocket(request.headers());
        let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut request));
        let (parts, body) = request.into_parts();
        let path = match forwarded_path(&forward, &parts.uri) {
            Ok(path) => path,
            Err(problem) => return problem.into_response(),
        };
        let mut headers = upstream_headers(&parts.headers, &forward, websocket, &parts.extensions);
        let method = parts.method.clone();
        let replayable = is_idempotent(&method) && has_no_body(&parts.headers) && !websocket;
        self.budget.deposit();

        let span = tracing::info_span!(
            "HTTP client request",
            otel.name = format!("{} {}", method, forward.route),
            otel.kind = "client",
            http.request.method = telemetry::http::method_label(&method),
            url.template = forward.route,
            gateway.upstream = %forward.target.name,
        );
        let mut body = Some(body);
        let mut attempt = 0u32;
        let started = Instant::now();
        let outcome = loop {
            attempt += 1;
            let (instance, permit) = match forward.target.pick() {
                Ok(picked) => picked,
                Err(rejected) => {
                    self.error(&forward, "open");
                    break Err(Problem::unavailable(format!(
                        "the {} service is failing, so the gateway is not sending it requests for now; retry later",
                        forward.target.name
                    ))
                    .with_retry_after(rejected.retry_after.as_secs().max(1)));
                }
            };
            let uri = match format!("{}{path}", instance.base).parse::<Uri>() {
                Ok(uri) => uri,
                Err(_) => {
                    break Err(Problem::bad_request("the request path cannot be forwarded"));
                }
            };
            // The attempt that answers leaves its instance on the span.
            span.set_attribute("server.address", uri.host().unwrap_or_default().to_owned());
            span.set_attribute("server.port", i64::from(uri.port_u16().unwrap_or(80)));
            span.set_attribute("url.full", uri.to_string());
            if let Some(host) = uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                headers.insert(header::HOST, host);
            }
            let mut upstream = hyper::Request::builder()
                .method(method.clone())
                .uri(uri)
                .body(if replayable {
                    Body::empty()
                } else {
                    body.take().unwrap_or_default()
                })
                .expect("method, URI and headers were valid on the way in");
            *upstream.headers_mut() = headers.clone();
            telemetry::propagation::inject_into_headers(&span, upstream.headers_mut());
            let sent = tokio::time::timeout(forward.timeout, self.client.request(upstream))
                .instrument(span.clone())
                .await;
            let retry = |budget: &TpsBudget| replayable && attempt < 3 && budget.withdraw();
            match sent {
                Ok(Ok(response)) => {
                    let status = response.status();
                    if status.is_server_error() {
                        permit.failure();
                    } else {
                        permit.success();
                    }
                    let transient = matches!(
                        status,
                        StatusCode::BAD_GATEWAY
                            | StatusCode::SERVICE_UNAVAILABLE
                            | StatusCode::GATEWAY_TIMEOUT
                    );
                    if transient && retry(&self.budget) {
                        counter!(RETRIES, "upstream" => forward.target.name.clone()).increment(1);
                        continue;
                    }
                    break Ok(response);
                }
                Ok(Err(_)) => {
                    permit.failure();
                    // A replayable request is safe to send again whatever broke, and the
                    // next attempt goes to the next instance.
                    if retry(&self.budget) {
                        counter!(RETRIES, "upstream" => forward.target.name.clone()).increment(1);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    self.error(&forward, "unreachable");
                    break Err(Problem::new(
                        StatusCode::BAD_GATEWAY,
                        "upstream-unreachable",
                        format!(
                            "the {} service cannot be reached; retry later",
                            forward.target.name
                        ),
                    ));
                }
                Err(_) => {
                    permit.failure();
                    self.error(&forward, "timeout");
                    break Err(Problem::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "upstream-timeout",
                        format!(
                            "the {} service did not answer within {:?}; retry later",
                            forward.target.name, forward.timeout
                        ),
                    ));
                }
            }
        };
        if attempt > 1 {
            span.set_attribute("http.request.resend_count", i64::from(attempt - 1));
        }
        let labels = |status: String| {
            [
                ("upstream", forward.target.name.clone()),
                ("method", telemetry::http::method_label(&method).to_owned()),
                ("status", status),
            ]
        };
        match outcome {
            Ok(mut response) => {
                let status = response.status();
                // Attributes go to the OpenTelemetry span only: recording a field makes the
                // JSON log layer re-serialise all of the span's fields.
                span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
                span.set_attribute(
                    "network.protocol.version",
                    telemetry::http::protocol_version(response.version()),
                );
                if status.is_client_error() || status.is_server_error() {
                    span.set_attribute("error.type", status.as_str().to_owned());
                }
                if status.is_server_error() {
                    span.set_status(Status::error(""));
                }
                histogram!(UPSTREAM_DURATION, "upstream" => forward.target.name.clone())
                    .record(started.elapsed().as_secs_f64());
                counter!(UPSTREAM_REQUESTS, &labels(status.as_u16().to_string())).increment(1);
                if status == StatusCode::SWITCHING_PROTOCOLS
                    && let Some(client_upgrade) = client_upgrade
                {
                    bridge(
                        client_upgrade,
                        hyper::upgrade::on(&mut response),
                        &forward.target.name,
                    );
                } else {
                    strip_hop_by_hop(response.headers_mut());
                }
                response.map(Body::new)
            }
            Err(problem) => {
                span.set_status(Status::error(""));
                span.set_attribute("error.type", problem.status_code().as_str().to_owned());
                counter!(UPSTREAM_REQUESTS, &labels(problem.status.to_string())).increment(1);
                problem.into_response()
            }
        }
    }

    fn error(&self, forward: &Forward<'_>, kind: &'static str) {
        counter!(UPSTREAM_ERRORS, "upstream" => forward.target.name.clone(), "kind" => kind)
            .increment(1);
    }
}

/// Copies bytes both ways between the client's and the upstream's upgraded connections
/// until either side closes.
fn bridge(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade, name: &str) {
    let name = name.to_owned();
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(err) => {
                tracing::warn!(upstream = %name, error = %err, "WebSocket upgrade failed");
                return;
            }
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(upstream = %name, error = %err, "WebSocket closed");
        }
    });
}

/// The path and query the upstream sees: the route's `strip` cut from the front.
fn forwarded_path(forward: &Forward<'_>, uri: &Uri) -> Result<String, Problem> {
    let path = uri.path().strip_prefix(forward.strip).unwrap_or(uri.path());
    let path = if path.is_empty() { "/" } else { path };
    let full = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    full.parse::<axum::http::uri::PathAndQuery>()
        .map(|_| full)
        .map_err(|_| Problem::bad_request("the request path cannot be forwarded"))
}

/// The headers every attempt sends; `Host` is set per attempt, for the instance it goes to.
fn upstream_headers(
    incoming: &HeaderMap,
    forward: &Forward<'_>,
    websocket: bool,
    extensions: &axum::http::Extensions,
) -> HeaderMap {
    let mut headers = incoming.clone();
    strip_hop_by_hop(&mut headers);
    // Identity is the gateway's to state: never a client's.
    headers.remove(USER_ID_HEADER);
    headers.remove(USER_ROLES_HEADER);
    if websocket {
        without_bearer_token(&mut headers);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    } else {
        headers.remove(header::UPGRADE);
    }
    if let Some(identity) = forward.identity {
        if let Ok(id) = HeaderValue::from_str(&identity.user_id) {
            headers.insert(USER_ID_HEADER, id);
        }
        if let Ok(roles) = HeaderValue::from_str(&identity.roles.join(",")) {
            headers.insert(USER_ROLES_HEADER, roles);
        }
    }
    let original_host = incoming
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    headers.remove(header::HOST);
    if let Some(client) = forward.client {
        append(
            &mut headers,
            HeaderName::from_static(FORWARDED_FOR),
            &client.to_string(),
        );
        let node = match client {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("\"[{ip}]\""),
        };
        let mut forwarded = format!("for={node};proto=http");
        if let Some(host) = &original_host {
            forwarded.push_str(&format!(";host=\"{host}\""));
        }
        append(&mut headers, header::FORWARDED, &forwarded);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Some(host) = original_host.and_then(|h| HeaderValue::from_str(&h).ok()) {
        headers.insert("x-forwarded-host", host);
    }
    if let Some(id) = extensions.get::<telemetry::http::RequestId>()
        && let Ok(id) = HeaderValue::from_str(&id.0)
    {
        headers.insert(telemetry::http::REQUEST_ID_HEADER, id);
    }
    headers
}

/// Appends `value` to a comma-separated header, as proxies along a path do.
fn append(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    let joined = match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.is_empty() => format!("{existing}, {value}"),
        _ => value.to_owned(),
    };
    if let Ok(value) = HeaderValue::from_str(&joined) {
        headers.insert(name, value);
    }
}

/// Drops hop-by-hop headers, and any header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    // `TE: trailers` is the one TE value that must pass (gRPC needs it).
    let keep_te = headers
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("trailers"));
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        if name == "te" && keep_te {
            continue;
        }
        headers.remove(name);
    }
}

/// The subprotocol a browser offers, followed by its access token, where it cannot set
/// `Authorization` on a WebSocket: `new WebSocket(url, ["bearer", token])` sends
/// `Sec-WebSocket-Protocol: bearer, TOKEN`. The upstream sees only `bearer`, and selects it.
pub const BEARER_PROTOCOL: &str = "bearer";

/// The access token of a WebSocket handshake's `bearer` subprotocol, if it carries one.
pub fn websocket_bearer(headers: &HeaderMap) -> Option<String> {
    if !is_websocket(headers) {
        return None;
    }
    let protocols = websocket_protocols(headers);
    let at = protocols.iter().position(|p| p == BEARER_PROTOCOL)?;
    protocols.get(at + 1).cloned()
}

fn websocket_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The offered subprotocols without the access token, which is the gateway's to verify
/// and no upstream's to see.
fn without_bearer_token(headers: &mut HeaderMap) {
    let Some(token) = websocket_bearer(headers) else {
        return;
    };
    let kept: Vec<String> = websocket_protocols(headers)
        .into_iter()
        .filter(|p| *p != token)
        .collect();
    headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
    if let Ok(value) = HeaderValue::from_str(&kept.join(", ")) {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
}

fn is_websocket(headers: &HeaderMap) -> bool {
    let has_token = |name: HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, "websocket")
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

fn has_no_body(headers: &HeaderMap) -> bool {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    !headers.contains_key(header::TRANSFER_ENCODING) && length.unwrap_or(0) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut map = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("accept", "application/json"),
        ]);
        strip_hop_by_hop(&mut map);
        let mut left: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        left.sort();
        assert_eq!(left, ["accept", "te"]);
        let mut gzip = headers(&[("te", "gzip")]);
        strip_hop_by_hop(&mut gzip);
        assert!(gzip.is_empty());
    }

    #[test]
    fn forwarding_rewrites_the_path_and_adds_proxy_headers() {
        let target = Target::new("user", &["http://10.0.0.7:8082/".to_owned()]);
        let identity = Identity {
            user_id: "u-1".into(),
            roles: vec!["user".into(), "admin".into()],
        };
        let forward = Forward {
            target: &target,
            strip: "/api",
            route: "/api/users",
            timeout: Duration::from_secs(1),
            identity: Some(&identity),
            client: Some("203.0.113.9".parse().unwrap()),
        };
        let path = forwarded_path(&forward, &"/api/users/42?x=1".parse().unwrap()).unwrap();
        assert_eq!(path, "/users/42?x=1");
        assert_eq!(target.instances[0].base, "http://10.0.0.7:8082");
        let incoming = headers(&[
            ("host", "gateway.example"),
            ("x-user-id", "forged"),
            ("x-user-roles", "admin"),
            ("x-forwarded-for", "198.51.100.1"),
            ("upgrade", "h2c"),
        ]);
        let out = upstream_headers(&incoming, &forward, false, &Default::default());
        assert_eq!(out["x-user-id"], "u-1");
        assert_eq!(out["x-user-roles"], "user,admin");
        assert!(
            out.get("host").is_none(),
            "set per attempt, for its instance"
        );
        assert_eq!(out["x-forwarded-for"], "198.51.100.1, 203.0.113.9");
        assert_eq!(out["x-forwarded-host"], "gateway.example");
        assert_eq!(
            out["forwarded"],
            "for=203.0.113.9;proto=http;host=\"gateway.example\""
        );
        assert!(out.get("upgrade").is_none());

        let anonymous = Forward {
            identity: None,
            ..forward
        };
        let out = upstream_headers(&incoming, &anonymous, false, &Default::default());
        assert!(out.get("x-user-id").is_none() && out.get("x-user-roles").is_none());
    }

    #[test]
    fn instances_take_turns_and_an_open_breaker_is_passed_over() {
        let bases: Vec<String> = ["http://a:1", "http://b:1", "http://c:1"]
            .map(str::to_owned)
            .to_vec();
        let target = Target::new("chat", &bases);
        let picked = || target.pick().map(|(instance, _)| instance.base.clone());
        let turns: Vec<String> = (0..6).map(|_| picked().unwrap()).collect();
        assert_eq!(turns, [&bases[..], &bases[..]].concat());

        while target.instances[1].breaker.try_call().is_ok_and(|permit| {
            permit.failure();
            true
        }) {}
        let turns: Vec<String> = (0..4).map(|_| picked().unwrap()).collect();
        assert!(!turns.contains(&bases[1]), "{turns:?}");
        assert!(
            turns.contains(&bases[0]) && turns.contains(&bases[2]),
            "{turns:?}"
        );

        for instance in [0, 2] {
            while target.instances[instance]
                .breaker
                .try_call()
                .is_ok_and(|permit| {
                    permit.failure();
                    true
                })
            {}
        }
        assert!(target.pick().is_err(), "every breaker is open");
    }

    #[test]
    fn only_bodiless_idempotent_requests_are_replayable() {
        assert!(is_idempotent(&Method::GET) && is_idempotent(&Method::PUT));
        assert!(!is_idempotent(&Method::POST) && !is_idempotent(&Method::PATCH));
        assert!(has_no_body(&headers(&[])));
        assert!(has_no_body(&headers(&[("content-length", "0")])));
        assert!(!has_no_body(&headers(&[("content-length", "3")])));
        assert!(!has_no_body(&headers(&[("transfer-encoding", "chunked")])));
        assert!(is_websocket(&headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket")
        ])));
        assert!(!is_websocket(&headers(&[("upgrade", "websocket")])));
    }

    #[test]
    fn a_handshake_token_in_the_bearer_subprotocol_is_read_and_never_forwarded() {
        let handshake = |protocols: &str| {
            headers(&[
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-protocol", protocols),
            ])
        };
        let offered = handshake("chat.v1, bearer, eyJ.a.b");
        assert_eq!(websocket_bearer(&offered).as_deref(), Some("eyJ.a.b"));
        assert_eq!(websocket_bearer(&handshake("bearer")), None);
        assert_eq!(websocket_bearer(&handshake("chat.v1")), None);
        let plain = headers(&[("sec-websocket-protocol", "bearer, eyJ.a.b")]);
        assert_eq!(websocket_bearer(&plain), None, "only on a handshake");

        let mut forwarded = offered.clone();
        without_bearer_token(&mut forwarded);
        assert_eq!(forwarded["sec-websocket-protocol"], "chat.v1, bearer");
    }
}
