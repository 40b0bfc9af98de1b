-- Envelope encryption: per-owner data keys, wrapped by the key-encryption key `kek_id`.
CREATE TABLE IF NOT EXISTS data_keys (
    owner TEXT NOT NULL,
    version INTEGER NOT NULL,
    kek_id TEXT NOT NULL,
    wrapped BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (owner, version)
);

-- Secrets: AES-256-GCM ciphertexts bound to owner, name and version (associated data).
CREATE TABLE IF NOT EXISTS secrets (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    dek_version INTEGER NOT NULL,
    ciphertext BLOB NOT NULL,
    created_by TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER,
    last_used_at INTEGER,
    PRIMARY KEY (owner, name)
);

-- Which component may read which secret; `allow_user_keys` lets a caller's own key win.
CREATE TABLE IF NOT EXISTS secret_grants (
    reference TEXT NOT NULL,
    name TEXT NOT NULL,
    allow_user_keys INTEGER NOT NULL DEFAULT 1,
    granted_by TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (reference, name)
);

-- Per-session X25519 key pairs for sealed-box secrets; the private key is wrapped by the KEK.
CREATE TABLE IF NOT EXISTS session_keys (
    session_hash TEXT PRIMARY KEY,
    kid TEXT NOT NULL,
    public_key BLOB NOT NULL,
    kek_id TEXT NOT NULL,
    wrapped_private BLOB NOT NULL,
    expires_at INTEGER NOT NULL
);
