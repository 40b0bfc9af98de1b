-- API keys: only the SHA-256 of the raw key is stored.
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_type TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    scopes TEXT NOT NULL,
    rate_limit TEXT,
    ip_allowlist TEXT,
    created_by TEXT,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys(name) WHERE revoked_at IS NULL;

-- GCRA state: the theoretical arrival time per bucket, updated in one statement.
CREATE TABLE IF NOT EXISTS rate_limits (
    bucket TEXT PRIMARY KEY,
    tat INTEGER NOT NULL
);

-- MCP sessions created by initialize.
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    key_id TEXT,
    protocol_version TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

-- Content-addressed component artifacts.
CREATE TABLE IF NOT EXISTS artifacts (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

-- Registered components: one row per type/namespace/name/version.
CREATE TABLE IF NOT EXISTS components (
    component_type TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    version_key TEXT NOT NULL,
    digest TEXT NOT NULL,
    description TEXT NOT NULL,
    manifest TEXT NOT NULL,
    registered_by TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (component_type, namespace, name, version)
);

-- One record per run.
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    reference TEXT NOT NULL,
    component_type TEXT NOT NULL,
    digest TEXT NOT NULL,
    status TEXT NOT NULL,
    caller TEXT,
    parent_execution_id TEXT,
    policy TEXT NOT NULL,
    error TEXT,
    stdout TEXT,
    stderr TEXT,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    duration_ms INTEGER
);
CREATE INDEX IF NOT EXISTS executions_caller ON executions(caller, started_at);

-- Host policies, per component reference (with or without version); fields set explicitly.
CREATE TABLE IF NOT EXISTS policies (
    reference TEXT PRIMARY KEY,
    fields TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT
);
