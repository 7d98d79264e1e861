-- fedbroker schema 4: a tenant the broker lost access to (detected, recovers on its own) is kept
-- apart from one an operator suspended (restored only by an operator); the re-probe schedule of
-- the first; and a per-caller policy that every operation must present a context.
--
-- States renamed: 'suspended' (the customer revoked access) becomes 'access_lost', then
-- 'disabled' (an operator's decision) becomes 'suspended'. In that order, so no row is renamed twice.
-- The audit trail is append-only and keeps its old operation names (tenant.suspended.<reason>
-- before this schema is a detected loss; tenant.disabled an operator's suspension).
ALTER TABLE tenants DROP CONSTRAINT tenants_state_check;
UPDATE tenants SET state = 'access_lost' WHERE state = 'suspended';
UPDATE tenants SET state = 'suspended' WHERE state = 'disabled';
ALTER TABLE tenants ADD CONSTRAINT tenants_state_check
    CHECK (state IN ('registered', 'validated', 'active', 'access_lost', 'suspended', 'offboarded'));

-- Where each access_lost tenant's re-probing stands, shared by the replicas: the next due time is
-- written before a probe runs, under the row lock, so replicas asking together run one probe.
-- episode_version is the tenant's version when the episode began; a tenant that changed since
-- starts over. Rows of tenants no longer access_lost are removed when next looked at.
CREATE TABLE tenant_access_probes (
    tenant_id        TEXT PRIMARY KEY REFERENCES tenants (id),
    episode_version  BIGINT NOT NULL,
    attempts         INTEGER NOT NULL CHECK (attempts >= 0),
    next_probe_at_us BIGINT NOT NULL
);

-- A caller with require_context must present a context on every operation (docs/protocol.md).
ALTER TABLE callers ADD COLUMN require_context BOOLEAN NOT NULL DEFAULT FALSE;
