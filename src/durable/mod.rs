//! The embedded event store (`--data-dir`): the hub's history kept in segment files so that it
//! survives a restart or a crash, on its own thread beside the loops.
//!
//! - [`format`](mod@format): the bytes (segment header, CRC-32C'd records), the scan of a segment and the
//!   recovery of a store, sans-IO;
//! - [`store`]: the data directory (lock file, format file, segments), file IO only, called
//!   at start-up and from the writer thread;
//! - [`writer`]: the thread that appends, syncs (group commit), rolls and deletes segments,
//!   and answers each publish once its event is durable.
//!
//! An event-store backend, beside [`crate::redis`]: it implements [`crate::hub::backend::Backend`]
//! (below) and hands what it restores to the hub. Never imports the connection core, the
//! application or the server loops. Not to be confused with the operator log: this one holds
//! events.

pub mod format;
pub mod store;
pub mod writer;

use crate::hub::backend::{Backend, Done};
use crate::hub::history::Publish;

impl Backend for writer::DurableStore {
    fn submit(&self, p: Publish, done: Done) {
        writer::DurableStore::submit(self, p, done);
    }
    fn name(&self) -> &'static str {
        "the data dir"
    }
    fn stop_writes(&self) {
        writer::DurableStore::stop_writes(self);
    }
}
