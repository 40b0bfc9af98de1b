-- The log level a 2025-11-25 session asked for (`logging/setLevel`): a streamed tools/call
-- of that session sends the run's log lines at or above it. NULL: none asked, none sent.
ALTER TABLE sessions ADD COLUMN log_level TEXT;
-- A run started by a 2025-11-25 session's tools/call: `<session hash>:<JSON-RPC id>`, so a
-- `notifications/cancelled` of that session (another HTTP request) finds it in SQL.
ALTER TABLE executions ADD COLUMN rpc_id TEXT;
CREATE INDEX executions_rpc_id ON executions (rpc_id) WHERE rpc_id IS NOT NULL;
