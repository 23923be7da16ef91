//! Small helpers for the locks shared between worker threads.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, ignoring poisoning: a panicking worker must not hide other results.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
