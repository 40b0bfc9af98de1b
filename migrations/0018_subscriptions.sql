-- A 2025-11-25 session's `resources/subscribe`: the URIs it watches, kept in SQL (each
-- request is a fresh router instance). Gone with the session (`sessions::delete`, the purge).
CREATE TABLE resource_subscriptions (
    session_hash TEXT NOT NULL,
    uri TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (session_hash, uri)
);
