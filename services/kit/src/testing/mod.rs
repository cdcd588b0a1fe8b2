//! Integration-test helpers every service uses as they are: a fresh database per test
//! (SQLite file or PostgreSQL database), the service started through the same chassis as
//! production on port 0, typed requests, an in-memory bus to assert published events, and a
//! real Kafka-protocol broker.

mod broker;
mod client;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use broker::Broker;
pub use client::{TestRequest, TestResponse};
pub use telemetry::testing::{OtlpReceiver, ReceivedSpan, SPAN_KIND_CLIENT, SPAN_KIND_SERVER};

use crate::Database;
use crate::bus::{EventBus, MemoryBus};
use crate::retention::Retention;
use crate::server::Limits;
use crate::service::{Context, Running, Service, Settings};

/// The variable `scripts/test.sh` sets to an admin URL of the PostgreSQL it started.
pub const POSTGRES_URL_VAR: &str = "SLOOP_TEST_POSTGRES_URL";

/// Which backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    Postgres,
}

/// Runs each scenario once per backend, as `sqlite::<name>` and `postgres::<name>`. Each
/// scenario is an `async fn(TestBackend)` in the calling module.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name($crate::testing::TestBackend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name($crate::testing::TestBackend::Postgres).await })*
        }
    };
}

/// A database URL that no other test uses. SQLite files live in a temporary directory;
/// PostgreSQL gets a new database on the server named by `SLOOP_TEST_POSTGRES_URL`.
pub async fn fresh_database_url(backend: TestBackend) -> String {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    match backend {
        TestBackend::Sqlite => {
            let dir: PathBuf = std::env::temp_dir().join("sloop-tests");
            std::fs::create_dir_all(&dir).expect("create the temporary test directory");
            format!("sqlite://{}/{unique}.db", dir.display())
        }
        TestBackend::Postgres => {
            let admin = std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
                panic!(
                    "{POSTGRES_URL_VAR} is not set, so there is no PostgreSQL to test against. \
                     Run ./scripts/test.sh, which installs PostgreSQL (apt-get install \
                     postgresql) and starts it on a free loopback port."
                )
            });
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&admin)
                .await
                .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin}: {e}"));
            let name = format!("test_{unique}");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&pool)
                .await
                .expect("create a test database");
            pool.close().await;
            let (base, _) = admin.rsplit_once('/').expect("admin URL ends in /DATABASE");
            format!("{base}/{name}")
        }
    }
}

/// Asserts that Prometheus' `promtool check metrics` accepts a `/metrics` body (names,
/// help text, types); fails saying how to install promtool when it is missing.
pub fn assert_promtool_accepts(body: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `{promtool}` ({e}); install it with `apt-get install prometheus` or run ./scripts/test.sh")
        });
    check
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(body.as_bytes())
        .expect("write to promtool");
    let out = check.wait_with_output().expect("promtool's result");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How to start a service for a test.
pub struct TestAppBuilder {
    service: Service,
    backend: TestBackend,
    bus: Option<EventBus>,
    database_url: Option<String>,
    listen: SocketAddr,
    upstreams: BTreeMap<String, String>,
    limits: Limits,
    chaos: chaos::Switch,
}

impl TestAppBuilder {
    pub fn backend(mut self, backend: TestBackend) -> Self {
        self.backend = backend;
        self
    }

    /// Shares a bus with other services of the test (default: a fresh in-memory bus).
    pub fn bus(mut self, bus: EventBus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Reuses a database (e.g. to restart a service on the same data).
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }

    /// Points upstream `name` at `url` (another test service, or a stopped one).
    pub fn upstream(mut self, name: &str, url: impl Into<String>) -> Self {
        self.upstreams.insert(name.to_owned(), url.into());
        self
    }

