//! Exactly-once release delivery across the nodes of a cluster: claims on approved requests.
//!
//! Owns: the claim columns of `requests` in the shared PostgreSQL (`claimed_by`,
//! `claim_token`, `claim_until`). A node takes an approved request for one delivery attempt
//! with a token of that attempt and a lease on the database's clock; it finishes the request
//! (`delivered`) only while its own token is still there, and gives the claim back when the
//! attempt fails, so the next pass of any node tries again.
//! Invariants:
//! - At most one live claim per request: taking one is a single `UPDATE` whose `WHERE` admits
//!   only an unclaimed request or an expired lease, and the pass that looks for work skips
//!   rows another node is taking at the same instant (`FOR UPDATE SKIP LOCKED`).
//! - A claim's token is new for every attempt, so two threads of one node are kept apart as
//!   two nodes are; a node that restarts after dying mid-delivery waits out its own lease
//!   like everyone else (it cannot know how far the dead attempt got).
//! - The caller cuts its hand-off off at three quarters of the lease counted from the claim
//!   (see [`Claims::time_left`]), so no other node can take the request over while it is
//!   still going out; once it went out, the claim is never given back — only finished.
//!
//! Must never: mark a request delivered under a token that is no longer its claim, or be
//! used on a single node (SQLite has no other nodes to exclude; see `Review::deliver`).
//! What is left is SMTP's own window: a node that dies after the LGWAN server accepted the
//! message and before it recorded so is taken over and the release sent again — the one
//! duplicate every mail system accepts rather than a loss.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::postgres::{block_on, Pg};

/// One node's claims.
pub(crate) struct Claims {
    pg: Arc<Pg>,
    node: String,
    lease: Duration,
}

/// A request taken for one delivery attempt.
#[derive(Debug)]
pub(crate) struct Claim {
    /// The request.
    pub request_id: String,
    token: String,
    /// When it was taken (after the database said so: the lease began no later).
    taken: std::time::Instant,
}

/// What is left for a hand-off `elapsed` after a claim of `lease` was taken (see
/// [`Claims::time_left`]).
fn left_of(lease: Duration, elapsed: Duration) -> Option<Duration> {
    let left = lease.mul_f64(0.75).saturating_sub(elapsed);
    (left >= lease / 4).then_some(left)
}

fn db(what: &str, e: tokio_postgres::Error) -> Error {
    Error::transient(format!("PostgreSQL: {what}")).with_source(e)
}

impl Claims {
    pub(crate) fn new(pg: Arc<Pg>, node: &str, lease_secs: u64) -> Self {
        Self {
            pg,
            node: node.to_string(),
            lease: Duration::from_secs(lease_secs),
        }
    }

    /// How long the hand-off under `claim` may still take: what is left of three quarters of
    /// the lease, counted from when the claim was taken — reading the item and waiting for a
    /// connection came out of it already — so the hand-off is over before another node may
    /// take the request. `None` when less than a quarter of the lease would be left for it:
    /// then nothing is sent, and the claim is given back.
    pub(crate) fn time_left(&self, claim: &Claim) -> Option<Duration> {
        left_of(self.lease, claim.taken.elapsed())
    }

    fn lease_secs(&self) -> f64 {
        self.lease.as_secs_f64()
    }

    /// Takes the approved request `request_id` if nobody holds it; `None` when it is being
    /// delivered by someone else, or no longer approved (delivered meanwhile).
    ///
    /// # Errors
    /// The database cannot be reached.
    pub(crate) fn take(&self, request_id: &str) -> Result<Option<Claim>> {
        let token = crate::random::random_hex(16);
        let client = self.pg.conn()?;
        let row = block_on(client.query_opt(
            "UPDATE requests
             SET claimed_by = $2, claim_token = $3,
                 claim_until = now() + make_interval(secs => $4)
             WHERE id = $1 AND state = 'approved'
               AND (claim_until IS NULL OR claim_until < now())
             RETURNING id",
            &[&request_id, &self.node, &token, &self.lease_secs()],
        ))
        .map_err(|e| db("claim a release", e))?;
        Ok(row.map(|_| Claim {
            request_id: request_id.to_string(),
            token,
            taken: std::time::Instant::now(),
        }))
    }

    /// Takes the oldest approved request that nobody holds (or whose holder's lease ran
    /// out), skipping any another node is taking at this instant; `None` when there is none.
    ///
    /// # Errors
    /// The database cannot be reached.
    pub(crate) fn next(&self) -> Result<Option<Claim>> {
        let token = crate::random::random_hex(16);
        let client = self.pg.conn()?;
        let row = block_on(client.query_opt(
            "UPDATE requests
             SET claimed_by = $1, claim_token = $2,
                 claim_until = now() + make_interval(secs => $3)
             WHERE id = (
                 SELECT id FROM requests
                 WHERE state = 'approved' AND (claim_until IS NULL OR claim_until < now())
                 ORDER BY decided_at, id
                 LIMIT 1
                 FOR UPDATE SKIP LOCKED
             )
             RETURNING id",
            &[&self.node, &token, &self.lease_secs()],
        ))
        .map_err(|e| db("claim a release", e))?;
        row.map(|r| {
            Ok(Claim {
                request_id: r.try_get(0).map_err(|e| db("claim a release", e))?,
                token,
                taken: std::time::Instant::now(),
            })
        })
        .transpose()
    }

    /// Marks the claimed request delivered to `destination`. `false` when the claim was no
    /// longer this attempt's (the lease ran out and another node took it over): then the
    /// release may have gone twice, and the caller says so.
    ///
    /// # Errors
    /// The database cannot be reached; the claim stays until its lease runs out.
    pub(crate) fn finish(&self, claim: &Claim, destination: &str) -> Result<bool> {
        let client = self.pg.conn()?;
        let n = block_on(client.execute(
            "UPDATE requests
             SET state = 'delivered', delivery = $3, claim_token = NULL, claim_until = NULL
             WHERE id = $1 AND claim_token = $2 AND state = 'approved'",
            &[&claim.request_id, &claim.token, &destination],
        ))
        .map_err(|e| db("mark a release delivered", e))?;
        Ok(n == 1)
    }

    /// Gives a claim back after a failed attempt, so that a pass of any node tries again
    /// once `retry_in` has passed. A failure here only delays that until the lease runs out.
    pub(crate) fn give_back(&self, claim: &Claim, retry_in: Duration) {
        let given = self.pg.conn().and_then(|client| {
            block_on(client.execute(
                "UPDATE requests SET claim_token = NULL,
                     claim_until = now() + make_interval(secs => $3)
                 WHERE id = $1 AND claim_token = $2",
                &[&claim.request_id, &claim.token, &retry_in.as_secs_f64()],
            ))
            .map_err(|e| db("give a release claim back", e))
        });
        if let Err(e) = given {
            tracing::warn!(request = %claim.request_id, error = %e, "release claim not given back; another node takes it when its lease runs out");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_off_ends_before_the_lease_and_does_not_start_with_too_little_of_it_left() {
        let lease = Duration::from_secs(120);
        // Taken just now: three quarters of the lease.
        assert_eq!(
            left_of(lease, Duration::ZERO),
            Some(Duration::from_secs(90))
        );
        // Reading a large item took 40 s: the send gets the 50 s left, not 90 more.
        assert_eq!(
            left_of(lease, Duration::from_secs(40)),
            Some(Duration::from_secs(50))
        );
        // Less than a quarter of the lease left: not started at all.
        assert_eq!(left_of(lease, Duration::from_secs(61)), None);
        assert_eq!(left_of(lease, Duration::from_secs(500)), None);
    }
}
