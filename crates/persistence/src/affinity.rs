//! Which connection group a thread borrows from (PostgreSQL).
//!
//! tokio-postgres drives each connection from a task on the runtime that opened it.
//! Each HTTP worker is a thread with its own runtime, so a request on one worker
//! using a connection opened by another costs two wake-ups across threads per round
//! trip: the request to the driving task, the answer back. Split into one group per
//! worker, a store lends each worker the connections its own thread drives (and
//! opens), and only borrows from another group when its own has none idle.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

thread_local! {
    static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Numbers the calling thread from `next` (once; later calls keep its number). Call
/// it on each HTTP worker's own thread, from the app factory that runs there.
pub fn number_this_thread(next: &AtomicUsize) {
    INDEX.with(|index| {
        if index.get().is_none() {
            index.set(Some(next.fetch_add(1, Ordering::Relaxed)));
        }
    });
}

/// The calling thread's group of `groups`: by its number, or the first for a thread
/// never numbered (background tasks, tests).
pub(crate) fn group(groups: usize) -> usize {
    INDEX.with(Cell::get).unwrap_or(0) % groups.max(1)
}
