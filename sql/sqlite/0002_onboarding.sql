-- fedbroker schema 2: onboarding. What registration issued (the binding value the customer tags
-- the key with, the Idempotency-Key that made it) and what validation found, beside the tenant
-- row the serving path reads, so that row stays as it is.
CREATE TABLE tenant_onboarding (
    tenant_id            TEXT PRIMARY KEY REFERENCES tenants (id),
    binding_value        TEXT NOT NULL,
    idempotency_key      TEXT UNIQUE,
    request_fingerprint  TEXT,
    validation_json      TEXT,
    validated_at_us      INTEGER,
    validation_succeeded INTEGER CHECK (validation_succeeded IN (0, 1)),
    suspension_reason    TEXT
);

-- The admin API's audit queries page by seq, filtered by actor or operation.
CREATE INDEX audit_records_actor_seq ON audit_records (actor, seq);
CREATE INDEX audit_records_operation_seq ON audit_records (operation, seq);
CREATE INDEX tenants_state ON tenants (state, id);
