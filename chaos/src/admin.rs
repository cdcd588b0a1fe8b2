//! The admin API a service serves while chaos is on: `/chaos/faults` to list, apply, delete
//! and clear its faults, behind a bearer token.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use utoipa::{OpenApi, ToSchema};

use crate::ChaosError;
use crate::faults::{Fault, Faults};
use crate::rule::{Abort, Action, Delay, Matcher, Rule, Target};

#[derive(Clone)]
struct Admin {
    faults: Faults,
    token: String,
}

/// `/chaos/faults` for `faults`, answering only requests that carry `Authorization:
/// Bearer <token>`.
/// The document itself (`/chaos/openapi.json`) needs no token.
pub fn router(faults: Faults, token: String) -> Router {
    Router::new()
        .route("/chaos/faults", get(list).post(apply).delete(clear))
        .route("/chaos/faults/{id}", delete(remove))
        .with_state(Admin { faults, token })
        .route(
            "/chaos/openapi.json",
            get(|| async { Json(AdminApi::openapi()) }),
        )
}

/// The admin API's contract.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "sloop chaos admin API",
        description = "Served by a service started with --chaos and CHAOS_TOKEN: list, apply, delete and clear its fault rules. Every operation needs `Authorization: Bearer <CHAOS_TOKEN>`."
    ),
    paths(list, apply, clear, remove),
    components(schemas(Rule, Target, Matcher, Action, Delay, Abort, Fault, Listed, Cleared, AdminProblem)),
    modifiers(&BearerToken)
)]
pub struct AdminApi;

struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
        };
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "chaos_token",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        openapi.security = Some(vec![SecurityRequirement::new(
            "chaos_token",
            Vec::<String>::new(),
        )]);
    }
}

/// `GET /chaos/faults`.
#[derive(Serialize, ToSchema)]
struct Listed {
    service: String,
    /// Most rules active at once.
    cap: usize,
    faults: Vec<Fault>,
}

/// `DELETE /chaos/faults`.
#[derive(Serialize, ToSchema)]
struct Cleared {
    cleared: usize,
}

/// An RFC 9457 problem document.
#[derive(Serialize, ToSchema)]
#[schema(as = Problem)]
struct AdminProblem {
    #[serde(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: String,
}

#[utoipa::path(
    get, path = "/chaos/faults",
    responses(
        (status = 200, description = "The active faults", body = Listed),
        (status = 401, description = "No or wrong token", body = AdminProblem, content_type = "application/problem+json"),
    )
)]
async fn list(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if !admin.authorized(&headers) {
        return denied();
    }
    Json(json!({
        "service": admin.faults.service(),
        "cap": admin.faults.cap(),
        "faults": admin.faults.list(),
    }))
    .into_response()
}

#[utoipa::path(
    post, path = "/chaos/faults", request_body = Rule,
    responses(
        (status = 201, description = "Applied", body = Fault),
        (status = 401, description = "No or wrong token", body = AdminProblem, content_type = "application/problem+json"),
        (status = 409, description = "As many faults as allowed are active", body = AdminProblem, content_type = "application/problem+json"),
        (status = 422, description = "Not a valid rule; the detail says why", body = AdminProblem, content_type = "application/problem+json"),
    )
)]
async fn apply(
    State(admin): State<Admin>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !admin.authorized(&headers) {
        return denied();
    }
    let rule: Rule = match serde_json::from_slice(&body) {
        Ok(rule) => rule,
        Err(err) => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-rule",
                &format!("the body is not a fault rule: {err}"),
            );
        }
    };
    match admin.faults.apply(rule) {
        Ok(fault) => (StatusCode::CREATED, Json(fault)).into_response(),
        Err(err @ ChaosError::CapReached { .. }) => {
            problem(StatusCode::CONFLICT, "cap-reached", &err.to_string())
        }
        Err(err) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-rule",
            &err.to_string(),
        ),
    }
}

#[utoipa::path(
    delete, path = "/chaos/faults",
    responses(
        (status = 200, description = "Every fault removed", body = Cleared),
        (status = 401, description = "No or wrong token", body = AdminProblem, content_type = "application/problem+json"),
    )
)]
async fn clear(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if !admin.authorized(&headers) {
        return denied();
    }
    Json(json!({ "cleared": admin.faults.clear() })).into_response()
}

#[utoipa::path(
    delete, path = "/chaos/faults/{id}",
    params(("id" = String, Path, description = "The fault's id, as applying it answered")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No or wrong token", body = AdminProblem, content_type = "application/problem+json"),
        (status = 404, description = "No such active fault (it may have expired)", body = AdminProblem, content_type = "application/problem+json"),
    )
)]
async fn remove(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !admin.authorized(&headers) {
        return denied();
    }
    if admin.faults.delete(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        problem(
            StatusCode::NOT_FOUND,
            "no-such-fault",
            &format!("no active fault `{id}`; it may have expired (GET /chaos/faults lists them)"),
        )
    }
}

