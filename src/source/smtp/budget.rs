//! The memory budget shared by every SMTP session.
//!
//! Owns: the count of message bytes held in memory across all sessions, against one limit
//! (`smtp.memory_budget_bytes`).
//! Invariants: a session takes bytes before it allocates them and gives back exactly what it
//! took (its [`Reservation`] returns the rest when dropped), so `used` never exceeds `limit`
//! and never underflows. Without this, 60 concurrent 24 MB uploads held 1.65 GB (issue #16 F).
//! Must never: block, or let one session take bytes on behalf of another.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes of message data that all sessions together may hold.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Bytes taken now, by all sessions.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Bytes still free.
    pub fn available(&self) -> u64 {
        self.limit.saturating_sub(self.used())
    }

    fn try_take(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: u64) {
        // Saturating: a bookkeeping slip must not wrap into a budget that refuses everything.
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(n))
            });
    }
}

/// What one session has taken from the budget; returned in full when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    held: u64,
}

impl Reservation {
    /// An empty reservation against `budget`.
    pub fn new(budget: Arc<MemoryBudget>) -> Self {
        Self { budget, held: 0 }
    }

    /// Bytes held.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Takes `n` more bytes; false (and nothing taken) when the budget cannot spare them.
    pub fn grow(&mut self, n: u64) -> bool {
        if self.budget.try_take(n) {
            self.held += n;
            true
        } else {
            false
        }
    }

    /// Gives everything back.
    pub fn release(&mut self) {
        self.budget.give_back(self.held);
        self.held = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_never_exceed_the_limit_and_return_on_drop() {
        let budget = MemoryBudget::new(100);
        let mut a = Reservation::new(Arc::clone(&budget));
        let mut b = Reservation::new(Arc::clone(&budget));
        assert!(a.grow(60));
        assert!(!b.grow(41), "over the limit");
        assert_eq!(budget.used(), 60);
        assert!(b.grow(40));
        assert_eq!(budget.available(), 0);
        drop(a);
        assert_eq!(budget.used(), 40);
        b.release();
        assert_eq!(budget.used(), 0);
    }
}
