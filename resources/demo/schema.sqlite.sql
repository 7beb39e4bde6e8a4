-- Demo shop schema (SQLite). The PostgreSQL twin is schema.postgresql.sql.
CREATE TABLE customers (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT NOT NULL,
    email          TEXT,
    phone          TEXT NOT NULL UNIQUE,
    account_status TEXT NOT NULL DEFAULT 'active',
    last_purchase  TEXT
);

CREATE TABLE inventory (
    product_id TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    quantity   INTEGER NOT NULL CHECK (quantity >= 0),
    location   TEXT
);

CREATE TABLE orders (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    items       TEXT NOT NULL CHECK (json_valid(items)),
    status      TEXT NOT NULL DEFAULT 'pending',
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

CREATE INDEX orders_customer ON orders(customer_id);
