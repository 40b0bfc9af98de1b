-- A secret whose value arrived sealed ({ciphertext, kid}) is never shown even in part.
ALTER TABLE secrets ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0;
-- A run remembers whether its request came over a secure transport, so a formula's
-- callbacks (loopback or not) act with the original request's, not their own.
ALTER TABLE executions ADD COLUMN transport_secure INTEGER NOT NULL DEFAULT 0;
-- A formula whose input held opened encrypted_secrets keeps them, and the key its callback
-- bodies are sealed with, wrapped by the master key (key id, wrapped bytes).
ALTER TABLE executions ADD COLUMN carried_kek TEXT;
ALTER TABLE executions ADD COLUMN carried BLOB;
