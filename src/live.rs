//! Values the operator may replace while the service runs (SIGHUP or `mukaika reload`).
//!
//! Owns: the swap. Readers take a snapshot (`Arc`) and keep it for the unit of work in hand —
//! a session keeps the limits it greeted with, a conversion the policy it started with — so
//! a reload never changes the rules halfway through a message.
//! Must never: hand out a half-applied value; a new value replaces the old one whole.

use std::sync::{Arc, RwLock};

/// A replaceable, shared value.
#[derive(Debug)]
pub struct Live<T>(RwLock<Arc<T>>);

impl<T> Live<T> {
    /// Starts with `value`.
    pub fn new(value: T) -> Self {
        Self(RwLock::new(Arc::new(value)))
    }

    /// The current value, to keep for one unit of work.
    pub fn get(&self) -> Arc<T> {
        // A poisoned lock still holds a whole value: writers only ever swap an Arc.
        Arc::clone(&self.0.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the value for every later `get`.
    pub fn replace(&self, value: T) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
    }
}
