//! Locks that outlive a panic: [`lock`], [`read`] and [`write()`].
//!
//! Every lock in rampart guards data that stays consistent between statements (a counter, a
//! map of instances, a queue of waiters). A panic while one is held — in a user's classifier,
//! say — must not turn every later call into a second panic, so these helpers take the data
//! as it is instead of propagating the poison: the trade-off std leaves to each caller, made
//! once for the whole workspace.
//!
//! ```
//! use std::sync::Mutex;
//! use rampart_core::sync::lock;
//!
//! let m = Mutex::new(1);
//! let _ = std::panic::catch_unwind(|| {
//!     let _g = m.lock().unwrap();
//!     panic!("a classifier panicked");
//! });
//! assert!(m.is_poisoned());
//! assert_eq!(*lock(&m), 1); // still usable
//! ```

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `m`, poisoned or not.
#[inline]
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Read-locks `l`, poisoned or not.
#[inline]
pub fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Write-locks `l`, poisoned or not.
#[inline]
pub fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}
