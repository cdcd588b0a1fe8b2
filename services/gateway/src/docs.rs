//! One OpenAPI document for the whole API as clients see it through the gateway: each
//! upstream's own document, its paths moved under the route's prefix (`/users/{id}` becomes
//! `/api/users/{id}`), the components merged, and the gateway's own answers (401, 403, 429,
//! 502, 504) added to every operation behind it.

use std::time::Duration;

use axum::extract::State;
use serde_json::{Map, Value, json};
use sloop_kit::Json;

use crate::Gateway;

/// Statuses the gateway itself may answer on a forwarded operation.
const GATEWAY_ANSWERS: [(&str, &str); 5] = [
    (
        "401",
        "No valid access token (or none, where one is needed)",
    ),
    ("403", "The caller lacks a role the route requires"),
    (
        "429",
        "Too many requests from this client; see Retry-After and RateLimit",
    ),
    ("502", "The service behind this route cannot be reached"),
    (
        "504",
        "The service behind this route did not answer in time",
    ),
];

/// The upstream's own document, from the first of its instances that serves one.
async fn fetch_document(client: &reqwest::Client, instances: &[String]) -> Option<Value> {
    for base in instances {
        let response = client.get(format!("{base}/openapi.json")).send().await;
        if let Ok(response) = response
            && response.status().is_success()
            && let Ok(doc) = response.json::<Value>().await
        {
            return Some(doc);
        }
    }
    None
}

pub async fn aggregated(State(gateway): State<Gateway>) -> Json<Value> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("a client with a time-out builds");
    let config = &gateway.0.config;
    let mut paths = Map::new();
    let mut schemas = Map::new();
    let mut responses = Map::new();
    let mut missing = Vec::new();
    let mut fetched: std::collections::HashMap<&str, Option<Value>> = Default::default();
    for route in &config.routes {
        if !fetched.contains_key(route.upstream.as_str()) {
            let doc = fetch_document(&client, &config.upstreams[&route.upstream]).await;
            fetched.insert(&route.upstream, doc);
        }
        let Some(doc) = &fetched[route.upstream.as_str()] else {
            missing.push(route.upstream.clone());
            continue;
        };
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            let public = format!("{}{path}", route.strip);
            if public == route.prefix || public.starts_with(&format!("{}/", route.prefix)) {
                let item = with_security(with_gateway_answers(item.clone()), route, &public);
                paths.insert(public, item);
            }
        }
        for (into, section) in [(&mut schemas, "schemas"), (&mut responses, "responses")] {
            for (name, value) in doc["components"][section].as_object().into_iter().flatten() {
                into.entry(name.clone()).or_insert_with(|| value.clone());
            }
        }
    }
    missing.sort();
    missing.dedup();
    Json(json!({
        "openapi": "3.1.0",
        "info": {
            "title": "sloop API (through the gateway)",
            "description": "Every service's API as the gateway exposes it. Send `Authorization: Bearer TOKEN` from /api/auth/login.",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": responses,
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
        },
        "x-sloop-unavailable-upstreams": missing,
    }))
}

/// Which operations need a token: all on a non-public route, and those a role rule covers.
fn with_security(mut item: Value, route: &crate::config::Route, path: &str) -> Value {
    if let Some(operations) = item.as_object_mut() {
        for (method, operation) in operations.iter_mut() {
            let ruled = route.rules.iter().any(|r| r.matches(method, path));
            let needs_token = !route.public || ruled;
            if let Some(operation) = operation.as_object_mut() {
                let security = if needs_token {
                    json!([{ "bearer": [] }])
                } else {
                    json!([])
                };
                // A public operation still answers 401 to a bad token someone sends anyway.
                operation.insert("security".to_owned(), security);
            }
        }
    }
    item
}

fn with_gateway_answers(mut item: Value) -> Value {
    if let Some(operations) = item.as_object_mut() {
        for operation in operations.values_mut() {
            let Some(answers) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            for (status, description) in GATEWAY_ANSWERS {
                answers.entry(status).or_insert_with(|| {
                    json!({
                        "description": description,
                        "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } }
                    })
                });
            }
        }
    }
    item
}
