-- The audit log: one row per tool call, authentication failure and refusal. Rows are
-- written in the request's own round trip without their hash (SQLite has no SHA-256);
-- `audit::seal` later chains them: hash = sha256(previous hash || canonical row).
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    event TEXT NOT NULL,
    actor TEXT NOT NULL,
    -- Whose row it is (a key's lineage, or `user:<sub>`): what a non-admin may list.
    actor_id TEXT,
    tool TEXT,
    action TEXT,
    reference TEXT,
    outcome TEXT NOT NULL,
    error_code INTEGER,
    client_ip TEXT,
    duration_ms INTEGER,
    detail TEXT,
    hash TEXT
);
CREATE INDEX IF NOT EXISTS audit_request ON audit (request_id);
CREATE INDEX IF NOT EXISTS audit_unsealed ON audit (seq) WHERE hash IS NULL;
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE INDEX IF NOT EXISTS audit_actor_id ON audit (actor_id, seq);

-- The chain's hash at a sealed row, stored at every seal: a tail cut after a checkpoint
-- shows as a checkpoint without its row.
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    at INTEGER NOT NULL
);

-- Where the chain starts after retention pruned older rows: the last pruned row's seq and
-- hash (seq 0 and 64 zeros before any pruning).
CREATE TABLE IF NOT EXISTS audit_anchor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT OR IGNORE INTO audit_anchor (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
