CREATE TABLE orders (
    id             uuid        PRIMARY KEY,
    customer_id    text        NOT NULL CHECK (length(customer_id) BETWEEN 1 AND 64),
    currency       text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    total_minor    bigint      NOT NULL CHECK (total_minor >= 0),
    status         text        NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'REJECTED', 'CANCELLED')),
    status_reason  text        NOT NULL DEFAULT '',
    correlation_id text        NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

-- Keyset pagination, newest first: (created_at, id) is unique and stable.
CREATE INDEX orders_created_idx ON orders (created_at DESC, id DESC);
CREATE INDEX orders_customer_created_idx ON orders (customer_id, created_at DESC, id DESC);
CREATE INDEX orders_status_created_idx ON orders (status, created_at DESC, id DESC);

CREATE TABLE order_lines (
    order_id         uuid    NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no          integer NOT NULL CHECK (line_no >= 0),
    sku              text    NOT NULL CHECK (length(sku) BETWEEN 1 AND 64),
    quantity         integer NOT NULL CHECK (quantity BETWEEN 1 AND 10000),
    unit_price_minor bigint  NOT NULL CHECK (unit_price_minor BETWEEN 0 AND 1000000000000),
    PRIMARY KEY (order_id, line_no)
);

-- One row per PlaceOrder idempotency key. The primary key serialises
-- concurrent requests with one key: the losers wait for the winner's commit,
-- then read its order.
CREATE TABLE idempotency_keys (
    key          text        PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 128),
    request_hash bytea       NOT NULL,
    -- Deferred: the key is claimed first, before its order row exists.
    order_id     uuid        NOT NULL REFERENCES orders (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    created_at   timestamptz NOT NULL DEFAULT now()
);
