//! Where a publish is stored before it is answered, when the history is not its only copy:
//! the shared store in Redis (`--redis`) or the embedded store in a data directory
//! (`--data-dir`). One interface, so the route has one path for both: submit, then answer
//! later through the loop's queue and waker (`Then::Pending`), with the backend's id. A
//! backend hands each batch over inside [`with_wakes_held`], so a loop is woken once for the
//! batch's events and answers together.

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

/// How a loop is woken from another thread (its `mio::Waker`, behind a closure).
pub type Wake = std::sync::Arc<dyn Fn() + Send + Sync>;

std::thread_local! {
    /// The wake-ups held by [`with_wakes_held`] on this thread, each loop's once.
    static HELD: std::cell::RefCell<Option<Vec<Wake>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with this thread's wake-ups ([`wake`]) held, then makes each one once. A backend
/// hands a batch over inside it: the batch's events reach the history and its answers reach
/// the loops' queues, and each loop is woken once, after all of them, rather than once for
/// the events and again for answers that arrive while it is already running (measured at
/// 3.5 wake-ups a batch with two loops, where 2 do). Nested calls hold until the outer one
/// ends.
///
/// **Invariant:** every wake asked for inside `f` is made before `with_wakes_held` returns
/// (or unwinds), after everything `f` queued, so no answer or event waits for a later one.
pub fn with_wakes_held<R>(f: impl FnOnce() -> R) -> R {
    struct Release(bool);
    impl Drop for Release {
        fn drop(&mut self) {
            if !self.0 {
                return;
            }
            let held = HELD.with(|h| h.borrow_mut().take()).unwrap_or_default();
            for w in held {
                w();
            }
        }
    }
    let outer = HELD.with(|h| {
        let mut h = h.borrow_mut();
        let outer = h.is_none();
        if outer {
            *h = Some(Vec::new());
        }
        outer
    });
    let _release = Release(outer);
    f()
}

/// Wakes a loop through `w` now or, inside [`with_wakes_held`], once when it ends.
pub fn wake(w: &Wake) {
    let held = HELD.with(|h| match h.borrow_mut().as_mut() {
        Some(held) => {
            let same =
                |x: &Wake| std::ptr::addr_eq(std::sync::Arc::as_ptr(x), std::sync::Arc::as_ptr(w));
            if !held.iter().any(same) {
                held.push(w.clone());
            }
            true
        }
        None => false,
    });
    if !held {
        w();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn counter() -> (Arc<AtomicUsize>, Wake) {
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        (
            n,
            Arc::new(move || {
                m.fetch_add(1, Ordering::SeqCst);
            }),
        )
    }

    #[test]
    fn wakes_outside_a_hold_are_made_at_once() {
        let (n, w) = counter();
        wake(&w);
        wake(&w);
        assert_eq!(n.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_hold_makes_each_loops_wake_once_at_its_end() {
        let (a, wa) = counter();
        let (b, wb) = counter();
        with_wakes_held(|| {
            wake(&wa);
            wake(&wb);
            wake(&wa);
            with_wakes_held(|| wake(&wa));
            // Nothing yet, not even when the inner hold ends.
            assert_eq!(a.load(Ordering::SeqCst) + b.load(Ordering::SeqCst), 0);
        });
        assert_eq!((a.load(Ordering::SeqCst), b.load(Ordering::SeqCst)), (1, 1));
        // The hold is over: wakes are immediate again.
        wake(&wb);
        assert_eq!(b.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_hold_that_unwinds_still_wakes() {
        let (n, w) = counter();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            with_wakes_held(|| {
                wake(&w);
                panic!("in the hold");
            })
        }));
        assert!(r.is_err());
        assert_eq!(n.load(Ordering::SeqCst), 1);
        wake(&w);
        assert_eq!(n.load(Ordering::SeqCst), 2);
    }
}
