-- The batch service's tables: the history of job runs, and the read model its reports are
-- built from (daily counters filled by its event consumer). Portable SQL: the same file
-- runs on SQLite and PostgreSQL. Ids are UUIDv7 text, so ordering by id is ordering by
-- creation (cursor pagination); times are Unix milliseconds, days are `YYYY-MM-DD` (UTC).

-- One row per attempt at a run. A scheduled slot is claimed by inserting its first attempt:
-- UNIQUE (job, scheduled_for_ms, attempt) lets exactly one instance do that. An attempt
-- whose instance stopped is marked failed by the next holder of the job's lease, which
-- inserts the next attempt (retry_of = the abandoned one) and runs it. Manual runs have no
-- slot (NULL), so they never collide with each other or with scheduled ones.
-- `triggered_by` is the API's `trigger` (TRIGGER is an SQL keyword).
CREATE TABLE batch_runs (
    id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    triggered_by TEXT NOT NULL CHECK (triggered_by IN ('schedule', 'manual')),
    scheduled_for_ms BIGINT,
    attempt BIGINT NOT NULL CHECK (attempt >= 1),
    retry_of TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    -- The instance that ran (or runs) this attempt: the holder name of its job leases.
    holder TEXT NOT NULL,
    -- The days a report covers, inclusive; NULL for jobs that make no report.
    period_from TEXT,
    period_to TEXT,
    started_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT,
    duration_ms BIGINT,
    -- A few lines, separated by newlines, saying what the run did.
    log TEXT NOT NULL,
    -- The report as JSON, for jobs that make one, once the run succeeded.
    report TEXT,
    UNIQUE (job, scheduled_for_ms, attempt)
);

CREATE INDEX batch_runs_job_id ON batch_runs (job, id);
CREATE INDEX batch_runs_job_status ON batch_runs (job, status);
CREATE INDEX batch_runs_started ON batch_runs (started_at_ms);

-- Accounts created per day (UserCreated).
CREATE TABLE batch_daily_signups (
    day TEXT PRIMARY KEY,
    signups BIGINT NOT NULL
);

-- Orders per day and currency: confirmed, cancelled, and revenue = the sum of the confirmed
-- orders' totals in minor units (OrderConfirmed, OrderCancelled).
CREATE TABLE batch_daily_sales (
    day TEXT NOT NULL,
    currency TEXT NOT NULL,
    orders_confirmed BIGINT NOT NULL,
    orders_cancelled BIGINT NOT NULL,
    revenue BIGINT NOT NULL,
    PRIMARY KEY (day, currency)
);
