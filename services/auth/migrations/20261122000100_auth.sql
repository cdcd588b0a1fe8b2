-- Sign-in data of the auth service. Portable SQL: the same file runs on SQLite and
-- PostgreSQL. Times are Unix milliseconds (BIGINT) so comparisons are plain arithmetic.

-- One row per account that can sign in. `user_id` is the id of the profile in the user
-- service. A `pending` row is a registration whose profile is not confirmed yet: it cannot
-- sign in, and registering the same email again finishes it with the same id.
CREATE TABLE credentials (
    user_id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    roles TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'suspended', 'deleted')),
    -- The user service's version of the profile this row last heard of; older events
    -- arriving late are ignored.
    profile_version BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- Refresh tokens, stored only as SHA-256 hashes. Each login starts a family; every refresh
-- rotates to a new token of the same family. Presenting a rotated token again means it was
-- stolen (or replayed), and revokes the whole family.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    issued_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    rotated_at_ms BIGINT,
    revoked_at_ms BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- Ed25519 signing keys. A key is published in the JWKS from `created_at_ms`, signs tokens
-- from `activates_at_ms` until a newer key activates, and leaves the JWKS at
-- `retires_at_ms`, once every token it signed has expired.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    private_pkcs8 TEXT NOT NULL,
    public_x TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    activates_at_ms BIGINT NOT NULL,
    retires_at_ms BIGINT
);
