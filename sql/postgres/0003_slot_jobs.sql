-- fedbroker schema 3: SRE jobs on FIC slots, and the replicas that share one database.
--
-- A slot job (add, drain, retire, rotate) is a row any replica can resume from its last committed
-- step. One replica works on it at a time, under a lease it renews (lease_owner, lease_expires_at_us):
-- a replica that dies or stalls loses the lease and another takes the job over. open_marker is 1
-- while the job runs and NULL once it has finished, so the unique index admits one open job at a
-- time: jobs never race each other for the same tenants or for the 20-credential limit.
CREATE TABLE slot_jobs (
    id                  TEXT PRIMARY KEY,
    kind                TEXT NOT NULL CHECK (kind IN ('add', 'drain', 'retire', 'rotate')),
    state               TEXT NOT NULL CHECK (state IN ('running', 'succeeded', 'failed')),
    step                TEXT NOT NULL,
    source_slot         TEXT,
    target_slot         TEXT,
    target_client_id    TEXT,
    target_principal_id TEXT,
    progress_json       TEXT NOT NULL,
    failures_json       TEXT NOT NULL,
    message             TEXT NOT NULL,
    created_by          TEXT NOT NULL,
    created_at_us       BIGINT NOT NULL,
    updated_at_us       BIGINT NOT NULL,
    finished_at_us      BIGINT,
    drained_at_us       BIGINT,
    version             BIGINT NOT NULL,
    open_marker         INTEGER UNIQUE CHECK (open_marker = 1),
    lease_owner         TEXT,
    lease_expires_at_us BIGINT
);
CREATE INDEX slot_jobs_created ON slot_jobs (created_at_us, id);
CREATE INDEX slot_jobs_source ON slot_jobs (source_slot, finished_at_us);

-- Replicas announce themselves every few seconds; the live ones share each vault's request budget
-- (a replica's share is the budget divided by the live count), so N replicas never send N budgets.
CREATE TABLE replicas (
    id              TEXT PRIMARY KEY,
    started_at_us   BIGINT NOT NULL,
    heartbeat_at_us BIGINT NOT NULL
);
