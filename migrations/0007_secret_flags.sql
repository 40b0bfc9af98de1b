-- A secret whose value arrived sealed ({ciphertext, kid}) is never shown even in part.
ALTER TABLE secrets ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0;
