//! Plain tools with no idea of HTTP, events or connections, shared by both binaries: the slab,
//! the timing wheel, dates and numbers, the flag-parsing helpers, the operator log and the few
//! raw system calls.
//!
//! - [`slab`]: values at reusable small indices (the loops' connections, `mio` tokens);
//! - [`timer`]: the hashed timing wheel that holds every connection's next deadline;
//! - [`date`]: ISO and HTTP dates, formatted once per millisecond or second;
//! - [`log`]: the operator log (one line per thing an operator wants to know, through a
//!   bounded queue to one writer thread on stderr), written from the loops and the
//!   backends' threads alike. Not the event store: that is a backend ([`crate::redis`],
//!   [`crate::durable`]);
//! - [`latency`]: the latency histogram's buckets and Prometheus text (`/metrics`);
//! - [`number`]: decimal parse and print (ids, lengths, counts);
//! - [`cli`]: `--flag value` / `--flag=value` and checked numbers, for both flag parsers;
//! - [`sys`]: the operating-system calls std does not wrap (descriptor limit, signals,
//!   resource usage).
//!
//! Imports nothing of the crate outside `util` (the ground floor).

pub mod cli;
pub mod date;
pub mod latency;
pub mod log;
pub mod number;
pub mod slab;
pub mod sys;
pub mod timer;

#[cfg(test)]
pub(crate) mod test_alloc;

/// Unit tests only: the test PKI (a CA and a server certificate made by `openssl`), the very
/// file the integration tests and the benches use, so the recipe exists once.
#[cfg(test)]
#[path = "../../tests/common/pki.rs"]
pub(crate) mod test_pki;
