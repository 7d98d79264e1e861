-- fedbroker schema 5 (SQLite): the same change as sql/postgres/0005_key_access_changed_at.sql.
-- The default 0 (a row written by the previous release) is read as "not known": the last update.
ALTER TABLE tenants ADD COLUMN key_access_changed_at_us INTEGER NOT NULL DEFAULT 0;
UPDATE tenants SET key_access_changed_at_us = updated_at_us;
