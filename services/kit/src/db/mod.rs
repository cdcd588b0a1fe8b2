//! The database pool, chosen by URL: SQLite for the embedded default, PostgreSQL when
//! distributed. Both run the same query text (`$1` placeholders, portable types).
//!
//! Every database also gets the kit's own tables (outbox, processed events, leases),
//! migrated separately from the service's so neither's history gets in the other's way.
//!
//! Queries go through [`Database::executor`] or a [`Tx`], which make each statement a span.

mod statement;
mod traced;

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyConnection, AnyPool, Executor, Transaction};

use traced::Identity;
pub use traced::Traced;

/// Which server is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "unsupported DATABASE_URL `{0}`: use sqlite://FILE or postgres://USER:PASS@HOST:PORT/DB"
    )]
    UnsupportedUrl(String),
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot migrate {url}: {source}")]
    Migrate {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
}

/// The kit's tables. SQL differs per backend only in how an auto-increment key is declared.
static KIT_SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
static KIT_POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");
const KIT_MIGRATIONS_TABLE: &str = "_sloop_kit_migrations";

/// How long a query waits for a connection before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The `database` faults for one connection about to be handed out. An abort holds it past
/// the acquire timeout before refusing it. Refusing at once would not fail the query: the
/// pool would try another connection, roll the dice again, and an abort at probability
/// 0.3 would fail almost nothing.
async fn pass_database_faults(faults: &chaos::Faults) -> Result<(), String> {
    let refused = faults
        .inject_dependency(chaos::Target::Database, "database")
        .await;
    if refused.is_err() {
        tokio::time::sleep(ACQUIRE_TIMEOUT).await;
    }
    refused
}

/// A connection pool to SQLite or PostgreSQL. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    identity: Arc<Identity>,
}

