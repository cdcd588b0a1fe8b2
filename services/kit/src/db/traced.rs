//! Query spans: every statement run through [`Traced`] is a client span named and attributed
//! by the OpenTelemetry database conventions, its text sanitised, its error recorded, and
//! a noticeable wait for a pooled connection shown as a span of its own.

use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryFutureExt, TryStreamExt};
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _};
use sqlx::any::{AnyArguments, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::error::BoxDynError;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Describe, Either, Execute, Executor, SqlStr};
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::statement;

/// The shortest pool wait that gets a span of its own.
const VISIBLE_WAIT: Duration = Duration::from_millis(1);

/// Who the spans say the database is: `db.system.name`, `db.namespace` and, for a server,
/// `server.address` and `server.port`.
#[derive(Debug)]
pub(crate) struct Identity {
    pub system: &'static str,
    pub namespace: String,
    pub server: Option<(String, u16)>,
}

impl Identity {
    /// The span for one statement. A statement run outside any span (a relay's poll, a
    /// lease renewal) gets none: a root trace per poll would bury the requests in Jaeger.
    pub(crate) fn query_span(&self, sql: &str) -> tracing::Span {
        if tracing::Span::current().is_none() {
            return tracing::Span::none();
        }
        let statement = statement::describe(sql);
        let (address, port) = match &self.server {
            Some((address, port)) => (Some(address.as_str()), Some(i64::from(*port))),
            None => (None, None),
        };
        tracing::info_span!(
            target: telemetry::TRACE_ONLY_TARGET,
            "db query",
            otel.name = statement.summary.as_str(),
            otel.kind = "client",
            otel.status_code = Empty,
            db.system.name = self.system,
            db.namespace = self.namespace.as_str(),
            db.operation.name = statement.operation.as_str(),
            db.collection.name = statement.collection.as_deref(),
            db.query.summary = statement.summary.as_str(),
            db.query.text = statement.text.as_str(),
            db.response.status_code = Empty,
            error.type = Empty,
            server.address = address,
            server.port = port,
        )
    }

    /// A pooled connection. A wait of [`VISIBLE_WAIT`] or more shows as an `acquire
    /// connection` span under the current query's span; a shorter one would only add a span
    /// to every statement for time no trace view can show.
    pub(crate) async fn acquire(&self, pool: &AnyPool) -> Result<PoolConnection<Any>, sqlx::Error> {
        let (started_at, started) = (SystemTime::now(), Instant::now());
        let result = pool.acquire().await;
        if started.elapsed() >= VISIBLE_WAIT {
            self.record_wait(started_at, result.as_ref().err());
        }
        result
    }

    /// The wait, written after the fact with its real start and end, as a child of the
    /// current span (nothing when there is none, as for the query spans).
    fn record_wait(&self, started_at: SystemTime, error: Option<&sqlx::Error>) {
        let parent = tracing::Span::current();
        if parent.is_none() {
            return;
        }
        let tracer = telemetry::tracer("sloop-kit");
        let mut span = tracer
            .span_builder("acquire connection")
            .with_kind(SpanKind::Internal)
            .with_start_time(started_at)
            .with_attributes([
                KeyValue::new("db.system.name", self.system),
                KeyValue::new("db.client.connection.pool.name", self.namespace.clone()),
            ])
            .start_with_context(&tracer, &parent.context());
        if let Some(err) = error {
            span.set_attribute(KeyValue::new("error.type", error_type(err)));
            span.set_status(Status::error("no connection"));
        }
        span.end();
    }
}

/// Marks `span` failed with the error's kind; a database error also gives its SQLSTATE (or
/// SQLite's code) as `db.response.status_code`. The message is left out: it may quote values.
fn record_error(span: &tracing::Span, err: &sqlx::Error) {
    span.record("otel.status_code", "ERROR");
    if let Some(code) = err.as_database_error().and_then(|db| db.code()) {
        span.record("db.response.status_code", code.as_ref());
    }
    span.record("error.type", error_type(err));
}

/// `error.type` for a failed statement or acquire, from a short fixed set.
fn error_type(err: &sqlx::Error) -> &'static str {
    match err {
        sqlx::Error::Database(_) => "database",
        sqlx::Error::PoolTimedOut => "pool_timed_out",
        sqlx::Error::PoolClosed => "pool_closed",
        sqlx::Error::Io(_) => "io",
        sqlx::Error::Tls(_) => "tls",
        sqlx::Error::Protocol(_) => "protocol",
        sqlx::Error::Encode(_) => "encode",
        sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => "decode",
        sqlx::Error::RowNotFound => "row_not_found",
        _ => "_OTHER",
    }
}

