-- Charges and refunds. Portable SQL: the same file runs on SQLite and PostgreSQL.
-- One charge per order (UNIQUE order_id): a redelivered OrderPlaced or a retried
-- POST /charges finds the charge already there and never charges twice.
CREATE TABLE charges (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL UNIQUE,
    amount BIGINT NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    payment_method TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'voided', 'refunded')),
    reason TEXT,
    provider_reference TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    -- A pending charge is due at this time; a worker that claims it pushes it out by the
    -- claim's length, so a crashed worker's charge comes due again.
    next_attempt_ms BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE INDEX charges_due ON charges (status, next_attempt_ms);

CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    charge_id TEXT NOT NULL UNIQUE REFERENCES charges (id),
    amount BIGINT NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL
);
