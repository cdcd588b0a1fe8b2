-- Notifications per user, and one delivery per channel each is sent through. Portable SQL:
-- the same file runs on SQLite and PostgreSQL. Ids are UUIDv7 text, so ordering by id is
-- ordering by creation (cursor pagination); timestamps shown to clients are fixed-width
-- RFC 3339 UTC text, the worker's schedule is Unix milliseconds.
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('welcome', 'order_confirmed', 'order_cancelled')),
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    order_id TEXT,
    -- The event that caused it. The consumer already applies each event once; this makes a
    -- second notification for one event impossible even so.
    source_event_id TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    read_at TEXT
);

CREATE INDEX notifications_user_id ON notifications (user_id, id);

CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    notification_id TEXT NOT NULL REFERENCES notifications (id),
    channel TEXT NOT NULL CHECK (channel IN ('email', 'push', 'sms')),
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    -- Attempts started so far; a claim counts one.
    attempts BIGINT NOT NULL,
    -- When a pending delivery is next due; a claim pushes it out while the send runs.
    next_attempt_ms BIGINT NOT NULL,
    last_error TEXT,
    updated_at TEXT NOT NULL,
    sent_at TEXT,
    UNIQUE (notification_id, channel)
);

CREATE INDEX deliveries_due ON deliveries (status, next_attempt_ms);
