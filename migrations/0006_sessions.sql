-- Expired sessions are purged by expiry in bounded batches: index the column they are found by.
CREATE INDEX IF NOT EXISTS sessions_expires_at ON sessions (expires_at);
