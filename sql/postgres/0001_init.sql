-- fedbroker schema 1 (PostgreSQL). Forward-only: never edit a released migration, add 0002_….
-- Times are microseconds since 1970 (BIGINT) in both dialects, so the two stores behave alike.
-- Every row that can change carries `version` for optimistic concurrency.

-- Federated identity credential slots of the multi-tenant application (at most 20 non-retired
-- per application: enforced by the store under a per-application advisory lock).
CREATE TABLE fic_slots (
    id                            TEXT PRIMARY KEY,
    application_id                TEXT NOT NULL,
    managed_identity_client_id    TEXT NOT NULL,
    managed_identity_principal_id TEXT NOT NULL,
    issuer                        TEXT NOT NULL,
    subject                       TEXT NOT NULL,
    audience                      TEXT NOT NULL,
    state                         TEXT NOT NULL CHECK (state IN ('provisioning', 'active', 'draining', 'retired')),
    created_at_us                 BIGINT NOT NULL,
    updated_at_us                 BIGINT NOT NULL,
    version                       BIGINT NOT NULL CHECK (version >= 1)
);
CREATE INDEX fic_slots_application_state ON fic_slots (application_id, state);

-- Customer tenants. One row per customer Entra tenant; the slot assignment is a single column,
-- so a tenant can never be on two slots.
CREATE TABLE tenants (
    id              TEXT PRIMARY KEY,
    entra_tenant_id TEXT NOT NULL,
    display_name    TEXT NOT NULL,
    geo             TEXT NOT NULL,
    vault_url       TEXT NOT NULL,
    key_name        TEXT NOT NULL,
    key_version     TEXT,
    state           TEXT NOT NULL CHECK (state IN ('registered', 'validated', 'active', 'suspended', 'disabled', 'offboarded')),
    was_activated   BOOLEAN NOT NULL,
    slot_id         TEXT REFERENCES fic_slots (id),
    created_at_us   BIGINT NOT NULL,
    updated_at_us   BIGINT NOT NULL,
    version         BIGINT NOT NULL CHECK (version >= 1),
    CONSTRAINT tenants_entra_tenant_id_key UNIQUE (entra_tenant_id)
);
CREATE INDEX tenants_slot ON tenants (slot_id);

-- The audit trail: key operations and administrative changes. Append-only. `id` (a UUID chosen
-- by the writer) makes re-sent batches idempotent; `seq` orders records that share a timestamp.
CREATE TABLE audit_records (
    seq               BIGSERIAL PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    time_us           BIGINT NOT NULL,
    actor             TEXT NOT NULL,
    tenant_id         TEXT,
    operation         TEXT NOT NULL,
    key_version       TEXT,
    outcome           TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
    error_code        TEXT,
    latency_us        BIGINT NOT NULL,
    request_id        TEXT,
    client_request_id TEXT,
    detail            TEXT
);
CREATE INDEX audit_records_tenant_time ON audit_records (tenant_id, time_us, seq);
CREATE INDEX audit_records_time ON audit_records (time_us);

-- Internal services and their grants (JSON list of {operations, tenants}).
CREATE TABLE callers (
    id            TEXT PRIMARY KEY,
    identity      TEXT NOT NULL,
    grants_json   TEXT NOT NULL,
    enabled       BOOLEAN NOT NULL,
    created_at_us BIGINT NOT NULL,
    updated_at_us BIGINT NOT NULL,
    version       BIGINT NOT NULL CHECK (version >= 1),
    CONSTRAINT callers_identity_key UNIQUE (identity)
);

-- The change feed replicas follow (after LISTEN fedbroker_changes wakes them, or by polling).
-- Rows are inserted under a transaction-scoped advisory lock, so `seq` commits in order and a
-- reader that remembers the last seq it saw never skips one.
CREATE TABLE change_feed (
    seq       BIGSERIAL PRIMARY KEY,
    kind      TEXT NOT NULL CHECK (kind IN ('tenant', 'slot', 'caller')),
    entity_id TEXT NOT NULL,
    version   BIGINT NOT NULL,
    at_us     BIGINT NOT NULL
);
