-- Key lineage: a key and every rotation of it share `lineage_id`, which owns the lineage's
-- user secrets (`user:<lineage_id>`) and runs (`executions.caller`). `budget_id` names the
-- rate-limit buckets a key draws from: its own lineage, or for a key a non-admin created,
-- its creator's budget. Existing keys are their own lineage and budget (lineage = id), so
-- existing secrets, runs and buckets keep their owner.
ALTER TABLE api_keys ADD COLUMN lineage_id TEXT;
ALTER TABLE api_keys ADD COLUMN budget_id TEXT;
UPDATE api_keys SET lineage_id = id WHERE lineage_id IS NULL;
UPDATE api_keys SET budget_id = lineage_id WHERE budget_id IS NULL;
CREATE INDEX IF NOT EXISTS api_keys_lineage ON api_keys(lineage_id, revoked_at);

-- Retention: finished runs older than `execution_retention_days` are purged in small batches.
CREATE INDEX IF NOT EXISTS executions_finished ON executions(finished_at);
