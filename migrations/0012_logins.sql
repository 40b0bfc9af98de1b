-- Login sessions (`cyfr login`): a user (`sub`) signed in through the device flow. The id
-- is the bearer / MCP-Session-Id the CLI sends; only its SHA-256 is stored. Expiry slides
-- with use; logout sets it to 0 (so the id answers "expired", not "unknown").
CREATE TABLE IF NOT EXISTS login_sessions (
    id_hash TEXT PRIMARY KEY,
    sub TEXT NOT NULL,
    email TEXT,
    name TEXT,
    provider TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS login_sessions_expires_at ON login_sessions (expires_at);

-- Device authorization requests (RFC 8628 shape): the device code is stored hashed; the
-- user code is what a person types on the verification page (or an admin approves).
-- status: pending | approved | denied | complete.
CREATE TABLE IF NOT EXISTS device_codes (
    code_hash TEXT PRIMARY KEY,
    user_code TEXT NOT NULL UNIQUE,
    provider TEXT NOT NULL,
    status TEXT NOT NULL,
    sub TEXT,
    email TEXT,
    name TEXT,
    interval_s INTEGER NOT NULL,
    last_poll_at INTEGER,
    prev_poll_at INTEGER,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
