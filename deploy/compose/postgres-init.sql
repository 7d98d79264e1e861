-- Run once by the postgres image on an empty data volume (docker-entrypoint-initdb.d), as the
-- POSTGRES_USER: a second database for broker-emu (compose profile "emulator"), so the broker
-- that talks to the emulator never shares tenants, slots or heartbeats with `broker`.
CREATE DATABASE fedbroker_emu OWNER fedbroker;
