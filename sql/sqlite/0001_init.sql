-- fedbroker schema 1 (SQLite): the same tables as sql/postgres/0001_init.sql.
-- Forward-only: never edit a released migration, add 0002_….
-- Writers serialize on the database (BEGIN IMMEDIATE), which is what the slot limit and the
-- change feed's ordering rely on.

CREATE TABLE fic_slots (
    id                            TEXT PRIMARY KEY,
    application_id                TEXT NOT NULL,
    managed_identity_client_id    TEXT NOT NULL,
    managed_identity_principal_id TEXT NOT NULL,
    issuer                        TEXT NOT NULL,
    subject                       TEXT NOT NULL,
    audience                      TEXT NOT NULL,
    state                         TEXT NOT NULL CHECK (state IN ('provisioning', 'active', 'draining', 'retired')),
    created_at_us                 INTEGER NOT NULL,
    updated_at_us                 INTEGER NOT NULL,
    version                       INTEGER NOT NULL CHECK (version >= 1)
);
CREATE INDEX fic_slots_application_state ON fic_slots (application_id, state);

CREATE TABLE tenants (
    id              TEXT PRIMARY KEY,
    entra_tenant_id TEXT NOT NULL,
    display_name    TEXT NOT NULL,
    geo             TEXT NOT NULL,
    vault_url       TEXT NOT NULL,
    key_name        TEXT NOT NULL,
    key_version     TEXT,
    state           TEXT NOT NULL CHECK (state IN ('registered', 'validated', 'active', 'suspended', 'disabled', 'offboarded')),
    was_activated   INTEGER NOT NULL CHECK (was_activated IN (0, 1)),
    slot_id         TEXT REFERENCES fic_slots (id),
    created_at_us   INTEGER NOT NULL,
    updated_at_us   INTEGER NOT NULL,
    version         INTEGER NOT NULL CHECK (version >= 1),
    CONSTRAINT tenants_entra_tenant_id_key UNIQUE (entra_tenant_id)
);
CREATE INDEX tenants_slot ON tenants (slot_id);

CREATE TABLE audit_records (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT NOT NULL UNIQUE,
    time_us           INTEGER NOT NULL,
    actor             TEXT NOT NULL,
    tenant_id         TEXT,
    operation         TEXT NOT NULL,
    key_version       TEXT,
    outcome           TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
    error_code        TEXT,
    latency_us        INTEGER NOT NULL,
    request_id        TEXT,
    client_request_id TEXT,
    detail            TEXT
);
CREATE INDEX audit_records_tenant_time ON audit_records (tenant_id, time_us, seq);
CREATE INDEX audit_records_time ON audit_records (time_us);

CREATE TABLE callers (
    id            TEXT PRIMARY KEY,
    identity      TEXT NOT NULL,
    grants_json   TEXT NOT NULL,
    enabled       INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    created_at_us INTEGER NOT NULL,
    updated_at_us INTEGER NOT NULL,
    version       INTEGER NOT NULL CHECK (version >= 1),
    CONSTRAINT callers_identity_key UNIQUE (identity)
);

CREATE TABLE change_feed (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    kind      TEXT NOT NULL CHECK (kind IN ('tenant', 'slot', 'caller')),
    entity_id TEXT NOT NULL,
    version   INTEGER NOT NULL,
    at_us     INTEGER NOT NULL
);
