//! The shape of a trace, service by service, from the real processes on each backend: one
//! registration through the gateway must give gateway server → gateway client → auth server
//! → auth's database spans and auth's client → user server → user's database spans and the
//! event's send span (and a slow pool's wait as a span under the statement that waited), each with the attributes and types the OpenTelemetry semantic
//! conventions require, no attribute outside the allowed lists, and no value the user typed.

use std::time::Duration;

use platform_tests::{Process, free_port};
use serde_json::{Value, json};
use sloop_kit::testing::{
    OtlpReceiver, ReceivedSpan, SPAN_KIND_CLIENT, SPAN_KIND_SERVER, TestBackend, fresh_database_url,
};

const EMAIL: &str = "shape.tester@example.com";
const PASSWORD: &str = "plaintext never in a span";
const USER_AGENT: &str = "trace-shape-test/1.0";
const CHAOS_TOKEN: &str = "trace-shape-chaos";
/// OTLP span kinds not exported by the kit's testing module.
const SPAN_KIND_INTERNAL: i32 = 1;
const SPAN_KIND_PRODUCER: i32 = 4;
const WAIT: Duration = Duration::from_secs(15);

type Attributes = &'static [(&'static str, &'static str)];

/// HTTP server spans: required by the conventions (`server.port` and `client.address` are
/// always available here, so required too), then what may appear besides.
const SERVER_REQUIRED: Attributes = &[
    ("http.request.method", "string"),
    ("url.scheme", "string"),
    ("url.path", "string"),
    ("http.route", "string"),
    ("http.response.status_code", "int"),
    ("server.address", "string"),
    ("server.port", "int"),
    ("client.address", "string"),
    ("network.protocol.version", "string"),
];
const SERVER_ALLOWED: Attributes = &[
    ("user_agent.original", "string"),
    ("network.peer.address", "string"),
    ("network.peer.port", "int"),
    ("url.query", "string"),
    ("error.type", "string"),
    ("http.request.method_original", "string"),
];

const CLIENT_REQUIRED: Attributes = &[
    ("http.request.method", "string"),
    ("server.address", "string"),
    ("server.port", "int"),
    ("url.full", "string"),
    ("http.response.status_code", "int"),
];
const CLIENT_ALLOWED: Attributes = &[
    ("url.template", "string"),
    ("network.protocol.version", "string"),
    ("error.type", "string"),
    ("http.request.resend_count", "int"),
    ("gateway.upstream", "string"),
];

const DB_REQUIRED: Attributes = &[
    ("db.system.name", "string"),
    ("db.namespace", "string"),
    ("db.operation.name", "string"),
    ("db.query.summary", "string"),
    ("db.query.text", "string"),
];
const DB_ALLOWED: Attributes = &[
    ("db.collection.name", "string"),
    ("db.response.status_code", "string"),
    ("error.type", "string"),
    ("server.address", "string"),
    ("server.port", "int"),
];
const ACQUIRE_REQUIRED: Attributes = &[
    ("db.system.name", "string"),
    ("db.client.connection.pool.name", "string"),
];

const PRODUCER_REQUIRED: Attributes = &[
    ("messaging.system", "string"),
    ("messaging.operation.name", "string"),
    ("messaging.operation.type", "string"),
    ("messaging.destination.name", "string"),
    ("messaging.message.id", "string"),
];
const PRODUCER_ALLOWED: Attributes = &[("cloudevents.event_type", "string")];

struct Services {
    user: Process,
    auth: Process,
    gateway: Process,
}

impl Services {
    /// user, auth and the gateway as their own processes, each with its own database on
    /// `backend`, events on each process's in-memory bus, spans to `otlp`.
    async fn start(backend: TestBackend, otlp: &str) -> Self {
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_platform-service"));
        let (user_port, auth_port, gateway_port) = (free_port(), free_port(), free_port());
        let telemetry = |p: Process| {
            p.env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
                .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
                .env("OTEL_RESOURCE_ATTRIBUTES", "team=platform")
                .env("DEPLOYMENT_ENVIRONMENT", "trace-test")
                .env("RUST_LOG", "info")
        };
        let mut user = telemetry(Process::new(bin, "user", user_port))
            .arg("--chaos")
            .env("CHAOS_TOKEN", CHAOS_TOKEN)
            .env("DATABASE_URL", fresh_database_url(backend).await);
        let mut auth = telemetry(Process::new(bin, "auth", auth_port))
            .env("DATABASE_URL", fresh_database_url(backend).await)
            .env("UPSTREAMS", format!("user=http://127.0.0.1:{user_port}"))
            .env("AUTH_HASH_MEMORY_KIB", "1024")
            .env("AUTH_HASH_ITERATIONS", "1");
        let mut gateway = telemetry(Process::new(bin, "gateway", gateway_port)).env(
            "UPSTREAMS",
            format!("user=http://127.0.0.1:{user_port},auth=http://127.0.0.1:{auth_port}"),
        );
        user.start().await;
        auth.start().await;
        gateway.start().await;
        Self {
            user,
            auth,
            gateway,
        }
    }

