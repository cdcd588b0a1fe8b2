-- The kit's own tables, beside every service's: the transactional outbox, the ids of
-- events each consumer has applied, and named leases (one holder at a time).
CREATE TABLE kit_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    subject TEXT NOT NULL,
    type TEXT NOT NULL,
    source TEXT NOT NULL,
    time TEXT NOT NULL,
    schema_version BIGINT NOT NULL,
    data TEXT NOT NULL,
    trace TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    published_at_ms BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX kit_outbox_pending ON kit_outbox (seq) WHERE published_at_ms IS NULL;

CREATE TABLE kit_processed_events (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    processed_at_ms BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

CREATE TABLE kit_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
