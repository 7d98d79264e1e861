-- fedbroker schema 5: when a tenant last became servable or changed its key.
--
-- Key Vault may refuse a role granted minutes ago (ForbiddenByRbac) while the grant reaches its
-- front ends; the broker answers such a refusal as retryable for `vault.rolePropagationSeconds`
-- after this time instead of taking it as the customer's revocation. Before this schema the
-- window began at the tenant record's last update of any kind, so a slot move or a validation
-- reopened it. Rows that exist now start from their last update, as before.
--
-- The default stays: during a rolling upgrade a replica of the previous release inserts tenants
-- without this column, and its 0 is read as "not known", which falls back to the last update.
ALTER TABLE tenants ADD COLUMN key_access_changed_at_us BIGINT NOT NULL DEFAULT 0;
UPDATE tenants SET key_access_changed_at_us = updated_at_us;
