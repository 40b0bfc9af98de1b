-- Users (the `sub` of a JWT or of a login session) and what they were granted.
-- Permissions granted to a user by `permission.set`: comma-separated scope strings
-- (seed 000's, with `*` and `tool.*` wildcards). A user holds nothing until granted.
CREATE TABLE IF NOT EXISTS user_permissions (
    subject TEXT PRIMARY KEY,
    permissions TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT
);

-- Sessions ended on the server (`session.logout`): a JWT naming one in `session_id` is
-- refused from then on. Stored hashed, like every session id.
CREATE TABLE IF NOT EXISTS revoked_sessions (
    id_hash TEXT PRIMARY KEY,
    revoked_at INTEGER NOT NULL
);
