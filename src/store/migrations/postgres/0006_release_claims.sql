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
-- Failed logins per client address, and the counts and locks of names that are no account:
-- kept per process on a single node, shared here so that an address or a guessed name gets no
-- more attempts from spreading them over the nodes.
CREATE TABLE login_throttle (
    client TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    count BIGINT NOT NULL
);
CREATE TABLE login_ghosts (
    name TEXT PRIMARY KEY,
    failed BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    touched BIGINT NOT NULL DEFAULT 0
);
-- Which quarantine items the administrators were told of: a flag, not a time watermark, since
-- items are stamped by their own node's clock and committed when their upload ends. Items held
-- before this step count as announced (a first notice does not list the whole history).
ALTER TABLE quarantine_items ADD COLUMN announced BOOLEAN NOT NULL DEFAULT false;
UPDATE quarantine_items SET announced = true;
CREATE INDEX quarantine_items_unannounced ON quarantine_items (at) WHERE NOT announced;
