-- The store: catalogue, inventory and orders. Portable SQL: the same file runs on SQLite
-- and PostgreSQL. Money is integer minor units beside an ISO 4217 code, never a float.
-- Ids are UUIDv7 text, so ordering by id is ordering by creation.
CREATE TABLE categories (
    slug TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE products (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    -- Lower-cased name and description, what text search matches against.
    search_text TEXT NOT NULL,
    description TEXT NOT NULL,
    category TEXT NOT NULL REFERENCES categories (slug),
    price_amount BIGINT NOT NULL CHECK (price_amount > 0),
    currency TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE INDEX products_category ON products (category, id);
CREATE INDEX products_price ON products (price_amount, id);
CREATE INDEX products_name ON products (name, id);

-- Stock that can still be sold. Orders take from it in the transaction that places them;
-- the CHECK is the last line against overselling.
CREATE TABLE inventory (
    product_id TEXT PRIMARY KEY REFERENCES products (id),
    available BIGINT NOT NULL CHECK (available >= 0),
    updated_at TEXT NOT NULL
);

CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending_payment', 'confirmed', 'cancelled')),
    total_amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    payment_method TEXT NOT NULL,
    reason TEXT,
    charge_id TEXT,
    -- The client's Idempotency-Key and the normalized request it came with: the same key
    -- with the same request answers this order again; with another request, 422.
    idempotency_key TEXT,
    request TEXT,
    created_at TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at TEXT NOT NULL,
    -- Past this time a pending order is cancelled (timeout compensation).
    deadline_ms BIGINT NOT NULL,
    UNIQUE (user_id, idempotency_key)
);

CREATE INDEX orders_user ON orders (user_id, id);
CREATE INDEX orders_pending ON orders (status, deadline_ms);

CREATE TABLE order_lines (
    order_id TEXT NOT NULL REFERENCES orders (id),
    product_id TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    unit_amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    PRIMARY KEY (order_id, product_id)
);

-- Every status an order went through, with why.
CREATE TABLE order_history (
    order_id TEXT NOT NULL REFERENCES orders (id),
    seq BIGINT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    at TEXT NOT NULL,
    PRIMARY KEY (order_id, seq)
);
