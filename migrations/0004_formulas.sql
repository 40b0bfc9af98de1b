-- Formulas: how deep a run is nested, when it must end, and the hash of the callback token
-- its host presents to invoke children or call tools (valid only while the run is started).
ALTER TABLE executions ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;
ALTER TABLE executions ADD COLUMN deadline_at INTEGER;
ALTER TABLE executions ADD COLUMN callback_hash TEXT;
CREATE INDEX IF NOT EXISTS executions_callback ON executions(callback_hash);
CREATE INDEX IF NOT EXISTS executions_parent ON executions(parent_execution_id);
