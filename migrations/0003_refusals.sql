-- Egress refusals of a run (JSON array of {type, method, url, message}).
ALTER TABLE executions ADD COLUMN refusals TEXT;
