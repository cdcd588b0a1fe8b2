-- The audit log: every platform event, once, in an append-only hash chain. Portable SQL:
-- the same file runs on SQLite and PostgreSQL.
--
-- `seq` numbers entries 1, 2, 3 ... with no gaps; being the primary key, two instances
-- appending the same next number cannot both succeed, so the chain never forks.
-- `prev_hash` is the hex SHA-256 of the entry before (64 zeros for the first) and `hash`
-- covers `seq`, `prev_hash` and every other column (see src/chain.rs for the encoding).
-- `time` is the event's time as received; `time_utc` the same instant as fixed-width
-- RFC 3339 UTC text (NULL when `time` does not parse), which sorts chronologically and
-- serves the time-range queries.
CREATE TABLE audit_log (
    seq BIGINT NOT NULL PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    type TEXT NOT NULL,
    source TEXT NOT NULL,
    subject TEXT NOT NULL,
    schema_version BIGINT NOT NULL,
    time TEXT NOT NULL,
    time_utc TEXT,
    data TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

CREATE INDEX audit_log_subject_seq ON audit_log (subject, seq);
CREATE INDEX audit_log_type_seq ON audit_log (type, seq);
CREATE INDEX audit_log_time_seq ON audit_log (time_utc, seq);
