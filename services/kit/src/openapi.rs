//! What every service's OpenAPI document shares: the problem-document schema and the error
//! responses the kit's own layers produce (bad JSON, too-large bodies, time-outs, ...), added
//! to every operation they can happen on, so the document lists every status a client can
//! really get. Handlers document only what is theirs (404, 409, ...).

use axum::Router;
use axum::routing::get;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, Content, OpenApi, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};

use crate::problem::{Json, PROBLEM_JSON, Problem};

/// A kit-produced error response: status, component name, description.
struct Standard {
    status: &'static str,
    name: &'static str,
    description: &'static str,
}

/// What the JSON extractor rejects, on every operation with a body.
const BODY_ERRORS: [Standard; 4] = [
    Standard {
        status: "400",
        name: "BadRequest",
        description: "The request is malformed: not JSON, or a bad path or query parameter",
    },
    Standard {
        status: "413",
        name: "PayloadTooLarge",
        description: "The body is larger than the service accepts",
    },
    Standard {
        status: "415",
        name: "UnsupportedMediaType",
        description: "The body is not sent as application/json",
    },
    Standard {
        status: "422",
        name: "UnprocessableEntity",
        description: "The body is JSON but its fields are missing, of the wrong type or invalid",
    },
];

/// What any operation may answer: a fault of ours, or a request that ran out of time.
const ANY_ERRORS: [Standard; 2] = [
    Standard {
        status: "500",
        name: "InternalError",
        description: "The service failed; report the x-request-id header if it persists",
    },
    Standard {
        status: "503",
        name: "Unavailable",
        description: "The service or one it depends on is unavailable or timed out; retry later",
    },
];

/// The bearer-token security scheme the gateway checks, for services that declare it.
pub const BEARER: &str = "bearer";

/// Completes a service's generated document: shared schema and responses, the kit's error
/// statuses on each operation, problem bodies as `application/problem+json`.
pub fn complete(mut doc: OpenApi) -> OpenApi {
    let components = doc.components.get_or_insert_with(Components::new);
    let mut schemas = Vec::new();
    <Problem as ToSchema>::schemas(&mut schemas);
    components.schemas.extend(schemas);
    components
        .schemas
        .insert(Problem::name().into_owned(), Problem::schema());
    for standard in BODY_ERRORS.iter().chain(&ANY_ERRORS) {
        components
            .responses
            .entry(standard.name.to_owned())
            .or_insert_with(|| problem_response(standard.description).into());
    }
    if !components.security_schemes.contains_key(BEARER) {
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
    for item in doc.paths.paths.values_mut() {
        let path_parameters = item.parameters.as_ref().is_some_and(|p| !p.is_empty());
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
            &mut item.query,
        ];
        for operation in operations
            .into_iter()
            .flatten()
            .chain(item.additional_operations.values_mut())
        {
            complete_operation(operation, path_parameters);
        }
    }
    doc
}

fn complete_operation(operation: &mut Operation, path_parameters: bool) {
    let has_body = operation.request_body.is_some();
    let has_parameters =
        path_parameters || operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let responses = &mut operation.responses.responses;
    for standard in &BODY_ERRORS {
        let applies = has_body || (standard.status == "400" && has_parameters);
        if applies {
            responses
                .entry(standard.status.to_owned())
                .or_insert_with(|| Ref::from_response_name(standard.name).into());
        }
    }
    for standard in &ANY_ERRORS {
        responses
            .entry(standard.status.to_owned())
            .or_insert_with(|| Ref::from_response_name(standard.name).into());
    }
    for response in responses.values_mut() {
        if let RefOr::T(response) = response {
            serve_problems_as_problem_json(response);
        }
    }
}

/// A handler writes `body = Problem`; what it sends is `application/problem+json`.
fn serve_problems_as_problem_json(response: &mut Response) {
    let Some(content) = response.content.get("application/json") else {
        return;
    };
    let is_problem = matches!(
        content,
        RefOr::T(content) if matches!(
            &content.schema,
            Some(RefOr::Ref(r)) if r.ref_location.ends_with("/schemas/Problem")
        )
    );
    if is_problem && let Some(content) = response.content.shift_remove("application/json") {
        response.content.insert(PROBLEM_JSON.to_owned(), content);
    }
}

fn problem_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            Content::new(Some(Ref::from_schema_name("Problem"))),
        )
        .build()
}

/// `GET /openapi.json` serving `doc`.
pub fn router(doc: OpenApi) -> Router {
    let doc = std::sync::Arc::new(doc);
    Router::new().route(
        "/openapi.json",
        get(move || {
            let doc = doc.clone();
            async move { Json(doc) }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[derive(serde::Deserialize, utoipa::ToSchema)]
    #[allow(dead_code)]
    struct Thing {
        name: String,
    }

    /// Makes a thing.
    #[utoipa::path(post, path = "/things", request_body = Thing, responses(
        (status = 201, description = "Made", body = Thing),
        (status = 409, description = "Exists", body = Problem),
    ))]
    #[allow(dead_code)]
    fn make() {}

    /// Reads a thing.
    #[utoipa::path(get, path = "/things/{id}", params(("id" = String, Path)), responses(
        (status = 200, description = "The thing", body = Thing),
    ))]
    #[allow(dead_code)]
    fn read() {}

    #[derive(utoipa::OpenApi)]
    #[openapi(paths(make, read))]
    struct Doc;

    #[test]
    fn every_operation_lists_the_kit_errors_as_problem_json() {
        let doc = serde_json::to_value(complete(<Doc as utoipa::OpenApi>::openapi())).unwrap();
        let post = &doc["paths"]["/things"]["post"]["responses"];
        for status in ["400", "413", "415", "422", "500", "503"] {
            assert!(post[status].is_object(), "POST lacks {status}: {post}");
        }
        assert!(
            post["409"]["content"][PROBLEM_JSON].is_object(),
            "handler problems become problem+json: {post}"
        );
        assert_eq!(post["409"]["content"].get("application/json"), None);
        let get = &doc["paths"]["/things/{id}"]["get"]["responses"];
        assert!(get["400"].is_object(), "a path parameter can be malformed");
        assert_eq!(get["413"], Value::Null, "no body, no 413");
        let bad_request = &doc["components"]["responses"]["BadRequest"];
        assert_eq!(
            bad_request["content"][PROBLEM_JSON]["schema"]["$ref"],
            "#/components/schemas/Problem"
        );
        assert_eq!(
            doc["components"]["schemas"]["Problem"]["properties"]["type"]["type"],
            "string"
        );
    }
}
