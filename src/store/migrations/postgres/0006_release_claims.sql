-- 0006: exactly-once release delivery across nodes, and state that one node at a time moves.
-- An approved request is claimed by one node (its name, a token of that one attempt, and a
-- lease on the database's clock) before its item goes out; another node takes it over only
-- once the lease has run out.
ALTER TABLE requests
    ADD COLUMN claimed_by TEXT,
    ADD COLUMN claim_token TEXT,
    ADD COLUMN claim_until TIMESTAMPTZ;
CREATE INDEX requests_claimable ON requests (state, claim_until);
-- Values the cluster keeps once for all nodes (the administrators' notice watermark), each
-- moved only under the advisory lock of the job that owns it.
CREATE TABLE cluster_state (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
