-- 0005: two or more nodes on one import folder (a shared SMB/NFS path) process each file once.
-- A node claims a file here before it reads it. A file is named by its pair, its path below the
-- import folder and what the file server says of it (inode, size, modification and change
-- time, in nanoseconds) — never the device number, which each NFS client numbers itself. A
-- file dropped again under the same name is a new inode or at least a new change time: a new
-- row. `lease_until` is on the database's clock; the claimant renews it while it works on
-- the file, and after it another node (or the claimant's next run) takes the file over. `entry` is the ledger entry (what the exports
-- are to be named, as paths below the pair's folders), committed before the renames it
-- names. A finished claim (`done_at`) stays a while as a tombstone, so a node whose view of
-- the folder lags cannot take the same file again.
CREATE TABLE import_claims (
    id BIGSERIAL PRIMARY KEY,
    pair TEXT NOT NULL,
    path TEXT NOT NULL,
    ino BIGINT NOT NULL,
    size BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    ctime_ns BIGINT NOT NULL,
    node TEXT NOT NULL,
    -- Which run of that node (random per process): two processes never act on each other's
    -- claims, even under one node name.
    incarnation TEXT NOT NULL DEFAULT '',
    lease_until TIMESTAMPTZ NOT NULL,
    claimed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    import_id TEXT,
    entry TEXT,
    done_at TIMESTAMPTZ,
    UNIQUE (pair, path, ino, size, mtime_ns, ctime_ns)
);
-- One node at a time works on a name, whatever the file server says of it meanwhile.
CREATE UNIQUE INDEX import_claims_working ON import_claims (pair, path) WHERE done_at IS NULL;
CREATE INDEX import_claims_lease ON import_claims (lease_until) WHERE done_at IS NULL;
CREATE INDEX import_claims_done ON import_claims (done_at) WHERE done_at IS NOT NULL;
-- Export names taken by a claim between choosing them and renaming the exports into place,
-- so two nodes never choose one name (the loser of a race would overwrite the winner's export).
CREATE TABLE import_names (
    pair TEXT NOT NULL,
    path TEXT NOT NULL,
    claim BIGINT NOT NULL REFERENCES import_claims (id) ON DELETE CASCADE,
    PRIMARY KEY (pair, path)
);
CREATE INDEX import_names_claim ON import_names (claim);