    /// Listens on `addr` instead of a random port (e.g. to restart a service where its
    /// callers expect it).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Turns chaos on, with the admin API behind `token`.
    pub fn chaos(mut self, token: &str) -> Self {
        self.chaos = chaos::Switch {
            enabled: true,
            token: Some(token.to_owned()),
            cap: chaos::DEFAULT_CAP,
            ..chaos::Switch::default()
        };
        self
    }

    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.limits.body_bytes = bytes;
        self
    }

    pub async fn spawn(self) -> TestApp {
        let database_url = match self.database_url {
            Some(url) => url,
            None => fresh_database_url(self.backend).await,
        };
        let bus = self
            .bus
            .unwrap_or_else(|| EventBus::Memory(MemoryBus::new()));
        let settings = Settings {
            listen: self.listen,
            database_url: Some(database_url.clone()),
            db_max_connections: 5,
            bus: bus.clone(),
            upstream_urls: self.upstreams,
            limits: self.limits,
            shutdown_timeout: Duration::from_secs(5),
            chaos: self.chaos,
            retention: Retention::default(),
        };
        let running = self
            .service
            .start(settings)
            .await
            .unwrap_or_else(|e| panic!("the service did not start: {e}"));
        TestApp {
            addr: running.addr(),
            database_url,
            bus,
            client: reqwest::Client::new(),
            running: Some(running),
        }
    }
}

/// A service running in this process on a random port.
pub struct TestApp {
    pub addr: SocketAddr,
    /// Its database, to restart it on the same data or look inside.
    pub database_url: String,
    pub bus: EventBus,
    pub client: reqwest::Client,
    running: Option<Running>,
}

impl TestApp {
    /// Starts `service` on a fresh database of `backend` and a fresh in-memory bus.
    pub async fn spawn(service: Service, backend: TestBackend) -> Self {
        Self::builder(service).backend(backend).spawn().await
    }

    pub fn builder(service: Service) -> TestAppBuilder {
        TestAppBuilder {
            service,
            backend: TestBackend::Sqlite,
            bus: None,
            database_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            upstreams: BTreeMap::new(),
            limits: Limits {
                body_bytes: 64 * 1024,
                request_timeout: Duration::from_secs(10),
            },
            chaos: chaos::Switch::default(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// What handlers see: the database, outbox, bus and upstreams.
    pub fn context(&self) -> &Context {
        self.running.as_ref().expect("running").context()
    }

    pub fn db(&self) -> &Database {
        self.context().db()
    }

    /// The in-memory bus the service publishes to. Panics on a Kafka bus.
    pub fn memory_bus(&self) -> &MemoryBus {
        match &self.bus {
            EventBus::Memory(bus) => bus,
            EventBus::Kafka(_) => panic!("this test app runs on Kafka, not the in-memory bus"),
        }
    }

    /// Waits until the relay has published and marked every outbox row; panics after
    /// `timeout`.
    pub async fn wait_for_outbox_drained(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let pending = crate::outbox::pending(self.db())
                .await
                .expect("count the outbox");
            if pending == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{pending} outbox rows still unpublished after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A request to `path` on this service.
    pub fn request(&self, method: reqwest::Method, path: &str) -> TestRequest {
        TestRequest::new(self.client.request(method, self.url(path)))
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.request(reqwest::Method::GET, path).send().await
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> TestResponse {
        self.request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
    }

    pub async fn put(&self, path: &str, body: &serde_json::Value) -> TestResponse {
        self.request(reqwest::Method::PUT, path)
            .json(body)
            .send()
            .await
    }

    pub async fn patch(&self, path: &str, body: &serde_json::Value) -> TestResponse {
        self.request(reqwest::Method::PATCH, path)
            .json(body)
            .send()
            .await
    }

    pub async fn delete(&self, path: &str) -> TestResponse {
        self.request(reqwest::Method::DELETE, path).send().await
    }

    /// Shuts down as on SIGTERM: drain requests, stop consumers, flush the outbox.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.shutdown().await;
        }
    }
}
