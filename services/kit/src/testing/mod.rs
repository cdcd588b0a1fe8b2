//! Integration-test helpers: a fresh database per test (SQLite file or PostgreSQL database)
//! and the full service app on port 0, with a client pointed at it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use sqlx::migrate::Migrator;
use tokio::sync::oneshot;

use crate::server::{Limits, Server, app};
use crate::{Database, ServiceSpec};

mod otlp;
pub use otlp::{OtlpReceiver, ReceivedSpan, SPAN_KIND_CLIENT, SPAN_KIND_SERVER};

/// The variable `scripts/test.sh` sets to an admin URL of the PostgreSQL it started.
pub const POSTGRES_URL_VAR: &str = "SLOOP_TEST_POSTGRES_URL";

/// Which backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    Postgres,
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

/// A service running in this process on a random port.
pub struct TestApp {
    pub addr: SocketAddr,
    pub db: Database,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    /// Starts `api` with the shared layers, on a fresh database of `backend`.
    pub async fn spawn(
        spec: ServiceSpec,
        backend: TestBackend,
        migrations: &Migrator,
        api: impl FnOnce(Database) -> Router,
    ) -> Self {
        let url = fresh_database_url(backend).await;
        let db = Database::connect(&url, 5, migrations)
            .await
            .unwrap_or_else(|e| panic!("test database: {e}"));
        let limits = Limits {
            body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
        };
        let router = app(spec, api(db.clone()), db.clone(), limits);
        Self::serve(router, db).await
    }

    async fn serve(router: Router, db: Database) -> Self {
        let server = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), router)
            .await
            .expect("bind port 0");
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            let _ = server
                .run_until_stopped(shutdown, Duration::from_secs(5))
                .await;
        });
        Self {
            addr,
            db,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops serving and waits for in-flight requests.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}
