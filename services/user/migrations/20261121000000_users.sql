-- Users of the platform. Portable SQL: the same file runs on SQLite and PostgreSQL.
-- Ids are UUIDv7 text, so ordering by id is ordering by creation (cursor pagination).
-- Timestamps are fixed-width RFC 3339 UTC text, which sorts chronologically.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'deleted')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version BIGINT NOT NULL
);

CREATE INDEX users_status_id ON users (status, id);
