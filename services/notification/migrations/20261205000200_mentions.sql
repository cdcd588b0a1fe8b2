-- Chat mentions become notifications: the `mention` kind joins the CHECK on
-- notifications.kind. Neither SQLite nor portable SQL can change a CHECK in place, so both
-- tables are rebuilt (deliveries references notifications) and renamed back; the same file
-- runs on SQLite and PostgreSQL. A mention's source_event_id is `<event id>:<user id>`,
-- since one message may mention several members.
CREATE TABLE notifications_v2 (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('welcome', 'order_confirmed', 'order_cancelled', 'mention')),
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    order_id TEXT,
    source_event_id TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    read_at TEXT
);

INSERT INTO notifications_v2 (id, user_id, kind, title, body, order_id, source_event_id, created_at, read_at)
SELECT id, user_id, kind, title, body, order_id, source_event_id, created_at, read_at FROM notifications;

CREATE TABLE deliveries_v2 (
    id TEXT PRIMARY KEY,
    notification_id TEXT NOT NULL REFERENCES notifications_v2 (id),
    channel TEXT NOT NULL CHECK (channel IN ('email', 'push', 'sms')),
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    last_error TEXT,
    updated_at TEXT NOT NULL,
    sent_at TEXT,
    UNIQUE (notification_id, channel)
);

INSERT INTO deliveries_v2 (id, notification_id, channel, status, attempts, next_attempt_ms, last_error, updated_at, sent_at)
SELECT id, notification_id, channel, status, attempts, next_attempt_ms, last_error, updated_at, sent_at FROM deliveries;

-- Children first: dropping a parent that is still referenced fails on both databases.
DROP TABLE deliveries;
DROP TABLE notifications;
ALTER TABLE notifications_v2 RENAME TO notifications;
ALTER TABLE deliveries_v2 RENAME TO deliveries;

CREATE INDEX notifications_user_id ON notifications (user_id, id);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_ms);
