//! The budget of extra threads the sanitizers may start beside the caller's own thread.
//!
//! Owns: a counter of helper threads in use, shared by everything one [`crate::Registry`]
//! runs. A sanitizer that could use more threads (hashing a large input beside its rebuild,
//! rewriting an OOXML package's parts in lanes) asks for them with [`ThreadBudget::take`] and
//! gets what is free now — possibly none, and then it does the work on its own thread.
//! Invariants: at most `limit` helper threads exist at once across all callers; asking never
//! blocks (a conversion must not wait for another one's helpers: that could deadlock a full
//! pool and would stretch a deadline for nothing); the result of the work never depends on
//! how many threads were granted.
//! Must never: start a thread without a permit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Helper threads shared by all conversions of one registry.
#[derive(Debug)]
pub struct ThreadBudget {
    limit: usize,
    in_use: AtomicUsize,
}

impl ThreadBudget {
    /// A budget of `limit` helper threads (0: none; every sanitizer runs on its caller's
    /// thread alone).
    pub fn new(limit: usize) -> Arc<ThreadBudget> {
        Arc::new(ThreadBudget {
            limit,
            in_use: AtomicUsize::new(0),
        })
    }

    /// The default: one helper per core.
    pub fn per_core() -> Arc<ThreadBudget> {
        ThreadBudget::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// Takes up to `wanted` helper threads that are free now; returns the permit (which may
    /// hold none). The threads are given back when the permit is dropped.
    pub fn take(self: &Arc<Self>, wanted: usize) -> Permit {
        let mut current = self.in_use.load(Ordering::Relaxed);
        loop {
            let granted = wanted.min(self.limit.saturating_sub(current));
            if granted == 0 {
                return Permit {
                    budget: Arc::clone(self),
                    count: 0,
                };
            }
            match self.in_use.compare_exchange_weak(
                current,
                current + granted,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Permit {
                        budget: Arc::clone(self),
                        count: granted,
                    }
                }
                Err(now) => current = now,
            }
        }
    }

    /// The configured limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Helper threads in use now.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }
}

/// Helper threads granted by [`ThreadBudget::take`]; given back on drop.
#[derive(Debug)]
pub struct Permit {
    budget: Arc<ThreadBudget>,
    count: usize,
}

impl Permit {
    /// How many helper threads may be started under this permit.
    pub fn count(&self) -> usize {
        self.count
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.count > 0 {
            self.budget.in_use.fetch_sub(self.count, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_what_is_free_and_never_more_than_the_limit() {
        let budget = ThreadBudget::new(3);
        let a = budget.take(2);
        assert_eq!(a.count(), 2);
        let b = budget.take(2);
        assert_eq!(b.count(), 1);
        assert_eq!(budget.take(5).count(), 0);
        drop(a);
        assert_eq!(budget.take(5).count(), 2);
        drop(b);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn a_zero_budget_grants_nothing() {
        assert_eq!(ThreadBudget::new(0).take(4).count(), 0);
    }

    #[test]
    fn concurrent_takers_never_exceed_the_limit() {
        let budget = ThreadBudget::new(4);
        let peak = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        let p = budget.take(2);
                        peak.fetch_max(budget.in_use(), Ordering::Relaxed);
                        drop(p);
                    }
                });
            }
        });
        assert!(peak.load(Ordering::Relaxed) <= 4);
        assert_eq!(budget.in_use(), 0);
    }
}