    async fn stop(mut self) {
        self.gateway.stop().await;
        self.auth.stop().await;
        self.user.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn traces_have_the_conventional_shape_on_sqlite() {
    trace_shape(TestBackend::Sqlite, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn traces_have_the_conventional_shape_on_postgres() {
    trace_shape(TestBackend::Postgres, "postgresql").await;
}

async fn trace_shape(backend: TestBackend, db_system: &str) {
    let receiver = OtlpReceiver::start().await;
    let services = Services::start(backend, &receiver.endpoint).await;
    let http = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .build()
        .unwrap();
    let api = |path: &str| services.gateway.url(path);

    let registered = http
        .post(api("/api/auth/register"))
        .json(&json!({ "email": EMAIL, "password": PASSWORD, "name": "Shape Tester" }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let account: Value = registered.json().await.unwrap();
    let user_id = account["user_id"].as_str().unwrap().to_owned();

    let mut problems = Vec::new();
    let gateway = span(&receiver, "the gateway's server span", |s| {
        s.service == "gateway"
            && s.kind == SPAN_KIND_SERVER
            && s.text("url.path") == "/api/auth/register"
    })
    .await;
    assert_eq!(gateway.parent_span_id, "", "a fresh request starts a trace");
    problems.extend(server_problems(
        &gateway,
        "gateway",
        "/api/auth/{*rest}",
        201,
    ));

    let gateway_client = child(&receiver, &gateway, SPAN_KIND_CLIENT, "gateway", |_| true).await;
    problems.extend(gateway_client.convention_problems(CLIENT_REQUIRED, CLIENT_ALLOWED));
    assert_eq!(gateway_client.attributes["http.response.status_code"], 201);

    let auth = child(&receiver, &gateway_client, SPAN_KIND_SERVER, "auth", |_| {
        true
    })
    .await;
    problems.extend(server_problems(&auth, "auth", "/auth/register", 201));
    let auth_db = child(&receiver, &auth, SPAN_KIND_CLIENT, "auth", |s| {
        s.attributes.contains_key("db.system.name")
    })
    .await;
    problems.extend(db_problems(&auth_db, db_system));

    let auth_client = child(&receiver, &auth, SPAN_KIND_CLIENT, "auth", |s| {
        s.attributes.contains_key("url.full")
    })
    .await;
    problems.extend(auth_client.convention_problems(CLIENT_REQUIRED, CLIENT_ALLOWED));
    assert_eq!(auth_client.name, "PUT /users/{id}");

    let user = child(&receiver, &auth_client, SPAN_KIND_SERVER, "user", |_| true).await;
    problems.extend(server_problems(&user, "user", "/users/{id}", 201));
    let insert = child(&receiver, &user, SPAN_KIND_CLIENT, "user", |s| {
        s.name == "INSERT users"
    })
    .await;
    problems.extend(db_problems(&insert, db_system));
    assert_eq!(insert.attributes["db.collection.name"], "users");
    assert_eq!(insert.attributes["db.operation.name"], "INSERT");
    for statement in ["BEGIN", "INSERT kit_outbox", "COMMIT"] {
        let found = child(&receiver, &user, SPAN_KIND_CLIENT, "user", |s| {
            s.name == statement
        })
        .await;
        problems.extend(db_problems(&found, db_system));
    }
    let send = child(&receiver, &user, SPAN_KIND_PRODUCER, "user", |_| true).await;
    assert_eq!(send.name, "send sloop.user");
    problems.extend(send.convention_problems(PRODUCER_REQUIRED, PRODUCER_ALLOWED));

    // A read: the user service's SELECT under its server span.
    let token = sign_in(&http, &api("/api/auth/login")).await;
    let read = http
        .get(api(&format!("/api/users/{user_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let read_server = span(&receiver, "the user service's GET span", |s| {
        s.service == "user" && s.kind == SPAN_KIND_SERVER && s.name == "GET /users/{id}"
    })
    .await;
    problems.extend(server_problems(&read_server, "user", "/users/{id}", 200));
    let select = child(&receiver, &read_server, SPAN_KIND_CLIENT, "user", |s| {
        s.name == "SELECT users"
    })
    .await;
    problems.extend(db_problems(&select, db_system));
    if db_system == "postgresql" {
        assert_eq!(select.attributes["server.address"], "127.0.0.1");
    }

    // A slow pool (a chaos delay on every connection taken): the wait is a span of its own
    // under the statement that waited. (A wait under 1 ms gets none, but a shared machine
    // can make any acquire slower than that, so the test does not count them.)
    let chaos = services.user.url("/chaos/faults");
    http.post(&chaos)
        .bearer_auth(CHAOS_TOKEN)
        .json(&json!({ "target": "database", "action": { "delay": { "fixed": "40ms" } } }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .expect("the database delay is applied");
    let slow_read = http
        .get(api(&format!("/api/users/{user_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(slow_read.status(), 200);
    http.delete(&chaos)
        .bearer_auth(CHAOS_TOKEN)
        .send()
        .await
        .unwrap();
    let slow_server = span(&receiver, "the slow read's span", |s| {
        s.service == "user" && s.name == "GET /users/{id}" && s.span_id != read_server.span_id
    })
    .await;
    let slow_select = child(&receiver, &slow_server, SPAN_KIND_CLIENT, "user", |s| {
        s.name == "SELECT users"
    })
    .await;
    let wait = child(&receiver, &slow_select, SPAN_KIND_INTERNAL, "user", |_| {
        true
    })
    .await;
    assert_eq!(wait.name, "acquire connection");
    problems.extend(wait.convention_problems(ACQUIRE_REQUIRED, &[]));
    let waited = Duration::from_nanos(wait.end_unix_nano - wait.start_unix_nano);
    assert!(
        waited >= Duration::from_millis(40),
        "the wait span covers the wait: {waited:?}"
    );

    for span in receiver.spans() {
        for (key, value) in &span.attributes {
            let text = format!("{value:?}");
            if text.contains(EMAIL) || text.contains(PASSWORD) || text.contains(&token) {
                problems.push(format!(
                    "`{}`: {key} carries what the user sent: {text}",
                    span.name
                ));
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    services.stop().await;
}

/// A server span's conventions, its route and status, and its resource.
fn server_problems(span: &ReceivedSpan, service: &str, route: &str, status: i64) -> Vec<String> {
    let mut problems = span.convention_problems(SERVER_REQUIRED, SERVER_ALLOWED);
    if span.attributes.get("http.route").and_then(|r| r.as_str()) != Some(route) {
        problems.push(format!("`{}`: http.route is not {route}", span.name));
    }
    if span
        .attributes
        .get("http.response.status_code")
        .and_then(|v| v.as_i64())
        != Some(status)
    {
        problems.push(format!("`{}`: status is not {status}", span.name));
    }
    let agent = span.attributes.get("user_agent.original");
    if service == "gateway" && agent.and_then(|a| a.as_str()) != Some(USER_AGENT) {
        problems.push(format!(
            "`{}`: the caller's user agent is missing",
            span.name
        ));
    }
    problems.extend(resource_problems(span, service));
    problems
}

fn resource_problems(span: &ReceivedSpan, service: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let resource = &span.resource;
    for (key, wanted) in [
        ("service.name", Some(service)),
        ("service.version", Some(env!("CARGO_PKG_VERSION"))),
        ("deployment.environment.name", Some("trace-test")),
        ("team", Some("platform")),
        ("service.instance.id", None),
    ] {
        match (resource.get(key).and_then(|v| v.as_str()), wanted) {
            (None, _) => problems.push(format!("{service}'s resource has no {key}")),
            (Some(found), Some(wanted)) if found != wanted => problems.push(format!(
                "{service}'s resource has {key}={found}, not {wanted}"
            )),
            _ => {}
        }
    }
    problems
}

fn db_problems(span: &ReceivedSpan, system: &str) -> Vec<String> {
    let mut required = DB_REQUIRED.to_vec();
    if system == "postgresql" {
        required.extend([("server.address", "string"), ("server.port", "int")]);
    }
    let mut problems = span.convention_problems(&required, DB_ALLOWED);
    if span
        .attributes
        .get("db.system.name")
        .and_then(|v| v.as_str())
        != Some(system)
    {
        problems.push(format!("`{}`: db.system.name is not {system}", span.name));
    }
    if span.name != span.text("db.query.summary") {
        problems.push(format!("`{}`: not named by its query summary", span.name));
    }
    problems
}

async fn span(
    receiver: &OtlpReceiver,
    what: &str,
    wanted: impl Fn(&ReceivedSpan) -> bool,
) -> ReceivedSpan {
    receiver
        .wait_for(WAIT, wanted)
        .await
        .unwrap_or_else(|| panic!("{what} never arrived; received: {:#?}", names(receiver)))
}

/// The child of `parent` of `kind` sent by `service` that also matches `wanted`.
async fn child(
    receiver: &OtlpReceiver,
    parent: &ReceivedSpan,
    kind: i32,
    service: &str,
    wanted: impl Fn(&ReceivedSpan) -> bool,
) -> ReceivedSpan {
    let what = format!("a kind-{kind} child from {service} of `{}`", parent.name);
    span(receiver, &what, |s| {
        s.is_child_of(parent) && s.kind == kind && s.service == service && wanted(s)
    })
    .await
}

fn names(receiver: &OtlpReceiver) -> Vec<String> {
    receiver
        .spans()
        .iter()
        .map(|s| {
            format!(
                "{} {} (kind {}) {} <- {}",
                s.service, s.name, s.kind, s.span_id, s.parent_span_id
            )
        })
        .collect()
}

async fn sign_in(http: &reqwest::Client, url: &str) -> String {
    let login: Value = http
        .post(url)
        .json(&json!({ "email": EMAIL, "password": PASSWORD }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {login}"))
        .to_owned()
}