impl Database {
    /// Connects, creating a SQLite file if it is missing, and applies the kit's migrations
    /// and then the service's `migrations`.
    /// With `faults` (chaos on), every connection taken from the pool, and every new one
    /// it opens, first passes the active `database` faults, decided once per acquire:
    /// delayed, or (abort) held until the acquire times out, so the query fails as against
    /// a database that has stopped answering.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        migrations: &Migrator,
        faults: Option<chaos::Faults>,
    ) -> Result<Self, DbError> {
        install_default_drivers();
        let backend = backend_of(url)?;
        let connect_url = match backend {
            Backend::Sqlite => with_create_mode(url),
            Backend::Postgres => url.to_owned(),
        };
        let mut options = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT);
        if let Some(faults) = faults.clone() {
            options = options.before_acquire(move |_conn, _meta| {
                let faults = faults.clone();
                Box::pin(async move { Ok(pass_database_faults(&faults).await.is_ok()) })
            });
        }
        let pool = options
            .after_connect(move |conn, _meta| {
                let faults = faults.clone();
                Box::pin(async move {
                    if let Some(faults) = faults {
                        pass_database_faults(&faults)
                            .await
                            .map_err(sqlx::Error::Protocol)?;
                    }
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; busy_timeout makes a writer
                        // wait for the lock instead of failing with SQLITE_BUSY.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect(&connect_url)
            .await
            .map_err(|source| DbError::Connect {
                url: redact(url),
                source,
            })?;
        let migrate_error = |source| DbError::Migrate {
            url: redact(url),
            source,
        };
        kit_migrator(backend)
            .run(&pool)
            .await
            .map_err(migrate_error)?;
        migrations.run(&pool).await.map_err(migrate_error)?;
        Ok(Self {
            pool,
            backend,
            identity: Arc::new(identity_of(backend, url)),
        })
    }

    /// The pool itself, whose queries are not traced: for migrations and tests. Services
    /// query through [`Database::executor`] and [`Database::begin`].
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Runs one statement on a pooled connection, as a query span.
    pub fn executor(&self) -> Traced<'_, &AnyPool> {
        Traced {
            inner: &self.pool,
            identity: &self.identity,
        }
    }

    /// Starts a transaction; `BEGIN`, each statement and `COMMIT` are spans, and the wait
    /// for a connection shows as its own.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        let identity = self.identity.clone();
        let pool = self.pool.clone();
        let span = identity.query_span("BEGIN");
        let inner = traced::in_span(span, async {
            let conn = identity.acquire(&pool).await?;
            // What `Pool::begin` does, after a traced acquire (sqlx exposes this constructor
            // without documenting it).
            Transaction::begin(conn, None).await
        })
        .await?;
        Ok(Tx { inner, identity })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// Closes every connection, waiting for checked-out ones to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A transaction whose statements are query spans. Dropped without [`Tx::commit`], it rolls
/// back.
#[derive(Debug)]
pub struct Tx {
    inner: Transaction<'static, Any>,
    identity: Arc<Identity>,
}

impl Tx {
    /// Runs one statement in the transaction, as a query span.
    pub fn executor(&mut self) -> Traced<'_, &mut AnyConnection> {
        Traced {
            inner: &mut *self.inner,
            identity: &self.identity,
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        let span = self.identity.query_span("COMMIT");
        traced::in_span(span, self.inner.commit()).await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        let span = self.identity.query_span("ROLLBACK");
        traced::in_span(span, self.inner.rollback()).await
    }
}

/// What query spans call this database: the system, the database (PostgreSQL's name, or
/// SQLite's file name) and, for PostgreSQL, the server.
fn identity_of(backend: Backend, url: &str) -> Identity {
    match backend {
        Backend::Sqlite => {
            let path = url
                .trim_start_matches("sqlite:")
                .trim_start_matches("//")
                .split('?')
                .next()
                .unwrap_or_default();
            let file = std::path::Path::new(path)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.to_owned());
            Identity {
                system: "sqlite",
                namespace: file,
                server: None,
            }
        }
        Backend::Postgres => {
            let parsed = reqwest::Url::parse(url).ok();
            let namespace = parsed
                .as_ref()
                .map(|u| u.path().trim_start_matches('/').to_owned())
                .unwrap_or_default();
            let server = parsed.as_ref().and_then(|u| {
                u.host_str()
                    .map(|host| (host.to_owned(), u.port().unwrap_or(5432)))
            });
            Identity {
                system: "postgresql",
                namespace,
                server,
            }
        }
    }
}

fn kit_migrator(backend: Backend) -> Migrator {
    let source = match backend {
        Backend::Sqlite => &KIT_SQLITE,
        Backend::Postgres => &KIT_POSTGRES,
    };
    let mut migrator = Migrator::with_migrations(source.iter().cloned().collect());
    migrator.dangerous_set_table_name(KIT_MIGRATIONS_TABLE);
    migrator
}

/// Whether `err` is a unique-constraint violation (a duplicate key), on either backend.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.is_unique_violation())
}

fn backend_of(url: &str) -> Result<Backend, DbError> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err(DbError::UnsupportedUrl(redact(url)))
    }
}

/// `mode=rwc` makes SQLite create the file on first start instead of failing.
fn with_create_mode(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// Hides the password in a URL before it reaches a log line or an error message.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_is_picked_by_scheme() {
        assert_eq!(backend_of("sqlite://a.db").unwrap(), Backend::Sqlite);
        assert_eq!(backend_of("postgres://u@h/db").unwrap(), Backend::Postgres);
        assert!(
            backend_of("mysql://u:secret@h/db")
                .unwrap_err()
                .to_string()
                .contains("***")
        );
    }

    #[test]
    fn sqlite_files_are_created_on_first_start() {
        assert_eq!(with_create_mode("sqlite://a.db"), "sqlite://a.db?mode=rwc");
        assert_eq!(
            with_create_mode("sqlite://a.db?x=1"),
            "sqlite://a.db?x=1&mode=rwc"
        );
        assert_eq!(
            with_create_mode("sqlite://a.db?mode=ro"),
            "sqlite://a.db?mode=ro"
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/user"),
            "postgres://app:***@db:5432/user"
        );
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn kit_migrations_have_their_own_history_table() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let migrator = kit_migrator(backend);
            assert_eq!(migrator.table_name, KIT_MIGRATIONS_TABLE);
            assert!(migrator.iter().count() >= 1);
        }
    }
}
