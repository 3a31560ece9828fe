-- 0002: the nodes of the cluster, each reporting in while it runs (for `mukaika selfcheck`:
-- which nodes were seen recently, and which version each runs).
CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL DEFAULT now()
);
