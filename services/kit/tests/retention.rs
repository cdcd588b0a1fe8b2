//! Retention on both backends: published outbox rows and applied-event ids past their
//! retention are deleted, more than one batch of them; unpublished rows and recent ones stay.

use std::time::Duration;

use sloop_kit::Database;
use sloop_kit::retention::{Retention, Swept, sweep};
use sloop_kit::testing::{TestBackend, fresh_database_url};
use sqlx::migrate::Migrator;

static MIGRATIONS: Migrator = sqlx::migrate!("tests/ledger");

const DAY_MS: i64 = 24 * 3600 * 1000;
const NOW_MS: i64 = 1_800_000_000_000;

#[tokio::test]
async fn old_rows_go_and_the_rest_stays_on_sqlite() {
    old_rows_go_and_the_rest_stays(TestBackend::Sqlite).await;
}

#[tokio::test]
async fn old_rows_go_and_the_rest_stays_on_postgres() {
    old_rows_go_and_the_rest_stays(TestBackend::Postgres).await;
}

async fn old_rows_go_and_the_rest_stays(backend: TestBackend) {
    let url = fresh_database_url(backend).await;
    let db = Database::connect(&url, 2, &MIGRATIONS, None).await.unwrap();
    let old = NOW_MS - 8 * DAY_MS;
    let recent = NOW_MS - DAY_MS;
    let mut tx = db.begin().await.unwrap();
    // 1200 old published (more than one batch), 7 recently published, 5 old and never
    // published: those must wait for the relay, however old.
    for (n, created, published) in (0..1200)
        .map(|n| (n, old, Some(old)))
        .chain((0..7).map(|n| (1200 + n, recent, Some(recent))))
        .chain((0..5).map(|n| (1300 + n, old, None)))
    {
        sqlx::query(
            "INSERT INTO kit_outbox (id, topic, subject, type, source, time, schema_version, data, \
             trace, created_at_ms, published_at_ms) VALUES ($1, 't', 's', 'x', 'test', 'now', 1, \
             '{}', '{}', $2, $3)",
        )
        .bind(format!("event-{n}"))
        .bind(created)
        .bind(published)
        .execute(tx.executor())
        .await
        .unwrap();
    }
    for (n, at) in (0..1100)
        .map(|n| (n, old))
        .chain((0..3).map(|n| (2000 + n, recent)))
    {
        sqlx::query(
            "INSERT INTO kit_processed_events (consumer, event_id, processed_at_ms) VALUES ('c', $1, $2)",
        )
        .bind(format!("event-{n}"))
        .bind(at)
        .execute(tx.executor())
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    let week = Retention {
        outbox: Duration::from_secs(7 * 24 * 3600),
        processed_events: Duration::from_secs(7 * 24 * 3600),
        every: Duration::from_secs(60),
    };
    let swept = sweep(&db, &week, NOW_MS).await.unwrap();
    assert_eq!(
        swept,
        Swept {
            outbox: 1200,
            processed_events: 1100
        }
    );
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(db.pool()).await.unwrap();
            n
        }
    };
    assert_eq!(
        count("SELECT COUNT(*) FROM kit_outbox WHERE published_at_ms IS NULL").await,
        5
    );
    assert_eq!(count("SELECT COUNT(*) FROM kit_outbox").await, 12);
    assert_eq!(count("SELECT COUNT(*) FROM kit_processed_events").await, 3);

    // Nothing more to do on a second sweep.
    assert_eq!(sweep(&db, &week, NOW_MS).await.unwrap(), Swept::default());
    db.close().await;
}