/// Runs `work` inside `span`, recording a failure on it.
pub(crate) async fn in_span<T>(
    span: tracing::Span,
    work: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    let result = work.instrument(span.clone()).await;
    if let Err(err) = &result {
        record_error(&span, err);
    }
    result
}

/// A query taken apart so its SQL can name the span before it runs. Prepared statements
/// are not carried over: sloop's services run query text, which sqlx caches per connection.
struct Unpacked {
    sql: SqlStr,
    arguments: Result<Option<AnyArguments>, Option<BoxDynError>>,
    persistent: bool,
}

impl Unpacked {
    fn new<'q>(mut query: impl Execute<'q, Any>) -> Self {
        let arguments = query.take_arguments().map_err(Some);
        let persistent = query.persistent();
        Self {
            sql: query.sql(),
            arguments,
            persistent,
        }
    }
}

impl Execute<'_, Any> for Unpacked {
    fn sql(self) -> SqlStr {
        self.sql
    }

    fn statement(&self) -> Option<&AnyStatement> {
        None
    }

    fn take_arguments(&mut self) -> Result<Option<AnyArguments>, BoxDynError> {
        match &mut self.arguments {
            Ok(arguments) => Ok(arguments.take()),
            Err(err) => Err(err
                .take()
                .unwrap_or_else(|| "the query's arguments were already taken".into())),
        }
    }

    fn persistent(&self) -> bool {
        self.persistent
    }
}

/// An executor whose every statement is a query span. Get one from
/// [`Database::executor`](super::Database::executor) for the pool, or from
/// [`Tx::executor`](super::Tx::executor) inside a transaction.
#[derive(Debug)]
pub struct Traced<'a, E> {
    pub(crate) inner: E,
    pub(crate) identity: &'a Arc<Identity>,
}

impl<E: Copy> Clone for Traced<'_, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E: Copy> Copy for Traced<'_, E> {}

type Step = Either<AnyQueryResult, AnyRow>;

/// On the pool: the connection is acquired inside the query span, in a span of its own.
/// `fetch_many` collects the rows before handing them on, since the stream cannot borrow a
/// connection it owns; services fetch bounded pages, and a caller streaming a large result
/// should take a transaction's executor, which streams.
impl<'p> Executor<'p> for Traced<'_, &'p AnyPool> {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, Q>(self, query: Q) -> BoxStream<'e, Result<Step, sqlx::Error>>
    where
        'p: 'e,
        Q: 'q + Execute<'q, Any>,
    {
        let query = Unpacked::new(query);
        let span = self.identity.query_span(query.sql.as_str());
        let (pool, identity) = (self.inner.clone(), self.identity.clone());
        let steps = in_span(span, async move {
            let mut conn = identity.acquire(&pool).await?;
            conn.fetch_many(query).try_collect::<Vec<Step>>().await
        });
        steps
            .map_ok(|steps| futures::stream::iter(steps.into_iter().map(Ok)))
            .try_flatten_stream()
            .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, Q>(
        self,
        query: Q,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'p: 'e,
        Q: 'q + Execute<'q, Any>,
    {
        let query = Unpacked::new(query);
        let span = self.identity.query_span(query.sql.as_str());
        let (pool, identity) = (self.inner.clone(), self.identity.clone());
        in_span(span, async move {
            let mut conn = identity.acquire(&pool).await?;
            conn.fetch_optional(query).await
        })
        .boxed()
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>>
    where
        'p: 'e,
    {
        self.inner.prepare_with(sql, parameters)
    }

    // Required while sqlx is built with its `offline` feature (the query macros turn it on).
    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<Any>, sqlx::Error>>
    where
        'p: 'e,
    {
        self.inner.describe(sql)
    }
}

/// On a connection (a transaction's): the statement runs in its span, rows streamed.
impl<'c> Executor<'c> for Traced<'_, &'c mut AnyConnection> {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, Q>(self, query: Q) -> BoxStream<'e, Result<Step, sqlx::Error>>
    where
        'c: 'e,
        Q: 'q + Execute<'q, Any>,
    {
        let query = Unpacked::new(query);
        let span = self.identity.query_span(query.sql.as_str());
        let mut steps = self.inner.fetch_many(query);
        futures::stream::poll_fn(move |cx| {
            let _entered = span.enter();
            let step = steps.poll_next_unpin(cx);
            if let Poll::Ready(Some(Err(err))) = &step {
                record_error(&span, err);
            }
            step
        })
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, Q>(
        self,
        query: Q,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        Q: 'q + Execute<'q, Any>,
    {
        let query = Unpacked::new(query);
        let span = self.identity.query_span(query.sql.as_str());
        in_span(span, self.inner.fetch_optional(query)).boxed()
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        self.inner.prepare_with(sql, parameters)
    }

    // Required while sqlx is built with its `offline` feature (the query macros turn it on).
    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.inner.describe(sql)
    }
}