impl Admin {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|token| same(token.as_bytes(), self.token.as_bytes()))
    }
}

fn denied() -> Response {
    let mut denied = problem(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "send the service's chaos token (CHAOS_TOKEN) as `Authorization: Bearer <token>`",
    );
    denied.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer realm=\"chaos\""),
    );
    denied
}

/// Compares in time that depends only on the lengths, so the token cannot be guessed a
/// byte at a time.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn problem(status: StatusCode, kind: &str, detail: &str) -> Response {
    let body = json!({
        "type": format!("urn:sloop:problem:{kind}"),
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::Request;
    use tower::ServiceExt;

    const TOKEN: &str = "s3cret";

    async fn call(
        app: &Router,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    async fn apply(app: &Router, rule: &str) -> (StatusCode, serde_json::Value) {
        call(app, "POST", "/chaos/faults", Some(TOKEN), rule).await
    }

    #[tokio::test]
    async fn without_the_token_nothing_is_shown_or_changed() {
        let faults = Faults::new("user", 4);
        let app = router(faults.clone(), TOKEN.to_owned());
        for token in [None, Some("wrong"), Some("s3cre")] {
            let (status, body) = call(
                &app,
                "POST",
                "/chaos/faults",
                token,
                r#"{"action":"reset"}"#,
            )
            .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
            assert_eq!(
                call(&app, "GET", "/chaos/faults", token, "").await.0,
                StatusCode::UNAUTHORIZED
            );
        }
        assert!(faults.list().is_empty());
    }

    #[tokio::test]
    async fn apply_list_delete_and_clear() {
        let faults = Faults::new("user", 4);
        let app = router(faults, TOKEN.to_owned());
        let (status, applied) = apply(
            &app,
            r#"{"match":{"route":"/users/{id}"},"action":{"delay":{"fixed":"100ms"}},"ttl":"1m"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{applied}");
        let id = applied["id"].as_str().unwrap().to_owned();
        apply(&app, r#"{"action":"reset"}"#).await;
        let (_, listed) = call(&app, "GET", "/chaos/faults", Some(TOKEN), "").await;
        assert_eq!(listed["faults"].as_array().unwrap().len(), 2, "{listed}");
        assert_eq!(listed["faults"][0]["rule"]["ttl"], "1m");
        let path = format!("/chaos/faults/{id}");
        let delete = || call(&app, "DELETE", &path, Some(TOKEN), "");
        assert_eq!(delete().await.0, StatusCode::NO_CONTENT);
        assert_eq!(delete().await.0, StatusCode::NOT_FOUND, "deleted already");
        let (status, cleared) = call(&app, "DELETE", "/chaos/faults", Some(TOKEN), "").await;
        assert_eq!(
            (status, cleared["cleared"].as_u64()),
            (StatusCode::OK, Some(1))
        );
    }

    #[tokio::test]
    async fn bad_rules_and_the_cap_are_4xx_with_a_reason() {
        let app = router(Faults::new("user", 1), TOKEN.to_owned());
        let (status, body) = apply(&app, "{not json").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let (status, body) = apply(&app, r#"{"action":{"abort":{"status":200}}}"#).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            body["detail"].as_str().unwrap().contains("400–599"),
            "{body}"
        );
        assert_eq!(
            apply(&app, r#"{"action":"reset"}"#).await.0,
            StatusCode::CREATED
        );
        let (status, body) = apply(&app, r#"{"action":"reset"}"#).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
    }

    #[tokio::test]
    async fn the_contract_describes_every_operation_without_a_token() {
        let app = router(Faults::new("user", 4), TOKEN.to_owned());
        let (status, doc) = call(&app, "GET", "/chaos/openapi.json", None, "").await;
        assert_eq!(status, StatusCode::OK, "{doc}");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
        let paths = &doc["paths"];
        for (path, method) in [
            ("/chaos/faults", "get"),
            ("/chaos/faults", "post"),
            ("/chaos/faults", "delete"),
            ("/chaos/faults/{id}", "delete"),
        ] {
            assert!(
                paths[path][method].is_object(),
                "{method} {path} missing: {doc}"
            );
            assert!(paths[path][method]["responses"]["401"].is_object());
        }
        for schema in ["Rule", "Target", "Fault", "Problem"] {
            assert!(
                doc["components"]["schemas"][schema].is_object(),
                "{schema}: {doc}"
            );
        }
        assert!(doc["components"]["securitySchemes"]["chaos_token"].is_object());
    }
}
