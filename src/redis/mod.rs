//! The Redis event-store backend: one event store for a whole deployment of `sse-server`s, kept in
//! a Redis Stream, with its writer, reader and range-read threads.
//!
//! - [`bridge`]: the threads, the entry format, and the [`bridge::Bridge`] the server holds.
//! - [`presence`]: with `--subscriptions`, this instance's liveness key and the sweep that
//!   ends a dead instance's subscriptions.
//!
//! An event-store backend, beside [`crate::durable`] (the data directory): it implements
//! [`crate::hub::backend::Backend`] (below) and hands what it reads to the hub. Never imports the
//! connection core or the server loops.

pub mod bridge;
pub mod presence;

use crate::hub::backend::{Backend, Done};
use crate::hub::history::Publish;

impl Backend for bridge::Bridge {
    fn submit(&self, p: Publish, done: Done) {
        bridge::Bridge::submit(self, p, done);
    }
    fn name(&self) -> &'static str {
        "Redis"
    }
    fn stop_writes(&self) {
        bridge::Bridge::stop_writes(self);
    }
}
