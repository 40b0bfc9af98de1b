-- A key's rate limit as GCRA numbers (microseconds), so that one statement can take a
-- request from the key's bucket knowing only the key's hash (or its session): the caller
-- check is then one round trip. Keys written before this migration get them the first time
-- they are used (the router fills them in).
ALTER TABLE api_keys ADD COLUMN rate_interval_us INTEGER;
ALTER TABLE api_keys ADD COLUMN rate_window_us INTEGER;
