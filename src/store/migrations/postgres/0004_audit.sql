-- 0004: a copy of every node's audit records. Each node's local hash chain stays the source of
-- truth; a row holds the record as the exact JSON line the local log holds (so hashes and links
-- recompute from the copies alone), filed under the node's `[audit] node` name. Rows are only
-- ever inserted. `ts` is the record's own RFC 3339 UTC time, compared byte-wise ("C") as the
-- local search compares it.
CREATE TABLE audit_records (
    node TEXT NOT NULL,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    prev TEXT NOT NULL,
    ts TEXT COLLATE "C" NOT NULL,
    kind TEXT NOT NULL,
    record TEXT NOT NULL,
    copied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (node, seq)
);
CREATE INDEX audit_records_ts ON audit_records (ts);
