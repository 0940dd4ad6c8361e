//! Admission control: how many streams may be open at once over all loops (`--max-streams`).
//!
//! A slot is taken by the application when it turns a request into a stream and given back by
//! the connection when it leaves its stream state, whatever the reason (close, drain, error).
//!
//! **Invariant:** `open()` equals the number of connections in the stream state.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The process-wide stream gauge and its limit.
#[derive(Debug)]
pub struct Admission {
    open: AtomicUsize,
    max: usize,
}

impl Admission {
    /// A gauge admitting at most `max` streams.
    pub fn new(max: usize) -> Self {
        Admission {
            open: AtomicUsize::new(0),
            max,
        }
    }

    /// Takes a stream slot if fewer than the limit are open.
    pub fn try_open(&self) -> bool {
        self.open
            .fetch_update(Relaxed, Relaxed, |n| (n < self.max).then_some(n + 1))
            .is_ok()
    }

    /// Gives a stream slot back.
    pub fn close(&self) {
        self.open.fetch_sub(1, Relaxed);
    }

    /// The limit in force.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.open.load(Relaxed)
    }
}
