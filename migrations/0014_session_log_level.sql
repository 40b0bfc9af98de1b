-- The log level a 2025-11-25 session asked for (`logging/setLevel`): a streamed tools/call
-- of that session sends the run's log lines at or above it. NULL: none asked, none sent.
ALTER TABLE sessions ADD COLUMN log_level TEXT;
