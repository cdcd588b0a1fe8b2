-- A test service's tables: what the producer wrote, and what a consumer applied.
CREATE TABLE entries (
    subject TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (subject, seq)
);
CREATE TABLE applied (
    subject TEXT NOT NULL,
    seq BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (subject, seq)
);
-- Events that arrived before their predecessor (should stay empty).
CREATE TABLE out_of_order (
    subject TEXT NOT NULL,
    seq BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
