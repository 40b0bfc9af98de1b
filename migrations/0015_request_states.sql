-- The ids of spent `requestState`s (MCP 2026-07-28 InputRequiredResult, tools::input_required):
-- a state is single use, so its retry inserts its id here and a second retry finds it.
-- Rows are kept until the state would have expired anyway (`expires_at`, ms), then purged.
CREATE TABLE IF NOT EXISTS spent_request_states (
    id TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS spent_request_states_expiry ON spent_request_states (expires_at);
