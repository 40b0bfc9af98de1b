-- A registered version's README.md and config.json defaults, as its directory held them
-- (bounded at registration: registry::MAX_README_BYTES, registry::MAX_CONFIG_BYTES).
CREATE TABLE IF NOT EXISTS component_files (
    component_type TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    readme TEXT,
    config TEXT,
    PRIMARY KEY (component_type, namespace, name, version)
);

-- Per-component config overrides (every version of the component), one row per key; the
-- value is JSON text. The effective config is the version's config.json with these over it.
CREATE TABLE IF NOT EXISTS component_config (
    component_type TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT,
    PRIMARY KEY (component_type, namespace, name, key)
);
