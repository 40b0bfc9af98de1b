-- The provider's device code of a device authorization that an identity provider (GitHub,
-- Google, an OIDC issuer) runs: sealed (AES-256-GCM) under a key derived from cyfr's own
-- device code, which only the client holds, so the stored row alone never yields it.
-- NULL for cyfr's own verification, and cleared once the code is spent or ends.
ALTER TABLE device_codes ADD COLUMN provider_code TEXT;
