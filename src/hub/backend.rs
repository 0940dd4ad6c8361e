//! Where a publish is stored before it is answered, when the history is not its only copy:
//! the shared store in Redis (`--redis`) or the embedded store in a data directory
//! (`--data-dir`). One interface, so the route has one path for both: submit, then answer
//! later through the loop's queue and waker (`Then::Pending`), with the backend's id.

use crate::hub::history::Publish;

/// How a stored publish is answered: `Ok(id)` once stored, `Err(reason)` otherwise.
pub type Done = Box<dyn FnOnce(Result<String, String>) + Send>;

/// The `Err` reason of a publish whose id a retained event of the store already has (the
/// route's `409`); no other reason is this text.
pub const ID_TAKEN: &str = "id taken";

/// Whether a store's refusal is [`ID_TAKEN`].
pub fn is_id_taken(why: &str) -> bool {
    why == ID_TAKEN
}

/// An event store on its own threads. See the module docs.
pub trait Backend: Send + Sync {
    /// Queues `p`; `done` is called once, with the stored event's id or why it was not
    /// stored. Never blocks (a full queue answers at once).
    fn submit(&self, p: Publish, done: Done);
    /// What the store is called in a `503`'s text.
    fn name(&self) -> &'static str;
    /// Stores no more: every publish still queued, and every one submitted from now on, is
    /// answered `Err` (so a publisher told `503` at shutdown is never stored later); a batch
    /// already being written gets its answer. Called when the server stops for good.
    fn stop_writes(&self);
}
