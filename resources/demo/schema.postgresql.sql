-- Demo shop schema (PostgreSQL). The SQLite twin is schema.sqlite.sql.
CREATE TABLE customers (
    id             BIGSERIAL PRIMARY KEY,
    name           TEXT NOT NULL,
    email          TEXT,
    phone          TEXT NOT NULL UNIQUE,
    account_status TEXT NOT NULL DEFAULT 'active',
    last_purchase  DATE
);

CREATE TABLE inventory (
    product_id TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    quantity   INTEGER NOT NULL CHECK (quantity >= 0),
    location   TEXT
);

CREATE TABLE orders (
    id          BIGSERIAL PRIMARY KEY,
    customer_id BIGINT NOT NULL REFERENCES customers(id),
    items       JSONB NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX orders_customer ON orders(customer_id);
