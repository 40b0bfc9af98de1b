-- Fewer b-trees written per run (issue 10: every b-tree a statement touches is a WAL page
-- at commit). The formula and retention indexes only ever look up non-NULL values, and
-- most runs have neither a callback nor a parent and are NULL-finished when they start:
-- partial indexes leave those runs out. `rate_limits` is keyed by its bucket only: without
-- a rowid its upsert writes one b-tree instead of a table and its key index.
DROP INDEX IF EXISTS executions_callback;
CREATE INDEX IF NOT EXISTS executions_callback ON executions(callback_hash) WHERE callback_hash IS NOT NULL;
DROP INDEX IF EXISTS executions_parent;
CREATE INDEX IF NOT EXISTS executions_parent ON executions(parent_execution_id) WHERE parent_execution_id IS NOT NULL;
DROP INDEX IF EXISTS executions_finished;
CREATE INDEX IF NOT EXISTS executions_finished ON executions(finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS rate_limits_by_bucket (
    bucket TEXT PRIMARY KEY,
    tat INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO rate_limits_by_bucket (bucket, tat) SELECT bucket, tat FROM rate_limits;
DROP TABLE rate_limits;
ALTER TABLE rate_limits_by_bucket RENAME TO rate_limits;
