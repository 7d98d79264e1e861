-- fedbroker schema 4 (SQLite): the same change as sql/postgres/0004_access_recovery.sql.
--
-- SQLite cannot alter a CHECK constraint, so the tenants table is rebuilt with the new states
-- ('suspended' becomes 'access_lost', then 'disabled' becomes 'suspended'). Foreign keys stay on
-- (this runs inside the migration's transaction, where the pragma cannot change): the onboarding
-- rows that reference tenants are set aside while the old table is dropped and put back after
-- the new one has taken its name, so no reference is ever left dangling.
CREATE TABLE tenants_rebuilt (
    id              TEXT PRIMARY KEY,
    entra_tenant_id TEXT NOT NULL,
    display_name    TEXT NOT NULL,
    geo             TEXT NOT NULL,
    vault_url       TEXT NOT NULL,
    key_name        TEXT NOT NULL,
    key_version     TEXT,
    state           TEXT NOT NULL CHECK (state IN ('registered', 'validated', 'active', 'access_lost', 'suspended', 'offboarded')),
    was_activated   INTEGER NOT NULL CHECK (was_activated IN (0, 1)),
    slot_id         TEXT REFERENCES fic_slots (id),
    created_at_us   INTEGER NOT NULL,
    updated_at_us   INTEGER NOT NULL,
    version         INTEGER NOT NULL CHECK (version >= 1),
    CONSTRAINT tenants_entra_tenant_id_key UNIQUE (entra_tenant_id)
);
INSERT INTO tenants_rebuilt (
    id, entra_tenant_id, display_name, geo, vault_url, key_name, key_version, state, was_activated, slot_id,
    created_at_us, updated_at_us, version)
SELECT
    id, entra_tenant_id, display_name, geo, vault_url, key_name, key_version,
    CASE state WHEN 'suspended' THEN 'access_lost' WHEN 'disabled' THEN 'suspended' ELSE state END,
    was_activated, slot_id, created_at_us, updated_at_us, version
FROM tenants;
CREATE TABLE tenant_onboarding_aside AS SELECT * FROM tenant_onboarding;
DELETE FROM tenant_onboarding;
DROP TABLE tenants;
ALTER TABLE tenants_rebuilt RENAME TO tenants;
INSERT INTO tenant_onboarding SELECT * FROM tenant_onboarding_aside;
DROP TABLE tenant_onboarding_aside;
CREATE INDEX tenants_slot ON tenants (slot_id);
CREATE INDEX tenants_state ON tenants (state, id);

CREATE TABLE tenant_access_probes (
    tenant_id        TEXT PRIMARY KEY REFERENCES tenants (id),
    episode_version  INTEGER NOT NULL,
    attempts         INTEGER NOT NULL CHECK (attempts >= 0),
    next_probe_at_us INTEGER NOT NULL
);

ALTER TABLE callers ADD COLUMN require_context INTEGER NOT NULL DEFAULT 0 CHECK (require_context IN (0, 1));
