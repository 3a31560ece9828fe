-- 0001: accounts, login sessions (SHA-256 of the token) and release requests, as review.db
-- keeps them on a single node. Flags and counters are BIGINT, as SQLite's INTEGER, so the
-- review code speaks one SQL to both.
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    hash TEXT NOT NULL,
    must_change BIGINT NOT NULL,
    locked_until BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    failed_since_login BIGINT NOT NULL DEFAULT 0,
    last_login_at TEXT,
    last_login_from TEXT,
    created_at TEXT NOT NULL,
    disabled BIGINT NOT NULL DEFAULT 0,
    epoch BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    item_id TEXT NOT NULL,
    requester TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    state TEXT NOT NULL,
    decided_by TEXT,
    decision_reason TEXT,
    requested_at TEXT NOT NULL,
    decided_at TEXT,
    delivery TEXT
);
CREATE INDEX requests_item ON requests (item_id);
CREATE INDEX requests_state ON requests (state);
CREATE TABLE sessions (
    token_sha256 TEXT PRIMARY KEY,
    "user" TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    must_change BIGINT NOT NULL,
    started_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    client TEXT NOT NULL,
    previous_login TEXT,
    previous_from TEXT,
    failed_since BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions ("user");
